import Foundation
import Logging
import MailTestSupport
import MailTransport
import NIOCore
import NIOPosix
import Testing

/// The SMTP client against a real server (aiosmtpd), over STARTTLS with AUTH.
@Suite struct SMTPMailerTests {
    static let logger = Logger(label: "tests")

    static func mail(to recipient: String, subject: String = "How likely are you to recommend us?", text: String = "Reply 0-10") -> OutgoingMail {
        let message = MIMEMessage(
            from: .init(name: "Waffle Shop", address: "surveys@sender.example"), to: recipient, subject: subject,
            messageID: "\(UUID().uuidString)@sender.example", date: Date(timeIntervalSince1970: 1_796_000_000),
            headers: [("List-Unsubscribe", "<https://surveys.example/u/abc>")], text: text, html: "<p>\(text)</p>")
        return OutgoingMail(from: "bounces@sender.example", to: recipient, message: message.encoded(boundary: "b-\(UUID().uuidString)"))
    }

    static func withSink(
        tls: Bool = true, authentication: Bool = true, pipelining: Bool = true, _ body: (SMTPSink) async throws -> Void
    ) async throws {
        let sink = try await SMTPSink.start(tls: tls, authentication: authentication, pipelining: pipelining)
        defer { sink.stop() }
        try await body(sink)
    }

    @Test(arguments: [true, false]) func deliversOverTLSWithAuthenticationOnOneReusedConnection(pipelining: Bool) async throws {
        try await Self.withSink(pipelining: pipelining) { sink in
            let mailer = SMTPMailer(configuration: sink.configuration(), logger: Self.logger)
            for index in 1...3 {
                let outcome = await mailer.send(Self.mail(to: "customer\(index)@example.org", text: ".a line that starts with a dot\nand ümlauts"))
                guard case .accepted(let reply) = outcome else {
                    Issue.record("message \(index): \(outcome)")
                    return
                }
                #expect(reply.code == 250)
            }
            await mailer.shutdown()
            let messages = try sink.messages()
            #expect(messages.map(\.to) == [["customer1@example.org"], ["customer2@example.org"], ["customer3@example.org"]])
            #expect(messages.allSatisfy { $0.tls && $0.authenticated && $0.from == "bounces@sender.example" })
            #expect(Set(messages.map(\.connection)).count == 1, "one connection for the three: \(messages.map(\.connection))")
            // The server undid the dot-stuffing: the line arrived as written, quoted-printable.
            #expect(messages[0].data.contains("\r\n.a line that starts with a dot\r\nand =C3=BCmlauts\r\n"), "\(messages[0].data)")
        }
    }

    @Test func refusedRecipientsAreRefusedAndTheConnectionGoesOn() async throws {
        try await Self.withSink { sink in
            let mailer = SMTPMailer(configuration: sink.configuration(), logger: Self.logger)
            let permanent = await mailer.send(Self.mail(to: "reject-me@example.org"))
            guard case .refused(let reply, permanent: true) = permanent else {
                Issue.record("\(permanent)")
                return
            }
            #expect(reply.code == 550)
            let temporary = await mailer.send(Self.mail(to: "later@example.org"))
            guard case .refused(let later, permanent: false) = temporary else {
                Issue.record("\(temporary)")
                return
            }
            #expect(later.code == 451)
            guard case .accepted = await mailer.send(Self.mail(to: "fine@example.org")) else {
                Issue.record("the message after two refusals was not accepted")
                return
            }
            await mailer.shutdown()
            let messages = try sink.messages()
            #expect(messages.map(\.to) == [["fine@example.org"]])
            #expect(messages.first?.connection == 1, "the refusals left the first connection usable")
        }
    }

    /// The connection closes after the final dot, without a reply: the server may have taken
    /// the message (this one did), so it must not be sent again.
    @Test func aConnectionLostAfterTheDataIsUncertain() async throws {
        try await Self.withSink { sink in
            let mailer = SMTPMailer(configuration: sink.configuration(), logger: Self.logger)
            let outcome = await mailer.send(Self.mail(to: "drop@example.org"))
            guard case .uncertain(let error) = outcome else {
                Issue.record("\(outcome)")
                return
            }
            #expect(error.code == .connectionFailed)
            let kept = try sink.messages().count
            #expect(kept == 1)
            // The next message gets a connection of its own.
            guard case .accepted = await mailer.send(Self.mail(to: "next@example.org")) else {
                Issue.record("no message after the lost connection")
                return
            }
            await mailer.shutdown()
        }
    }

    @Test func aSlowReplyToTheDataIsUncertainAtItsLimit() async throws {
        try await Self.withSink { sink in
            var configuration = sink.configuration()
            configuration.timeouts.dataEnd = .milliseconds(500)
            let mailer = SMTPMailer(configuration: configuration, logger: Self.logger)
            let started = ContinuousClock.now
            let outcome = await mailer.send(Self.mail(to: "slow@example.org"))
            guard case .uncertain(let error) = outcome else {
                Issue.record("\(outcome)")
                return
            }
            #expect(error.code == .timedOut)
            // The server waits 5 s before answering: the limit, not the server, ended the wait.
            #expect(ContinuousClock.now - started < .seconds(4))
            await mailer.shutdown()
        }
    }

    @Test func credentialsAreNeverSentWithoutTLS() async throws {
        try await Self.withSink(tls: false, authentication: false) { sink in
            let mailer = SMTPMailer(configuration: sink.configuration(credentials: true), logger: Self.logger)
            let outcome = await mailer.send(Self.mail(to: "customer@example.org"))
            guard case .notHandedOver(let error) = outcome else {
                Issue.record("\(outcome)")
                return
            }
            #expect(error.code == .tlsUnavailable)
            let kept = try sink.messages()
            #expect(kept.isEmpty)
            await mailer.shutdown()
        }
    }

    @Test func aLocalCatcherWithoutTLSNorCredentialsTakesMail() async throws {
        try await Self.withSink(tls: false, authentication: false, pipelining: false) { sink in
            let mailer = SMTPMailer(configuration: try SMTPConfiguration(url: "smtp://127.0.0.1:\(sink.port)"), logger: Self.logger)
            let outcome = await mailer.send(Self.mail(to: "customer@example.org"))
            guard case .accepted = outcome else {
                Issue.record("\(outcome)")
                return
            }
            let kept = try sink.messages()
            #expect(kept.first?.tls == false)
            await mailer.shutdown()
        }
    }

    @Test func aWrongPasswordIsAnAuthenticationFailure() async throws {
        try await Self.withSink { sink in
            let mailer = SMTPMailer(configuration: sink.configuration(password: "wrong"), logger: Self.logger)
            let outcome = await mailer.send(Self.mail(to: "customer@example.org"))
            guard case .notHandedOver(let error) = outcome else {
                Issue.record("\(outcome)")
                return
            }
            #expect(error.code == .authenticationFailed, "\(error.debugDescription)")
            #expect(!error.description.contains("wrong"), "the description names the kind only")
            await mailer.shutdown()
        }
    }

    @Test func aServerThatNeverGreetsTimesOut() async throws {
        // A listener that accepts and says nothing.
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        var configuration = SMTPConfiguration(host: "127.0.0.1", port: silent.localAddress!.port!, security: .startTLS(required: false))
        configuration.timeouts.command = .milliseconds(300)
        let mailer = SMTPMailer(configuration: configuration, logger: Self.logger)
        let outcome = await mailer.send(Self.mail(to: "customer@example.org"))
        guard case .notHandedOver(let error) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect(error.code == .timedOut, "\(error.debugDescription)")
        await mailer.shutdown()
        try await silent.close()
    }

    @Test func aRefusedConnectionIsNotHandedOver() async throws {
        let mailer = SMTPMailer(configuration: SMTPConfiguration(host: "127.0.0.1", port: 9, security: .startTLS(required: false)), logger: Self.logger)
        guard case .notHandedOver(let error) = await mailer.send(Self.mail(to: "customer@example.org")) else {
            Issue.record("sent to nobody")
            return
        }
        #expect(error.code == .connectionFailed)
        await mailer.shutdown()
    }
}
