import Foundation
import MailTransport
import SMSGateway
import SurveyDomain
import SurveyStorage

/// E-mail through an SMTP relay: the survey's question with eleven score links, in the
/// request's language, with a one-click unsubscribe (RFC 8058).
public struct EmailSender: MessageSender {
    public struct Configuration: Sendable {
        /// The envelope sender and `From:` address (`MAIL_FROM`); bounces go there.
        public var from: String
        /// Where the score and unsubscribe links point (`PUBLIC_BASE_URL`), without a
        /// trailing slash.
        public var publicBaseURL: String

        public init(from: String, publicBaseURL: String) {
            self.from = from
            self.publicBaseURL = publicBaseURL.hasSuffix("/") ? String(publicBaseURL.dropLast()) : publicBaseURL
        }

        /// The part of `Message-ID` after `@`: the sender's own domain.
        var messageIDDomain: String { from.split(separator: "@").last.map(String.init) ?? "localhost" }
    }

    let mailer: SMTPMailer
    let configuration: Configuration

    public init(mailer: SMTPMailer, configuration: Configuration) {
        self.mailer = mailer
        self.configuration = configuration
    }

    public var channel: Channel { .email }

    public func send(_ job: QueueRepository.Job) async -> SentMessage {
        guard let token = job.responseToken else {
            // Every e-mail job is queued with its token; one without cannot be answered.
            return SentMessage(.permanent(reason: "the job has no response token"))
        }
        let message = Self.message(for: job, token: token, configuration: configuration)
        let mail = OutgoingMail(
            from: configuration.from, to: job.destination,
            message: message.encoded(boundary: "=_" + UUID().uuidString.replacingOccurrences(of: "-", with: "")))
        // Reasons name the reply's code or the error's kind only: a relay's text often
        // echoes the address, and reasons are logged.
        switch await mailer.send(mail) {
        case .accepted:
            return SentMessage(.accepted(providerMessageID: message.messageID))
        case .refused(let reply, let permanent):
            let reason = "refused by the relay (\(reply.code))"
            return SentMessage(permanent ? .permanent(reason: reason) : .retryable(reason: reason, retryAfter: nil))
        case .notHandedOver(let error):
            return SentMessage(.retryable(reason: error.description, retryAfter: nil))
        case .uncertain(let error):
            return SentMessage(.uncertain(reason: error.description))
        }
    }

    /// The message for a job: what the customer reads, and the headers mail clients act on.
    static func message(for job: QueueRepository.Job, token: String, configuration: Configuration) -> MIMEMessage {
        let language = job.language.flatMap { try? LanguageTag(parsing: $0) }
        let base = configuration.publicBaseURL
        let unsubscribe = "\(base)/u/\(token)"
        let content = EmailSurveyContent(
            question: job.body, companyName: job.companyName, language: language, link: { "\(base)/r/\(token)/\($0)" },
            unsubscribe: unsubscribe)
        var headers: [(name: String, value: String)] = [
            ("List-Unsubscribe", "<\(unsubscribe)>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            // An automated message: out-of-office replies should not answer it (RFC 3834).
            ("Auto-Submitted", "auto-generated"),
        ]
        if let language { headers.append(("Content-Language", language.value)) }
        return MIMEMessage(
            from: .init(name: job.companyName, address: configuration.from), to: job.destination, subject: content.subject,
            messageID: "\(UUID().uuidString.lowercased())@\(configuration.messageIDDomain)", date: Date(), headers: headers,
            text: content.text, html: content.html)
    }
}
