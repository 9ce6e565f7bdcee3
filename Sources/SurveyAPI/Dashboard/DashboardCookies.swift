import Foundation
import HTTPTypes
import Hummingbird

/// The dashboard's two cookies, both `HttpOnly` (no script reads them), `SameSite=Strict`
/// (no other site's page sends them) and scoped to `/dashboard`:
/// - `surveyd_session`: the session's secret, until sign-out (the browser drops it at
///   exit; the server ends it after 12 h idle whatever the browser does);
/// - `surveyd_sign_in`: a random value the sign-in form repeats (a double-submitted CSRF
///   token), so another site cannot sign a browser into an account of its choosing.
/// `Secure` whenever the request came over https, directly or through a proxy that says
/// so (`X-Forwarded-Proto` / `Forwarded: proto=https`): a proxy that lies can only make
/// the browser keep the cookie to https, which fails closed.
enum DashboardCookies {
    static let session = "surveyd_session"
    static let signIn = "surveyd_sign_in"
    static let path = "/dashboard"

    /// The value of cookie `name` in the request's `Cookie` headers, if present once.
    static func value(_ name: String, in request: Request) -> Substring? {
        var found: Substring?
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let trimmed = pair.drop { $0 == " " }
                guard let equals = trimmed.firstIndex(of: "="), trimmed[..<equals] == name else { continue }
                // The same name twice (a cookie planted for a wider path): trust neither.
                if found != nil { return nil }
                found = trimmed[trimmed.index(after: equals)...]
            }
        }
        return found
    }

    static func set(_ name: String, _ value: String, request: Request) -> String {
        "\(name)=\(value); Path=\(path); HttpOnly; SameSite=Strict" + (isHTTPS(request) ? "; Secure" : "")
    }

    static func clear(_ name: String, request: Request) -> String {
        "\(name)=; Path=\(path); Max-Age=0; HttpOnly; SameSite=Strict" + (isHTTPS(request) ? "; Secure" : "")
    }

    static func isHTTPS(_ request: Request) -> Bool {
        if request.head.scheme == "https" { return true }
        if let proto = request.headers[.xForwardedProto], proto.split(separator: ",").first?.trimmingCharacters(in: .whitespaces).lowercased() == "https" {
            return true
        }
        if let forwarded = request.headers[.forwarded]?.lowercased(), forwarded.contains("proto=https") { return true }
        return false
    }
}

extension HTTPField.Name {
    static let xForwardedProto = Self("X-Forwarded-Proto")!
    static let forwarded = Self("Forwarded")!
}
