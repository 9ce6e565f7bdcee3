import Hummingbird
import SurveyDomain

/// The survey as the API reference shows it: `id`, `name`, `interactionType`,
/// `questions[{id, body, language}]`, in that order.
struct SurveyResponse: JSONResponse, Equatable {
    struct QuestionResponse: JSONResponse, Equatable {
        var id: Int64
        var body: String
        var language: String
    }

    var id: Int64
    var name: String
    var interactionType: String
    var questions: [QuestionResponse]

    var json: JSONDocument {
        .object([
            ("id", .integer(id)), ("name", .string(name)), ("interactionType", .string(interactionType)),
            ("questions", .array(questions.map { $0.json })),
        ])
    }

    /// What `json` writes, without the tree: a page of surveys is the most requested body.
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("id")
        writer.integer(id)
        writer.key("name")
        writer.string(name)
        writer.key("interactionType")
        writer.string(interactionType)
        writer.key("questions")
        writer.beginArray()
        for question in questions {
            writer.element()
            question.write(to: &writer)
        }
        writer.endArray()
        writer.endObject()
    }

    init(_ survey: Survey) {
        id = survey.id.rawValue
        name = survey.name
        interactionType = survey.interactionType
        questions = survey.questions.map(QuestionResponse.init)
    }
}

extension SurveyResponse.QuestionResponse {
    var json: JSONDocument {
        .object([("id", .integer(id)), ("body", .string(body)), ("language", .string(language))])
    }

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("id")
        writer.integer(id)
        writer.key("body")
        writer.string(body)
        writer.key("language")
        writer.string(language)
        writer.endObject()
    }

    init(_ question: Question) {
        id = question.id.rawValue
        body = question.body
        language = question.language.value
    }
}

extension NewSurvey {
    /// Validates a create-survey body, reporting every bad field.
    init(json object: [String: JSONValue]) throws {
        var validator = FieldValidator()
        let name = validator.string(object, "name", at: "name", length: SurveyLimits.nameLength)
        let interactionType = validator.string(
            object, "interactionType", at: "interactionType", length: SurveyLimits.interactionTypeLength)
        var questions: [NewQuestion] = []
        switch object["questions"] {
        case nil, .null?:
            validator.fail("questions", "is required: at least one question, e.g. [{\"body\": \"…\", \"language\": \"en-GB\"}]")
        case .array(let items)?:
            let limit = SurveyLimits.questionsPerSurvey
            if !limit.contains(items.count) {
                validator.fail("questions", "must hold \(limit.lowerBound) to \(limit.upperBound) questions (got \(items.count))")
            } else {
                var firstPathByLanguage: [LanguageTag: String] = [:]
                for (index, item) in items.enumerated() {
                    let path = "questions[\(index)]"
                    guard case .object(let fields) = item else {
                        validator.fail(path, "must be an object with body and language, not \(item.kind)")
                        continue
                    }
                    guard let question = NewQuestion(json: fields, at: path, validator: &validator) else { continue }
                    if let first = firstPathByLanguage[question.language] {
                        validator.breaks("\(path).language", "duplicates the language of \(first) (\(question.language)); one question per language")
                        continue
                    }
                    firstPathByLanguage[question.language] = path
                    questions.append(question)
                }
            }
        case let other?:
            validator.fail("questions", "must be an array, not \(other.kind)")
        }
        try validator.check()
        self.init(name: name!, interactionType: interactionType!, questions: questions)
    }
}

extension NewQuestion {
    init?(json fields: [String: JSONValue], at path: String, validator: inout FieldValidator) {
        let prefix = path.isEmpty ? "" : path + "."
        let body = validator.string(fields, "body", at: prefix + "body", length: SurveyLimits.questionBodyLength)
        let language = validator.languageTag(fields, "language", at: prefix + "language")
        guard let body, let language else { return nil }
        self.init(body: body, language: language)
    }
}
