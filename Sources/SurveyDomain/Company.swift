import Foundation

public struct Company: Sendable, Equatable {
    public var id: CompanyID
    public var name: String
    public var createdAt: Date

    public init(id: CompanyID, name: String, createdAt: Date) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
    }
}

public enum CompanyLimits {
    public static let nameLength = 1...200
}
