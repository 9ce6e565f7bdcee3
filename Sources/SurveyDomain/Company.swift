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
    /// The company's own request rate, all its tokens together; `nil` takes the service's
    /// default (`COMPANY_RATE_LIMIT_*`).
    public var requestRateLimit: RateLimit?

    public init(resurveyDays: Int = 30, dailySMSCap: Int = 10_000, requestRateLimit: RateLimit? = nil) {
        self.resurveyDays = resurveyDays
        self.dailySMSCap = dailySMSCap
        self.requestRateLimit = requestRateLimit
    }
}

/// A change to some of a company's settings; `nil` leaves a setting as it is.
public struct CompanySettingsChange: Sendable, Equatable {
    public var resurveyDays: Int?
    public var dailySMSCap: Int?
    public var requestRateLimit: RateLimitChange?

    /// A company's own rate limit set, or dropped for the service's default.
    public enum RateLimitChange: Sendable, Equatable {
        case set(RateLimit)
        case useDefault
    }

    public init(resurveyDays: Int? = nil, dailySMSCap: Int? = nil, requestRateLimit: RateLimitChange? = nil) {
        self.resurveyDays = resurveyDays
        self.dailySMSCap = dailySMSCap
        self.requestRateLimit = requestRateLimit
    }

    public var isEmpty: Bool { resurveyDays == nil && dailySMSCap == nil && requestRateLimit == nil }
}

public enum CompanyLimits {
    public static let nameLength = 1...200
    public static let resurveyDays = 0...3650
    public static let dailySMSCap = 0...10_000_000
    /// A company's own request rate: requests per second, and burst.
    public static let requestsPerSecond = 0.01...1_000_000.0
    public static let requestBurst = 1...10_000_000
}

/// Where a company stands against its daily SMS cap.
public struct DailySMSAllowance: Sendable, Equatable {
    public var cap: Int
    public var queuedToday: Int

    public init(cap: Int, queuedToday: Int) {
        self.cap = cap
        self.queuedToday = queuedToday
    }

    public var remaining: Int { max(0, cap - queuedToday) }
}
