import Foundation

public struct Company: Sendable, Equatable {
    public var id: CompanyID
    public var name: String
    public var createdAt: Date
    public var settings: CompanySettings

    public init(id: CompanyID, name: String, createdAt: Date, settings: CompanySettings = CompanySettings()) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
        self.settings = settings
    }
}

/// What the operator sets per company.
public struct CompanySettings: Sendable, Equatable {
    /// Days before the same number may be surveyed again by this company.
    public var resurveyDays: Int
    /// SMS the company may queue per UTC day; a send call that would go past it is refused whole.
    public var dailySMSCap: Int
    /// E-mails the company may queue per UTC day, likewise.
    public var dailyEmailCap: Int
    /// Calls the company may queue per UTC day, likewise.
    public var dailyVoiceCap: Int
    /// When a call is not answered (busy, no answer): how many calls a request may take in
    /// all, and how long between two.
    public var voiceRetry: VoiceRetryRule
    /// The company's own request rate, all its tokens together; `nil` takes the service's
    /// default (`COMPANY_RATE_LIMIT_*`).
    public var requestRateLimit: RateLimit?
    /// When no survey goes out, in `timeZone`; `nil`: never quiet.
    public var quietHours: QuietHours?
    /// An IANA name (`ReportTimeZones`): the company's wall clock, for its quiet hours.
    public var timeZone: String

    public static let defaultTimeZone = "Europe/Brussels"

    public init(
        resurveyDays: Int = 30, dailySMSCap: Int = 10_000, dailyEmailCap: Int = 50_000, dailyVoiceCap: Int = 1_000,
        voiceRetry: VoiceRetryRule = VoiceRetryRule(), requestRateLimit: RateLimit? = nil,
        quietHours: QuietHours? = .default, timeZone: String = CompanySettings.defaultTimeZone
    ) {
        self.resurveyDays = resurveyDays
        self.dailySMSCap = dailySMSCap
        self.dailyEmailCap = dailyEmailCap
        self.dailyVoiceCap = dailyVoiceCap
        self.voiceRetry = voiceRetry
        self.requestRateLimit = requestRateLimit
        self.quietHours = quietHours
        self.timeZone = timeZone
    }

    /// When this company's surveys may go out.
    public var schedule: SendSchedule {
        SendSchedule(quietHours: quietHours, timeZone: ReportTimeZones.zone(named: timeZone) ?? TimeZone(identifier: "UTC")!)
    }
}

/// A change to some of a company's settings; `nil` leaves a setting as it is.
public struct CompanySettingsChange: Sendable, Equatable {
    public var resurveyDays: Int?
    public var dailySMSCap: Int?
    public var dailyEmailCap: Int?
    public var dailyVoiceCap: Int?
    public var voiceCallAttempts: Int?
    public var voiceRetryMinutes: Int?
    public var requestRateLimit: RateLimitChange?
    public var quietHours: QuietHoursChange?
    public var timeZone: String?

    /// A company's own rate limit set, or dropped for the service's default.
    public enum RateLimitChange: Sendable, Equatable {
        case set(RateLimit)
        case useDefault
    }

    /// Quiet hours set, or turned off.
    public enum QuietHoursChange: Sendable, Equatable {
        case set(QuietHours)
        case off
    }

    public init(
        resurveyDays: Int? = nil, dailySMSCap: Int? = nil, dailyEmailCap: Int? = nil, dailyVoiceCap: Int? = nil,
        voiceCallAttempts: Int? = nil, voiceRetryMinutes: Int? = nil, requestRateLimit: RateLimitChange? = nil,
        quietHours: QuietHoursChange? = nil, timeZone: String? = nil
    ) {
        self.resurveyDays = resurveyDays
        self.dailySMSCap = dailySMSCap
        self.dailyEmailCap = dailyEmailCap
        self.dailyVoiceCap = dailyVoiceCap
        self.voiceCallAttempts = voiceCallAttempts
        self.voiceRetryMinutes = voiceRetryMinutes
        self.requestRateLimit = requestRateLimit
        self.quietHours = quietHours
        self.timeZone = timeZone
    }

    public var isEmpty: Bool {
        resurveyDays == nil && dailySMSCap == nil && dailyEmailCap == nil && dailyVoiceCap == nil && voiceCallAttempts == nil
            && voiceRetryMinutes == nil && requestRateLimit == nil && quietHours == nil && timeZone == nil
    }

    /// `settings` with this change applied.
    public func applied(to settings: CompanySettings) -> CompanySettings {
        var result = settings
        if let resurveyDays { result.resurveyDays = resurveyDays }
        if let dailySMSCap { result.dailySMSCap = dailySMSCap }
        if let dailyEmailCap { result.dailyEmailCap = dailyEmailCap }
        if let dailyVoiceCap { result.dailyVoiceCap = dailyVoiceCap }
        if let voiceCallAttempts { result.voiceRetry.attempts = voiceCallAttempts }
        if let voiceRetryMinutes { result.voiceRetry.minutes = voiceRetryMinutes }
        switch requestRateLimit {
        case .set(let limit)?: result.requestRateLimit = limit
        case .useDefault?: result.requestRateLimit = nil
        case nil: break
        }
        switch quietHours {
        case .set(let hours)?: result.quietHours = hours
        case .off?: result.quietHours = nil
        case nil: break
        }
        if let timeZone { result.timeZone = timeZone }
        return result
    }
}

public enum CompanyLimits {
    public static let nameLength = 1...200
    public static let resurveyDays = 0...3650
    public static let dailySMSCap = 0...10_000_000
    public static let dailyEmailCap = 0...10_000_000
    public static let dailyVoiceCap = 0...10_000_000
    public static let voiceCallAttempts = 1...5
    public static let voiceRetryMinutes = 1...1440
    /// A company's own request rate: requests per second, and burst.
    public static let requestsPerSecond = 0.01...1_000_000.0
    public static let requestBurst = 1...10_000_000
}

/// Where a company stands against one of its daily caps (SMS, e-mail).
public struct DailyAllowance: Sendable, Equatable {
    public var cap: Int
    public var queuedToday: Int

    public init(cap: Int, queuedToday: Int) {
        self.cap = cap
        self.queuedToday = queuedToday
    }

    public var remaining: Int { max(0, cap - queuedToday) }
}

/// A company's daily caps, one per channel.
public struct DailyAllowances: Sendable, Equatable {
    public var sms: DailyAllowance
    public var email: DailyAllowance
    public var voice: DailyAllowance

    public init(sms: DailyAllowance, email: DailyAllowance, voice: DailyAllowance) {
        self.sms = sms
        self.email = email
        self.voice = voice
    }

    public subscript(channel: Channel) -> DailyAllowance {
        switch channel {
        case .sms: sms
        case .email: email
        case .voice: voice
        }
    }
}

/// A company's rule for calls nobody answered (busy, no answer): a request takes at most
/// `attempts` calls in all, `minutes` apart (never inside the company's quiet hours), one at
/// a time.
public struct VoiceRetryRule: Sendable, Equatable {
    public var attempts: Int
    public var minutes: Int

    public init(attempts: Int = 2, minutes: Int = 60) {
        self.attempts = attempts
        self.minutes = minutes
    }

    /// When the next call may be placed after `calls` unanswered ones, or `nil`: no more.
    public func nextCall(after calls: Int, now: Date, schedule: SendSchedule) -> Date? {
        guard calls < attempts else { return nil }
        return schedule.dueTime(sendAt: now.addingTimeInterval(TimeInterval(minutes * 60)), now: now)
    }
}
