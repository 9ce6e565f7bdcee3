/// A typed database identifier, so a survey id can never be passed where a company id is
/// expected. Encodes as a plain JSON number, as in the API reference.
public struct Identifier<Entity>: RawRepresentable, Hashable, Comparable, Sendable, Codable,
    CustomStringConvertible
{
    public let rawValue: Int64
    public init(rawValue: Int64) { self.rawValue = rawValue }
    public init(_ rawValue: Int64) { self.rawValue = rawValue }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(Int64.self)
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { String(rawValue) }

    /// Parses an id from a URL path or query: a positive decimal integer, nothing else.
    public init?(parsing text: Substring) {
        guard !text.isEmpty, text.count <= 19, text.allSatisfy({ $0.isASCII && $0.isNumber }),
            let value = Int64(text), value > 0
        else { return nil }
        self.rawValue = value
    }
}

public enum CompanyTag {}
public enum SurveyTag {}
public enum QuestionTag {}
public enum TokenTag {}

public typealias CompanyID = Identifier<CompanyTag>
public typealias SurveyID = Identifier<SurveyTag>
public typealias QuestionID = Identifier<QuestionTag>
public typealias TokenID = Identifier<TokenTag>

public enum WebhookEndpointTag {}
public enum WebhookDeliveryTag {}

public typealias WebhookEndpointID = Identifier<WebhookEndpointTag>
public typealias WebhookDeliveryID = Identifier<WebhookDeliveryTag>

public enum DashboardSessionTag {}

public typealias DashboardSessionID = Identifier<DashboardSessionTag>
