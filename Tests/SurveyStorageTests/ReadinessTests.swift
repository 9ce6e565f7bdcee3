import Foundation
import Postgres
import SurveyStorage
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 17, bounded waits: `/ready` must answer within its 2 s even when the database
/// stops answering. A real TCP peer that accepts connections and never says a word (as a
/// partitioned server, or one stopped with SIGSTOP, looks to a client) stands in for it.
@Suite struct ReadinessTests {
    /// Listens on 127.0.0.1, accepts every connection and holds it open, silent.
    final class SilentServer: @unchecked Sendable {
        // @unchecked: `held` is touched by the accepting thread only; `stop()` only sets the
        // atomic flag and waits for that thread to end.
        let port: Int
        let descriptor: Int32
        private var held: [Int32] = []
        private let stopping = Atomic<Bool>(false)
        private let finished = DispatchSemaphore(value: 0)

        /// `acceptsItself: false`: only the listening socket is made, for another to accept on.
        init(acceptsItself: Bool = true) throws {
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

        func stop() {
            stopping.store(true, ordering: .releasing)
            finished.wait()
        }
    }

    /// Forwards TCP connections on 127.0.0.1 to a Unix socket (the test database's), until
    /// `freeze()`: from then on nothing is forwarded either way and nothing closed, as a
    /// network partition looks to both ends.
    final class FreezingProxy: @unchecked Sendable {
        // @unchecked: `listener` and `unixPath` are set in `init` and only read after; the
        // flags are atomic.
        let port: Int
        private let listener: Int32
        private let unixPath: String
        private let frozen = Atomic<Bool>(false)
        private let stopping = Atomic<Bool>(false)
        /// Every thread of the proxy; `stop()` waits for them before closing anything, so
        /// that each descriptor is closed once, by its owner, after its last use (a number
        /// closed twice may by then be another part of the process's pipe).
        private let threads = DispatchGroup()
        private let opened = Mutex<[Int32]>([])

        init(unixSocket path: String) throws {
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

        func freeze() { frozen.store(true, ordering: .releasing) }

        /// Ends the partition by closing every connection (the stranded statement fails).
        func stop() {
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

    /// The test database's socket file and database name, from `TEST_DATABASE_URL`.
    static func testDatabaseSocket() throws -> (path: String, database: String) {
        let url = try #require(URLComponents(string: try TestDatabase.url()))
        let host = try #require(url.queryItems?.first { $0.name == "host" }?.value)
        let port = url.queryItems?.first { $0.name == "port" }?.value ?? "5432"
        return ("\(host)/.s.PGSQL.\(port)", String(url.path.dropFirst()))
    }

    @Test(.timeLimit(.minutes(1))) func readyAnswersWithinItsBoundWhenTheDatabaseStopsAnswering() async throws {
        _ = try await TestDatabase.application()  // migrated
        let (socketPath, name) = try Self.testDatabaseSocket()
        let proxy = try FreezingProxy(unixSocket: socketPath)
        var configuration = PostgresClient.Configuration(
            connection: .init(url: "postgresql://postgres@127.0.0.1:\(proxy.port)/\(name)?connect_timeout=5", applicationName: "ready-test"))
        configuration.maximumConnections = 1
        let database = Database(client: PostgresClient(configuration: configuration, logger: TestDatabase.logger))
        let migrator = try Migrator(directory: TestDatabase.sqlDirectory)
        #expect(await database.readiness(migrator: migrator, timeout: .seconds(5)).isReady, "through the proxy, before the partition")
        // The partition: the pooled connection's next statement gets no answer, ever.
        proxy.freeze()
        let started = ContinuousClock.now
        let readiness = await database.readiness(migrator: migrator, timeout: .seconds(1))
        let took = started.duration(to: .now)
        #expect(!readiness.isReady)
        #expect(took < .milliseconds(1800), "/ready waited \(took) for a database that stopped answering")
        // The partition heals by closing: the stranded statement fails, the pool can go.
        proxy.stop()
        await database.client.shutDown()
    }

    @Test(.timeLimit(.minutes(1))) func readyAnswersWithinItsBoundWhenTheDatabaseIsSilent() async throws {
        let server = try SilentServer()
        // libpq would wait for the server's answer up to its connect timeout (5 s here):
        // longer than a probe may.
        var configuration = PostgresClient.Configuration(
            connection: .init(url: "postgresql://postgres@127.0.0.1:\(server.port)/surveyd?connect_timeout=5", applicationName: "ready-test"))
        configuration.maximumConnections = 1
        let database = Database(client: PostgresClient(configuration: configuration, logger: TestDatabase.logger))
        let started = ContinuousClock.now
        let readiness = await database.readiness(migrator: try Migrator(directory: TestDatabase.sqlDirectory), timeout: .seconds(1))
        let took = started.duration(to: .now)
        #expect(!readiness.isReady && !readiness.databaseReachable)
        #expect(took < .milliseconds(1800), "/ready waited \(took) for a silent database")
        await database.client.shutDown()
        server.stop()
    }
}
