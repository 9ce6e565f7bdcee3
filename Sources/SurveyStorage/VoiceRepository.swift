import Foundation
import Postgres
import SurveyDomain

/// A survey call's webhooks, as the provider sends them: the call answered (by a person or
/// a machine), the digits keyed, and the call's end. A call says only its id; the routing
/// table (`provider_messages`, through `route_delivery_status`) gives its request, and
/// everything after runs scoped to that company.
public struct VoiceRepository: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    public enum Answered: Sendable, Equatable {
        /// A person: ask the question, in the request's language.
        case ask(question: String, language: String?)
        /// A machine or a fax: the request fails (`machine`), the call ends.
        case machine
        /// The call's request is not recorded yet (the worker is writing it down).
        case notYetKnown
        /// Nothing to ask: the request is answered, failed, cancelled or past its window.
        case closed
    }

    /// The call was answered. A person makes the request `delivered`; a machine fails it
    /// with reason `machine`, and the number is free again.
    public func answered(call callSID: String, byMachine: Bool) async throws -> Answered {
        try await database.client.withTransaction(deadline: RequestDeadline.current) { connection in
            guard let call = try await Self.call(callSID, on: connection) else { return .notYetKnown }
            guard call.isOpen else { return .closed }
            if byMachine {
                try await connection.query(
                    """
                    UPDATE survey_requests SET status = 'failed', failure = 'machine', failed_at = now()
                     WHERE company_id = \(call.company) AND request_id = \(call.request)
                    """)
                try await Self.endCall(call, on: connection)
                return .machine
            }
            if call.status == "sent" {
                try await connection.query(
                    """
                    UPDATE survey_requests SET status = 'delivered', delivered_at = now()
                     WHERE company_id = \(call.company) AND request_id = \(call.request)
                    """)
            }
            return .ask(question: call.question, language: call.language)
        }
    }

    public enum Keyed: Sendable, Equatable {
        case recorded(language: String?)
        /// Not a score: ask once more (`askAgain`), with the question.
        case askAgain(question: String, language: String?)
        /// Not a score, the second time: a bad response is counted, the call ends.
        case badResponse(language: String?)
        case closed
    }

    /// What the caller keyed, on the `attempt`-th asking (1 or 2). A score is recorded (a
    /// second call's score replaces a first, as a second reply would); anything else asks
    /// once more, then counts a bad response.
    public func keyed(_ score: Int?, attempt: Int, call callSID: String) async throws -> Keyed {
        try await database.client.withTransaction(deadline: RequestDeadline.current) { connection in
            guard let call = try await Self.call(callSID, on: connection), call.isOpen else { return .closed }
            guard let score else {
                if attempt < 2 { return .askAgain(question: call.question, language: call.language) }
                try await connection.query(
                    """
                    UPDATE survey_requests SET bad_replies = bad_replies + 1
                     WHERE company_id = \(call.company) AND request_id = \(call.request)
                    """)
                return .badResponse(language: call.language)
            }
            try await connection.query(
                """
                UPDATE survey_requests SET score = \(score), responded_at = now()
                 WHERE company_id = \(call.company) AND request_id = \(call.request)
                """)
            try await connection.query(
                "SELECT release_open_surveys(ARRAY[\(call.hash)]::bytea[], ARRAY[\(call.request)]::bigint[])")
            return .recorded(language: call.language)
        }
    }

    public enum Ended: Sendable, Equatable {
        /// The call is over; the job (and the number it held) is gone.
        case completed
        /// Nobody answered: another call is due then.
        case retry(at: Date)
        /// Nobody answered and the company's rule allows no more calls: failed with this reason.
        case failed(reason: String)
        /// Already ended (the provider told us twice).
        case alreadyEnded
        /// Not one of our calls (or not written down yet).
        case unknown
    }

    /// The call's final status (`completed`, `busy`, `no-answer`, `failed`, `canceled`).
    /// A call nobody answered is placed again later if the company's rule allows (never
    /// inside its quiet hours, never two at once: the job was held while this call lasted),
    /// else the request fails with the status as its reason.
    public func ended(call callSID: String, status: String, seconds: Int?, now: Date = Date()) async throws -> Ended {
        try await database.client.withTransaction(deadline: RequestDeadline.current) { connection in
            guard let call = try await Self.call(callSID, on: connection) else { return .unknown }
            // An earlier call's late word: the request has moved on (another call is due, or
            // under way).
            guard call.isCurrent, call.status != "queued" else { return .alreadyEnded }
            if let seconds {
                try await connection.query(
                    """
                    UPDATE survey_requests SET call_seconds = \(seconds)
                     WHERE company_id = \(call.company) AND request_id = \(call.request)
                    """)
            }
            // Answered (`delivered`) or already decided: the call's end changes nothing more,
            // and nothing more can be answered, so the number is free for the next survey.
            guard call.status == "sent", status != "completed" else {
                try await Self.endCall(call, on: connection)
                return .completed
            }
            guard let job = try await connection.query(
                """
                SELECT j.job_id, j.calls_placed, c.voice_call_attempts, c.voice_retry_minutes,
                       to_char(c.quiet_hours_start, 'HH24:MI'), to_char(c.quiet_hours_end, 'HH24:MI'), c.time_zone
                  FROM sms_jobs AS j JOIN companies AS c ON c.company_id = j.company_id
                 WHERE j.company_id = \(call.company) AND j.request_id = \(call.request)
                   FOR UPDATE OF j
                """
            ).single else { return .alreadyEnded }
            let (jobID, calls, attempts, minutes, quietStart, quietEnd, timeZone) =
                try job.decode((Int64, Int, Int, Int, String?, String?, String).self)
            let schedule = CompanySettings(quietHours: CompanyRepository.quietHours(quietStart, quietEnd), timeZone: timeZone).schedule
            let rule = VoiceRetryRule(attempts: attempts, minutes: minutes)
            if ["busy", "no-answer"].contains(status), let next = rule.nextCall(after: calls, now: now, schedule: schedule) {
                try await connection.query(
                    """
                    UPDATE sms_jobs SET leased_until = NULL, lease_id = NULL, claim_position = NULL, run_at = \(next), due_at = \(next)
                     WHERE company_id = \(call.company) AND job_id = \(jobID)
                    """)
                try await connection.query(
                    "UPDATE survey_requests SET status = 'queued' WHERE company_id = \(call.company) AND request_id = \(call.request)")
                return .retry(at: next)
            }
            let reason = ["busy", "no-answer"].contains(status) ? status : "call-failed"
            try await connection.query(
                """
                UPDATE survey_requests SET status = 'failed', failure = \(reason), failed_at = now()
                 WHERE company_id = \(call.company) AND request_id = \(call.request)
                """)
            try await Self.endCall(call, on: connection)
            return .failed(reason: reason)
        }
    }

    // MARK: -

    struct Call {
        var company: CompanyID
        var request: RequestID
        var status: String
        var hash: Data
        var question: String
        /// The language the question is spoken in (`spokenLanguage`).
        var language: String?
        /// Whether this is the request's latest call (a late or repeated webhook of an earlier
        /// call of the same request changes nothing).
        var isCurrent: Bool
        /// Still asking: placed or answered, unanswered... or answered once (a new choice
        /// replaces it), within the window.
        var isOpen: Bool
    }

    /// The call's request, locked for this transaction, scoped to its company from here.
    static func call(_ callSID: String, on connection: PostgresConnection) async throws -> Call? {
        guard let route = try await connection.query(
            "SELECT company_id, request_id FROM route_delivery_status(\(callSID), 'call')"
        ).single else { return nil }
        let (company, request) = try route.decode((CompanyID, RequestID).self)
        try await Database.enterTenant(company, on: connection)
        guard let row = try await connection.query(
            """
            SELECT r.status, r.destination_hash, q.body, r.language, q.language, r.provider_message_id IS NOT DISTINCT FROM \(callSID),
                   r.status IN ('sent', 'delivered') AND (r.respond_by IS NULL OR r.respond_by > now())
              FROM survey_requests AS r JOIN questions AS q ON q.company_id = r.company_id AND q.question_id = r.question_id
             WHERE r.company_id = \(company) AND r.request_id = \(request)
               FOR UPDATE OF r
            """
        ).single else { return nil }
        let (status, hash, question, requested, questionLanguage, isCurrent, isOpen) =
            try row.decode((String, Data, String, String?, String, Bool, Bool).self)
        return Call(
            company: company, request: request, status: status, hash: hash, question: question,
            language: spokenLanguage(requested: requested, question: questionLanguage), isCurrent: isCurrent,
            isOpen: isOpen && isCurrent)
    }

    /// A call that ended the request: its job and number go, and the number is free.
    static func endCall(_ call: Call, on connection: PostgresConnection) async throws {
        try await deleteJob(call, on: connection)
        try await connection.query("SELECT release_open_surveys(ARRAY[\(call.hash)]::bytea[], ARRAY[\(call.request)]::bigint[])")
    }

    /// The language the call speaks: the question's (the survey may have none in the one
    /// requested), in the request's regional form when it is the same language (`fr-CA`
    /// asked, `fr` question: a Canadian French voice).
    static func spokenLanguage(requested: String?, question: String) -> String {
        guard let requested, let asked = try? LanguageTag(parsing: requested), let written = try? LanguageTag(parsing: question),
            asked.primaryLanguage.lowercased() == written.primaryLanguage.lowercased()
        else { return question }
        return requested
    }

    static func deleteJob(_ call: Call, on connection: PostgresConnection) async throws {
        try await connection.query("DELETE FROM sms_jobs WHERE company_id = \(call.company) AND request_id = \(call.request)")
    }
}
