import Foundation
import SurveyDomain
import SurveyStorage

/// Company webhooks on the wire.
enum WebhookWire {
    /// An endpoint; `secret` only in the answers that make one (creation, rotation).
    struct Endpoint: JSONResponse {
        var endpoint: WebhookEndpoint
        var secret: WebhookSecret?

        var json: JSONDocument {
            var fields: [(String, JSONDocument)] = [
                ("id", .integer(endpoint.id.rawValue)),
                ("url", .string(endpoint.url)),
                ("events", .array(endpoint.events.map { .string($0.rawValue) })),
                ("description", endpoint.description.map(JSONDocument.string) ?? .null),
                ("enabled", .bool(endpoint.enabled)),
                ("disabledReason", endpoint.disabledReason.map(JSONDocument.string) ?? .null),
                ("disabledAt", date(endpoint.disabledAt)),
                ("failingSince", date(endpoint.failingSince)),
                ("previousSecretExpiresAt", date(endpoint.previousSecretExpiresAt)),
                ("createdAt", .string(Timestamp.format(endpoint.createdAt))),
            ]
            if let secret { fields.append(("secret", .string(secret.text))) }
            return .object(fields)
        }
    }

    /// What `/test` and `/retry` answer: the attempt, and where the delivery stands.
    struct AttemptOutcome: JSONResponse {
        var attempt: WebhookDeliveryRepository.Attempt

        var json: JSONDocument {
            let (state, next): (WebhookDeliveryState, Date?) =
                switch attempt.next {
                case .succeeded: (.succeeded, nil)
                case .retry(let delay): (.pending, Date().addingTimeInterval(Double(delay.roundedUpMilliseconds) / 1000))
                // A replay of a delivery that had succeeded does not undo it (as recorded).
                case .giveUp: (attempt.delivery.state == .succeeded ? .succeeded : .failed, nil)
                }
            return .object([
                ("deliveryId", .integer(attempt.delivery.id.rawValue)),
                ("webhookId", .string(attempt.delivery.messageID)),
                ("succeeded", .bool(attempt.next == .succeeded)),
                ("httpStatus", attempt.httpStatus.map { .integer(Int64($0)) } ?? .null),
                ("error", attempt.error.map(JSONDocument.string) ?? .null),
                ("durationMs", .integer(attempt.duration.roundedUpMilliseconds)),
                ("responseExcerpt", attempt.responseExcerpt.map(JSONDocument.string) ?? .null),
                ("status", .string(state.rawValue)),
                ("nextAttemptAt", date(next)),
            ])
        }
    }

    struct Delivery: JSONResponse {
        var record: WebhookDeliveryRecord

        var json: JSONDocument {
            .object([
                ("id", .integer(record.id.rawValue)),
                ("webhookId", .string(record.messageID)),
                ("eventType", .string(record.eventType.rawValue)),
                ("createdAt", .string(Timestamp.format(record.createdAt))),
                ("status", .string(record.state.rawValue)),
                ("nextAttemptAt", date(record.nextAttemptAt)),
                (
                    "attempts",
                    .array(
                        record.attempts.map { attempt in
                            .object([
                                ("attempt", .integer(Int64(attempt.number))),
                                ("at", .string(Timestamp.format(attempt.startedAt))),
                                ("httpStatus", attempt.httpStatus.map { .integer(Int64($0)) } ?? .null),
                                ("error", attempt.error.map(JSONDocument.string) ?? .null),
                                ("durationMs", .integer(Int64(attempt.durationMilliseconds))),
                                ("responseExcerpt", attempt.responseExcerpt.map(JSONDocument.string) ?? .null),
                            ])
                        })
                ),
            ])
        }
    }

    static func date(_ date: Date?) -> JSONDocument {
        date.map { .string(Timestamp.format($0)) } ?? .null
    }

    /// A non-empty list of known, subscribable event names, each once.
    static func events(_ value: JSONValue?, required: Bool, _ validator: inout FieldValidator) -> [WebhookEventType]? {
        let known = WebhookEventType.subscribable.map(\.rawValue).joined(separator: ", ")
        guard let value, value != .null else {
            if required { validator.fail("events", "is required: a list of \(known)") }
            return nil
        }
        guard case .array(let items) = value, !items.isEmpty else {
            validator.fail("events", "must be a non-empty list of \(known)")
            return nil
        }
        var events: [WebhookEventType] = []
        for (index, item) in items.enumerated() {
            guard case .string(let name) = item, let event = WebhookEventType(rawValue: name), event != .ping else {
                validator.fail("events[\(index)]", "must be one of \(known)")
                continue
            }
            if events.contains(event) {
                validator.fail("events[\(index)]", "repeats \(name)")
            } else {
                events.append(event)
            }
        }
        return events.count == items.count ? events : nil
    }

    /// Absent: unchanged (`nil`); null: none (`.some(nil)`); else a string of up to 500.
    static func description(_ value: JSONValue?, _ validator: inout FieldValidator) -> String?? {
        guard let value else { return nil }
        guard value != .null else { return .some(nil) }
        guard case .string(let text) = value else {
            validator.fail("description", "must be a string or null, not \(value.kind)")
            return nil
        }
        guard let checked = validator.checkString(text, at: "description", length: 1...WebhookEndpoint.maximumDescriptionLength) else {
            return nil
        }
        return .some(checked)
    }
}
