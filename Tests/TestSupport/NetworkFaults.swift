import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// Network faults for the bounded-wait tests (issue 17): real TCP peers that stop
// answering without closing, as a partitioned network or a stopped server looks to a
// client. No mock of libpq: the client under test talks the real protocol to them.

/// Listens on 127.0.0.1, accepts every connection and holds it open, silent.
public final class SilentServer: @unchecked Sendable {
    // @unchecked: `held` is touched by the accepting thread only; `stop()` only sets the
    // atomic flag and waits for that thread to end.
    public let port: Int
    let descriptor: Int32
    private var held: [Int32] = []
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    /// `acceptsItself: false`: only the listening socket is made, for another to accept on.
    public init(acceptsItself: Bool = true) throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        guard bound == 0, listen(descriptor, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(descriptor, $0, &length) }
        }
        self.descriptor = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
        // Non-blocking accepts, polled, so that the thread can be told to end.
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        guard acceptsItself else {
            finished.signal()
            return
        }
        Thread.detachNewThread { [self] in
            while !stopping.load(ordering: .acquiring) {
                let client = accept(descriptor, nil, nil)
                if client >= 0 { held.append(client) } else { usleep(10_000) }
            }
            for client in held { close(client) }
            close(descriptor)
            finished.signal()
        }
    }

    public func stop() {
        stopping.store(true, ordering: .releasing)
        finished.wait()
    }
}

/// Forwards TCP connections on 127.0.0.1 to a Unix socket (the test database's), until
/// `freeze()`: from then on nothing is forwarded either way and nothing closed, as a
/// network partition looks to both ends.
public final class FreezingProxy: @unchecked Sendable {
    // @unchecked: `listener` and `unixPath` are set in `init` and only read after; the
    // flags are atomic.
    public let port: Int
    private let listener: Int32
    private let unixPath: String
    private let frozen = Atomic<Bool>(false)
    private let stalling = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    /// Every thread of the proxy; `stop()` waits for them before closing anything, so
    /// that each descriptor is closed once, by its owner, after its last use (a number
    /// closed twice may by then be another part of the process's pipe).
    private let threads = DispatchGroup()
    private let opened = Mutex<[Int32]>([])

    public init(unixSocket path: String) throws {
        let silent = try SilentServer(acceptsItself: false)
        (listener, port) = (silent.descriptor, silent.port)
        unixPath = path
        threads.enter()
        Thread.detachNewThread { [self] in
            while !stopping.load(ordering: .acquiring) {
                let client = accept(listener, nil, nil)
                guard client >= 0 else {
                    usleep(10_000)
                    continue
                }
                if stalling.load(ordering: .acquiring) {
                    opened.withLock { $0.append(client) }
                    continue
                }
                let upstream = Self.connect(unixPath)
                opened.withLock { $0 += [client, upstream] }
                for (source, destination) in [(client, upstream), (upstream, client)] {
                    threads.enter()
                    Thread.detachNewThread {
                        self.forward(from: source, to: destination)
                        self.threads.leave()
                    }
                }
            }
            threads.leave()
        }
    }

    public func freeze() { frozen.store(true, ordering: .releasing) }

    /// From now on, connections are accepted and then held silent, never forwarded: a
    /// server whose listener answers and whose processes do not (as a `PQcancel` meets
    /// one). Connections already made keep forwarding.
    public func stallNewConnections() { stalling.store(true, ordering: .releasing) }

    /// Ends the partition by closing every connection (the stranded statement fails).
    public func stop() {
        stopping.store(true, ordering: .releasing)
        threads.wait()
        for descriptor in opened.withLock({ $0 }) + [listener] { close(descriptor) }
    }

    private func forward(from source: Int32, to destination: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while !stopping.load(ordering: .acquiring) {
            var ready = pollfd(fd: source, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 50) > 0 else { continue }
            // Frozen: the bytes stay where they are, unread, and nothing is closed.
            if frozen.load(ordering: .acquiring) {
                usleep(10_000)
                continue
            }
            let count = read(source, &buffer, buffer.count)
            guard count > 0 else { break }
            var written = 0
            while written < count {
                let step = buffer.withUnsafeBytes { write(destination, $0.baseAddress! + written, count - written) }
                guard step > 0 else { break }
                written += step
            }
        }
        // The other direction learns of the end; the descriptors are closed by `stop()`.
        shutdown(destination, Int32(SHUT_WR))
    }

    private static func connect(_ path: String) -> Int32 {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            for (index, byte) in path.utf8.prefix(bytes.count - 1).enumerated() { bytes[index] = byte }
        }
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return descriptor
    }
}


public enum NetworkFaults {
    /// The test database's socket file and database name, from `TEST_DATABASE_URL`.
    public static func testDatabaseSocket() throws -> (path: String, database: String) {
        guard let url = URLComponents(string: try TestDatabase.url()),
            let host = url.queryItems?.first(where: { $0.name == "host" })?.value
        else { throw POSIXError(.EINVAL) }
        let port = url.queryItems?.first { $0.name == "port" }?.value ?? "5432"
        return ("\(host)/.s.PGSQL.\(port)", String(url.path.dropFirst()))
    }
}
