import Foundation
import Hummingbird
import SurveyDomain
import SurveyStorage

/// `GET /usage?month=YYYY-MM`: SMS messages sent and segments billed, and e-mails sent, in a
/// month (UTC); and where the company stands today against its daily cap of each channel.
struct UsageController {
    let replies: ReplyRepository
    let companies: CompanyRepository

    func addRoutes(to routes: Routes<TenantRequestContext>) {
        routes.on(.get, "usage", use: usage)
    }

    struct Usage: JSONResponse {
        var month: String
        var sent: ReplyRepository.Usage
        var allowances: DailyAllowances
        var json: JSONDocument {
            .object([
                ("month", .string(month)), ("messages", .integer(Int64(sent.messages))), ("segments", .integer(Int64(sent.segments))),
                ("emails", .integer(Int64(sent.emails))), ("calls", .integer(Int64(sent.calls))),
                ("callMinutes", .integer(Int64(sent.callMinutes))),
                ("dailySmsCap", .integer(Int64(allowances.sms.cap))), ("smsQueuedToday", .integer(Int64(allowances.sms.queuedToday))),
                ("dailyEmailCap", .integer(Int64(allowances.email.cap))),
                ("emailsQueuedToday", .integer(Int64(allowances.email.queuedToday))),
                ("dailyVoiceCap", .integer(Int64(allowances.voice.cap))),
                ("callsQueuedToday", .integer(Int64(allowances.voice.queuedToday))),
            ])
        }
    }

    @Sendable func usage(request: Request, context: TenantRequestContext) async throws -> JSONReply<Usage> {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let (year, month): (Int, Int)
        if let text = request.uri.queryParameters["month"] {
            let parts = text.split(separator: "-")
            guard parts.count == 2, parts[0].count == 4, parts[1].count == 2, let y = Int(parts[0]), let m = Int(parts[1]),
                (2000...9999).contains(y), (1...12).contains(m)
            else { throw Problem.invalidField("month", "must be a month as YYYY-MM, e.g. 2026-11") }
            (year, month) = (y, m)
        } else {
            let now = calendar.dateComponents([.year, .month], from: Date())
            (year, month) = (now.year!, now.month!)
        }
        let start = calendar.date(from: DateComponents(year: year, month: month, day: 1))!
        let end = calendar.date(byAdding: .month, value: 1, to: start)!
        let sent = try await replies.usage(company: context.company, from: start, to: end)
        let allowances = try await companies.allowances(context.company)
        return JSONReply(body: Usage(month: String(format: "%04d-%02d", year, month), sent: sent, allowances: allowances))
    }
}
