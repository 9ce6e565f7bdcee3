import NIOCore

/// One message to hand over: the envelope (RFC 5321) and the message itself (RFC 5322,
/// lines ending in CRLF; `MIMEMessage` writes one).
public struct OutgoingMail: Sendable {
    /// The envelope sender (bounces go there) and the one recipient, as ASCII addresses
    /// (an internationalised domain already in its A-label form).
    public var from: String
    public var to: String
    public var message: ByteBuffer

    public init(from: String, to: String, message: ByteBuffer) {
        self.from = from
        self.to = to
        self.message = message
    }
}

/// What became of a message, in the terms a sender must act on.
public enum MailOutcome: Sendable {
    /// The server took responsibility for it (250 after the data); its reply names it.
    case accepted(SMTPReply)
    /// The server refused it with a reply: permanently (5xx: do not send it again) or for now
    /// (4xx: the same message may be sent again later).
    case refused(SMTPReply, permanent: Bool)
    /// It never reached the point where the server could have taken it: safe to send again.
    case notHandedOver(MailError)
    /// The data's final dot went out and no reply came: it may or may not have been taken,
    /// so it must not be sent again.
    case uncertain(MailError)
}

extension SMTPConnection {
    /// One mail transaction. MAIL, RCPT and DATA go in one write when the server pipelines.
    /// A refusal before the data leaves the connection usable (after RSET); anything else
    /// leaves it to be closed, which `reusable` says.
    func transaction(_ mail: OutgoingMail) async -> (outcome: MailOutcome, reusable: Bool) {
        let envelope = ["MAIL FROM:<\(mail.from)>", "RCPT TO:<\(mail.to)>", "DATA"]
        let replies: [SMTPReply]
        do {
            if extensions["PIPELINING"] != nil {
                replies = try await pipeline(envelope)
            } else {
                var sequential: [SMTPReply] = []
                for (index, line) in envelope.enumerated() {
                    let reply = try await command(line)
                    sequential.append(reply)
                    if reply.code != (index == 2 ? 354 : 250) { break }
                }
                replies = sequential
            }
        } catch {
            return (.notHandedOver(error as? MailError ?? MailError(.connectionFailed, "\(error)")), false)
        }
        for (index, reply) in replies.enumerated() where reply.code != (index == 2 ? 354 : 250) {
            if replies.count == 3 && replies[2].code == 354 {
                // Pipelined, a refused recipient and yet a go-ahead for the data: end the data
                // at once; what the server makes of an empty message is not ours to send, and
                // the connection is not reused.
                _ = try? await data(ByteBuffer())
                return (.refused(reply, permanent: reply.isPermanent), false)
            }
            let reset = (try? await command("RSET"))?.code == 250
            guard reply.isTransient || reply.isPermanent else {
                return (.notHandedOver(MailError(.protocolViolation, "an unexpected reply to \(envelope[index])", reply: reply)), false)
            }
            return (.refused(reply, permanent: reply.isPermanent), reset)
        }
        do {
            let reply = try await data(mail.message)
            switch reply.code {
            case 250: return (.accepted(reply), true)
            case 400..<600: return (.refused(reply, permanent: reply.isPermanent), true)
            default: return (.uncertain(MailError(.protocolViolation, "an unexpected reply to the data", reply: reply)), false)
            }
        } catch {
            return (.uncertain(error as? MailError ?? MailError(.connectionFailed, "\(error)")), false)
        }
    }
}
