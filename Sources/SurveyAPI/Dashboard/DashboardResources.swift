import Crypto
import Foundation
import Mustache

/// The dashboard's templates and static assets, read once when `serve` starts (a missing
/// or broken template stops it there, not on a customer's first visit).
///
/// Each asset is served under a name that carries a hash of its bytes
/// (`dashboard.3f9a0c12d4e5.css`), with a year-long immutable cache lifetime: a new
/// release changes the name, so a browser never mixes an old stylesheet with new pages,
/// and replicas of one release agree on every name.
public struct DashboardResources: Sendable {
    let templates: MustacheLibrary
    let assets: [String: Asset]
    /// Logical name (`dashboard.css`) → served name (`dashboard.<hash>.css`).
    let servedNames: [String: String]

    struct Asset: Sendable {
        var bytes: [UInt8]
        var contentType: String
    }

    /// Reads `directory/templates/*.mustache` and `directory/assets/*`.
    public init(directory: String) throws {
        let root = URL(fileURLWithPath: directory)
        do {
            templates = try MustacheLibrary(templates: Self.templates(in: root.appendingPathComponent("templates")))
        } catch let error as MustacheTemplate.ParserError {
            throw DashboardResourceError(path: directory, reason: "a template does not parse: \(error.error) at line \(error.context.lineNumber)")
        }
        var assets: [String: Asset] = [:]
        var servedNames: [String: String] = [:]
        let assetFolder = root.appendingPathComponent("assets")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: assetFolder.path)) ?? []
        for name in names.sorted() where !name.hasPrefix(".") {
            let bytes = try [UInt8](Data(contentsOf: assetFolder.appendingPathComponent(name)))
            let digest = SHA256.hash(data: bytes).prefix(6).map { String(format: "%02x", $0) }.joined()
            let dot = name.lastIndex(of: ".") ?? name.endIndex
            let served = name[..<dot] + "." + digest + name[dot...]
            assets[String(served)] = Asset(bytes: bytes, contentType: Self.contentType(of: name))
            servedNames[name] = String(served)
        }
        for required in Self.requiredAssets where servedNames[required] == nil {
            throw DashboardResourceError(path: assetFolder.path, reason: "\(required) is missing")
        }
        for required in Self.requiredTemplates where templates.getTemplate(named: required) == nil {
            throw DashboardResourceError(path: root.appendingPathComponent("templates").path, reason: "\(required).mustache is missing")
        }
        self.assets = assets
        self.servedNames = servedNames
    }

    static let requiredAssets = ["dashboard.css", "dashboard.js", "icon.svg"]
    static let requiredTemplates = ["layout", "sign-in", "overview", "survey", "requests", "usage", "error"]

    /// The URL an asset is served at.
    func url(_ name: String) -> String {
        "/dashboard/assets/" + (servedNames[name] ?? name)
    }

    /// The page `template` shows `view` as.
    func render(_ view: Any, template: String) -> String {
        templates.render(view, withTemplate: template) ?? ""
    }

    private static func templates(in folder: URL) throws -> [String: MustacheTemplate] {
        var templates: [String: MustacheTemplate] = [:]
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        for name in names where name.hasSuffix(".mustache") {
            let text = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
            templates[String(name.dropLast(".mustache".count))] = try MustacheTemplate(string: text)
        }
        return templates
    }

    private static func contentType(of name: String) -> String {
        switch name.split(separator: ".").last {
        case "css": "text/css; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        default: "application/octet-stream"
        }
    }
}

/// The dashboard's files are missing or broken: `serve` does not start.
public struct DashboardResourceError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "dashboard files at \(path): \(reason) (set SURVEYD_DASHBOARD_DIR)" }
}
