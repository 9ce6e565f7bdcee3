// swift-tools-version:6.0
import PackageDescription

// A reference point for the HTTP throughput benchmark, kept apart from the product:
// the product's `GET /surveys` served by Hummingbird 2 + vapor/postgres-nio (the pure-NIO
// PostgreSQL client) instead of our libpq-based client. Build and run it from this folder
// (see main.swift); its `.build` stays here and never touches the product's.
let package = Package(
    name: "reference-postgres-nio",
    platforms: [.macOS(.v15)],
    dependencies: [
        // Exact versions, the ones the product builds with, so a comparison run later
        // measures the same code (its Package.resolved stays out of git, like the product's).
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", exact: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", exact: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3"),
    ],
    targets: [
        .executableTarget(
            name: "reference-server",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
    ]
)
