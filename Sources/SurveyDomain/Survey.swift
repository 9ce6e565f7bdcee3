import Foundation

/// A survey: one NPS question, in one or more languages, for one kind of interaction.
public struct Survey: Sendable, Equatable {
    public var id: SurveyID
    public var name: String
    public var interactionType: String
    /// In the order they were added; the first is the fallback language when sending.
    public var questions: [Question]

    public init(id: SurveyID, name: String, interactionType: String, questions: [Question]) {
        self.id = id
        self.name = name
        self.interactionType = interactionType
        self.questions = questions
    }
}

public struct Question: Sendable, Equatable {
    public var id: QuestionID
    public var body: String
    public var language: LanguageTag

    public init(id: QuestionID, body: String, language: LanguageTag) {
        self.id = id
        self.body = body
        self.language = language
    }
}

/// A survey as a client asks to create it, already validated.
public struct NewSurvey: Sendable, Equatable {
    public var name: String
    public var interactionType: String
    public var questions: [NewQuestion]

    public init(name: String, interactionType: String, questions: [NewQuestion]) {
        self.name = name
        self.interactionType = interactionType
        self.questions = questions
    }
}

public struct NewQuestion: Sendable, Equatable {
    public var body: String
    public var language: LanguageTag

    public init(body: String, language: LanguageTag) {
        self.body = body
        self.language = language
    }
}

/// The limits on what a client may store, in one place for validation, docs and tests.
public enum SurveyLimits {
    public static let nameLength = 1...200
    public static let interactionTypeLength = 1...100
    public static let questionBodyLength = 1...1000
    public static let questionsPerSurvey = 1...50
}
