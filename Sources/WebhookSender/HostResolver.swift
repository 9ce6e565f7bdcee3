import Foundation
import NIOPosix

/// Turns a host name into the addresses a webhook may be sent to. The sender connects to
/// an address it got here and checked, never lets the HTTP client resolve the name again
/// (a second answer could point somewhere else: DNS rebinding).
public protocol HostResolver: Sendable {
    /// Every address of `host` (4 or 16 bytes each, network order); empty or a throw when
    /// it has none.
    func addresses(of host: String) async throws -> [[UInt8]]
}

/// The system's resolver (`getaddrinfo`: /etc/hosts, then DNS). It blocks, so it runs on
/// a thread pool of its own, never on an event loop, the cooperative pool, or the pool the
/// database client blocks on: a name server that never answers holds these threads only.
public struct SystemHostResolver: HostResolver {
    let threadPool: NIOThreadPool

    /// Four threads for the whole process, started on first use.
    public static let sharedThreadPool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        return pool
    }()

    public init(threadPool: NIOThreadPool = SystemHostResolver.sharedThreadPool) {
        self.threadPool = threadPool
    }

    public func addresses(of host: String) async throws -> [[UInt8]] {
        try await threadPool.runIfActive {
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(host, nil, &hints, &list)
            guard status == 0, let first = list else { throw HostResolutionError(host: host, code: status) }
            defer { freeaddrinfo(first) }
            var addresses: [[UInt8]] = []
            for entry in sequence(first: first, next: { $0.pointee.ai_next }) {
                guard let address = entry.pointee.ai_addr else { continue }
                switch Int32(address.pointee.sa_family) {
                case AF_INET:
                    let bytes = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { withUnsafeBytes(of: $0.pointee.sin_addr) { Array($0) } }
                    if !addresses.contains(bytes) { addresses.append(bytes) }
                case AF_INET6:
                    let bytes = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) } }
                    if !addresses.contains(bytes) { addresses.append(bytes) }
                default:
                    continue
                }
            }
            return addresses
        }
    }
}

public struct HostResolutionError: Error, CustomStringConvertible {
    public var host: String
    public var code: Int32

    public init(host: String, code: Int32) {
        self.host = host
        self.code = code
    }

    public var description: String { "\(host) did not resolve (getaddrinfo \(code))" }
}

/// Addresses as text, the form the HTTP client connects to.
enum AddressText {
    static func format(_ address: [UInt8]) -> String {
        if address.count == 4 { return address.map(String.init).joined(separator: ".") }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        return address.withUnsafeBytes { bytes in
            inet_ntop(AF_INET6, bytes.baseAddress, &buffer, socklen_t(buffer.count)) != nil ? String(cString: buffer) : "?"
        }
    }
}
