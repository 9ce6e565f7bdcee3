import Foundation

/// Where a survey request stands, as the API shows it.
///
/// ```
/// scheduled → queued → sent → delivered → responded
///     │          │       │        └──────→ expired (no valid answer within the window)
///     └──────────┴───────┴→ failed / cancelled
/// ```
public enum RequestStatus: String, Sendable, CaseIterable {
    /// Waiting for its `sendAt` or for the company's quiet hours to end.
    case scheduled
    /// Due, waiting for a worker.
    case queued
    /// Handed to the provider.
    case sent
    /// The provider reported it delivered.
    case delivered
    /// Not sent, or not delivered; `failureReason` says why.
    case failed
    /// A valid score came back.
    case responded
    /// Sent, but no valid score came back within the response window.
    case expired
    /// Withdrawn before it reached the provider, by the company or by a send rule that no
    /// longer held when it fell due (`failureReason` then names the rule).
    case cancelled
}

/// The Net Promoter category of a score.
public enum ScoreCategory: String, Sendable, CaseIterable {
    case promoter
    case passive
    case detractor

    public init(score: Int) {
        switch score {
        case 9...: self = .promoter
        case 7...8: self = .passive
        default: self = .detractor
        }
    }
}

/// One survey request as its company may see it: never its destination, in any form.
public struct RequestRecord: Sendable, Equatable {
    public var id: RequestID
    public var survey: SurveyID
    public var referenceID: String?
    public var channel: Channel
    public var language: String?
    public var segments: [String]
    public var status: RequestStatus
    public var failureReason: String?
    public var score: Int?
    /// Replies that were not a score.
    public var badResponses: Int
    public var createdAt: Date
    public var scheduledFor: Date?
    public var sentAt: Date?
    public var deliveredAt: Date?
    public var respondedAt: Date?
    /// The end of the response window (set when sent).
    public var respondBy: Date?

    public var category: ScoreCategory? { score.map(ScoreCategory.init(score:)) }

    public init(
        id: RequestID, survey: SurveyID, referenceID: String?, channel: Channel, language: String?, segments: [String],
        status: RequestStatus, failureReason: String?, score: Int?, badResponses: Int, createdAt: Date,
        scheduledFor: Date?, sentAt: Date?, deliveredAt: Date?, respondedAt: Date?, respondBy: Date?
    ) {
        self.id = id
        self.survey = survey
        self.referenceID = referenceID
        self.channel = channel
        self.language = language
        self.segments = segments
        self.status = status
        self.failureReason = failureReason
        self.score = score
        self.badResponses = badResponses
        self.createdAt = createdAt
        self.scheduledFor = scheduledFor
        self.sentAt = sentAt
        self.deliveredAt = deliveredAt
        self.respondedAt = respondedAt
        self.respondBy = respondBy
    }
}

/// Which requests a list or an export holds.
public struct RequestFilter: Sendable, Equatable {
    /// Creation time, half-open, as the reports' periods.
    public var period: Range<Date>
    public var survey: SurveyID?
    public var referenceID: String?
    public var status: RequestStatus?
    public var channel: Channel?
    public var segments: [String]
    public var segmentMode: SegmentMode

    public init(
        period: Range<Date>, survey: SurveyID? = nil, referenceID: String? = nil, status: RequestStatus? = nil,
        channel: Channel? = nil, segments: [String] = [], segmentMode: SegmentMode = .all
    ) {
        self.period = period
        self.survey = survey
        self.referenceID = referenceID
        self.status = status
        self.channel = channel
        self.segments = segments
        self.segmentMode = segmentMode
    }
}

/// The order of a list: by request id, which follows creation.
public enum RequestOrder: String, Sendable, CaseIterable {
    case newest
    case oldest
}

/// Why a request cannot be cancelled: it is past the point of no return.
public struct RequestNotCancellable: Error, Sendable, Equatable {
    public var status: RequestStatus
    /// Queued but already claimed by a worker, which may be handing it over right now.
    public var handingOver: Bool
    /// Queued for another call, a first one having been placed (nobody answered it).
    public var callPlaced: Bool

    public init(status: RequestStatus, handingOver: Bool = false, callPlaced: Bool = false) {
        self.status = status
        self.handingOver = handingOver
        self.callPlaced = callPlaced
    }
}
