import Logging
import NIOCore
import NIOPosix

/// Hands messages to one relay over reused connections: at most
/// `maximumConnections` open, idle ones kept for `idleTimeout`, each closed after
/// `messagesPerConnection` messages. A reused connection that turns out closed before the
/// message was handed over is replaced once, so a relay's idle timeout never fails a send.
public actor SMTPMailer {
    private struct Idle {
        var connection: SMTPConnection
        var sent: Int
        var since: NIODeadline
    }

    public let configuration: SMTPConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger
    private var idle: [Idle] = []
    private var open = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var isShutDown = false

    public init(configuration: SMTPConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
    }

    public func send(_ mail: OutgoingMail) async -> MailOutcome {
        for attempt in 1...2 {
            let lease: Idle
            do {
                lease = try await take()
            } catch {
                return .notHandedOver(error as? MailError ?? MailError(.connectionFailed, "\(error)"))
            }
            let reused = lease.sent > 0
            let (outcome, reusable) = await lease.connection.transaction(mail)
            if reusable && lease.sent + 1 < configuration.messagesPerConnection && !isShutDown {
                give(Idle(connection: lease.connection, sent: lease.sent + 1, since: .now()))
            } else {
                retire(lease.connection)
            }
            if case .notHandedOver(let error) = outcome, reused, attempt == 1, error.code == .connectionFailed || error.code == .timedOut {
                logger.debug("a reused SMTP connection had gone; sending on a new one", metadata: ["error": "\(error.debugDescription)"])
                continue
            }
            return outcome
        }
        preconditionFailure("unreachable: the second attempt returns")
    }

    /// Closes every connection; sends after this fail as not handed over.
    public func shutdown() async {
        isShutDown = true
        let closing = idle
        idle = []
        for entry in closing {
            open -= 1
            entry.connection.quit()
        }
        for waiter in waiters { waiter.resume() }
        waiters = []
    }

    /// An idle connection still open and not idle for too long, or a new one once under the cap.
    private func take() async throws -> Idle {
        while true {
            if isShutDown { throw MailError(.connectionFailed, "the mailer is shut down") }
            while let entry = idle.popLast() {
                if entry.connection.isActive && NIODeadline.now() - entry.since < configuration.idleTimeout {
                    return entry
                }
                open -= 1
                entry.connection.close()
            }
            if open < configuration.maximumConnections {
                open += 1
                do {
                    return Idle(connection: try await SMTPConnection.connect(configuration, group: group), sent: 0, since: .now())
                } catch {
                    open -= 1
                    wakeOne()
                    throw error
                }
            }
            await withCheckedContinuation { waiters.append($0) }
        }
    }

    private func give(_ entry: Idle) {
        idle.append(entry)
        wakeOne()
    }

    private func retire(_ connection: SMTPConnection) {
        open -= 1
        wakeOne()
        connection.quit()
    }

    private func wakeOne() {
        if !waiters.isEmpty { waiters.removeFirst().resume() }
    }
}
