import SurveyDomain

/// What a repository reports that a client can act on; everything else is a `PostgresError`.
public enum StorageError: Error, Equatable, Sendable {
    /// The thing does not exist for this company (whether it exists for another is not said).
    case notFound
    /// The survey already has a question in this language.
    case duplicateLanguage(String)
    /// Queuing `requested` more messages of the channel would take the company past its
    /// daily cap for it; nothing was queued.
    case dailyCapExceeded(Channel, DailyAllowance, requested: Int)
    /// Revoking this token would leave the company without an active `admin` token.
    case lastAdminToken
    /// The company has as many webhook endpoints as it may (`limit`).
    case tooManyWebhookEndpoints(limit: Int)
    /// Someone else (a worker, another call) is making an attempt of this delivery now.
    case deliveryInProgress
}
