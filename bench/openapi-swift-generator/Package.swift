// swift-tools-version: 6.0
// Checks that swift-openapi-generator reads the project's contract: building this package
// runs the generator's build plugin on openapi.yaml (Sources/SurveydClient/openapi.yaml is
// a link to the repository's) and compiles the generated types and client; its tests
// decode canned responses of the server through the generated client. Not part of the
// product or of CI (a first build takes minutes); run it with ./check.
import PackageDescription

let package = Package(
    name: "OpenAPISwiftGeneratorCheck",
    dependencies: [
        // The versions on this kind of machine (/opt/swift-packages).
        .package(url: "https://github.com/apple/swift-openapi-generator", exact: "1.14.3"),
        .package(url: "https://github.com/apple/swift-openapi-runtime", exact: "1.13.4"),
        .package(url: "https://github.com/apple/swift-http-types", exact: "1.8.0"),
    ],
    targets: [
        .target(
            name: "SurveydClient",
            dependencies: [.product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            plugins: [.plugin(name: "OpenAPIGenerator", package: "swift-openapi-generator")]
        ),
        .testTarget(
            name: "SurveydClientTests",
            dependencies: [
                "SurveydClient",
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
    ]
)
