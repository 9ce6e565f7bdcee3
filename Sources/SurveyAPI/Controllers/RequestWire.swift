import Foundation
import SurveyDomain

/// A survey request on the wire, in JSON and as a CSV row: the same fields in the same
/// order, dates in the caller's time zone (UTC unless it named one).
struct RequestWire {
    var record: RequestRecord
    var zone: TimeZone

    /// The CSV header; `csvRow` writes the cells in this order.
    static let fields = [
        "id", "surveyId", "referenceId", "channel", "language", "segments", "status", "failureReason", "score", "category",
        "badResponses", "createdAt", "scheduledFor", "sentAt", "deliveredAt", "respondedAt", "respondBy",
    ]

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("id")
        writer.integer(record.id.rawValue)
        writer.key("surveyId")
        writer.integer(record.survey.rawValue)
        writer.key("referenceId")
        string(record.referenceID, to: &writer)
        writer.key("channel")
        writer.string(record.channel.rawValue)
        writer.key("language")
        string(record.language, to: &writer)
        writer.key("segments")
        writer.beginArray()
        for segment in record.segments {
            writer.element()
            writer.string(segment)
        }
        writer.endArray()
        writer.key("status")
        writer.string(record.status.rawValue)
        writer.key("failureReason")
        string(record.failureReason, to: &writer)
        writer.key("score")
        if let score = record.score { writer.integer(Int64(score)) } else { writer.null() }
        writer.key("category")
        string(record.category?.rawValue, to: &writer)
        writer.key("badResponses")
        writer.integer(Int64(record.badResponses))
        for (name, date) in dates {
            writer.key(name)
            string(format(date), to: &writer)
        }
        writer.endObject()
    }

    func csvRow(to writer: inout CSVWriter) {
        writer.cell(record.id.rawValue)
        writer.cell(record.survey.rawValue)
        writer.cell(record.referenceID)
        writer.cell(record.channel.rawValue)
        writer.cell(record.language)
        // Joined by `;`, as spreadsheets users expect one cell; a segment holding a `;` of
        // its own cannot be told apart here (the JSON and NDJSON forms keep the list).
        writer.cell(record.segments.joined(separator: ";"))
        writer.cell(record.status.rawValue)
        writer.cell(record.failureReason)
        writer.cell(record.score.map(Int64.init))
        writer.cell(record.category?.rawValue)
        writer.cell(Int64(record.badResponses))
        for (_, date) in dates { writer.cell(format(date)) }
        writer.endRow()
    }

    private func format(_ date: Date?) -> String? {
        guard let date else { return nil }
        // UTC, the default, needs no look-up of the zone's offset at each date.
        return zone == Self.utc ? Timestamp.format(date) : Timestamp.format(date, in: zone)
    }

    private static let utc = TimeZone(identifier: "UTC")!

    private var dates: KeyValuePairs<String, Date?> {
        [
            "createdAt": record.createdAt, "scheduledFor": record.scheduledFor, "sentAt": record.sentAt,
            "deliveredAt": record.deliveredAt, "respondedAt": record.respondedAt, "respondBy": record.respondBy,
        ]
    }

    private func string(_ value: String?, to writer: inout JSONWriter) {
        if let value { writer.string(value) } else { writer.null() }
    }
}
