import Postgres
import SurveyDomain

/// Surveys and their questions, always within one company.
public struct SurveyRepository: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// Creates a survey and its questions in one transaction.
    public func create(_ survey: NewSurvey, company: CompanyID) async throws -> Survey {
        try await database.withTenant(company) { connection in
            let surveyID = try await connection.query(
                """
                INSERT INTO surveys (company_id, name, interaction_type)
                VALUES (\(company), \(survey.name), \(survey.interactionType))
                RETURNING survey_id
                """
            ).one().decode(SurveyID.self, column: "survey_id")
            var questions: [Question] = []
            for question in survey.questions {
                questions.append(try await insertQuestion(question, survey: surveyID, company: company, on: connection))
            }
            return Survey(id: surveyID, name: survey.name, interactionType: survey.interactionType, questions: questions)
        }
    }

    public func find(_ id: SurveyID, company: CompanyID) async throws -> Survey? {
        try Self.surveys(from: try await database.read(company, Self.surveyQuery(id, company: company))).first
    }

    /// A page of surveys in id order, starting after `after`.
    public func list(after: SurveyID?, limit: Int, company: CompanyID) async throws -> [Survey] {
        try Self.surveys(from: try await database.read(company, Self.surveysQuery(after: after, limit: limit, company: company)))
    }

    /// Deletes a survey and everything that hangs off it (foreign keys cascade).
    public func delete(_ id: SurveyID, company: CompanyID) async throws {
        try await database.withTenant(company) { connection in
            // The cross-tenant indexes point at its requests: a deleted survey must neither
            // keep numbers busy nor receive callbacks. Foreign keys cascade the rest.
            try await connection.query("SELECT release_survey_routes(\(id))")
            let deleted = try await connection.query(
                "DELETE FROM surveys WHERE company_id = \(company) AND survey_id = \(id)")
            guard deleted.affectedRows == 1 else { throw StorageError.notFound }
        }
    }

    public func addQuestion(_ question: NewQuestion, to survey: SurveyID, company: CompanyID) async throws -> Question {
        try await database.withTenant(company) { connection in
            let exists = try await connection.query(
                "SELECT 1 FROM surveys WHERE company_id = \(company) AND survey_id = \(survey)")
            guard !exists.isEmpty else { throw StorageError.notFound }
            do {
                return try await insertQuestion(question, survey: survey, company: company, on: connection)
            } catch let error as PostgresError where error.sqlState == PostgresError.SQLState.foreignKeyViolation {
                // The survey was deleted between the check and the insert.
                throw StorageError.notFound
            }
        }
    }

    // MARK: -

    private func insertQuestion(
        _ question: NewQuestion, survey: SurveyID, company: CompanyID, on connection: PostgresConnection
    ) async throws -> Question {
        // ON CONFLICT DO NOTHING rather than catching 23505: an error would abort the
        // surrounding transaction, and the caller may want to report more than one problem.
        let rows = try await connection.query(
            """
            INSERT INTO questions (company_id, survey_id, body, language)
            VALUES (\(company), \(survey), \(question.body), \(question.language))
            ON CONFLICT ON CONSTRAINT questions_one_per_language DO NOTHING
            RETURNING question_id
            """)
        guard let row = rows.single else { throw StorageError.duplicateLanguage(question.language.value) }
        return Question(id: try row.decode(QuestionID.self, column: "question_id"), body: question.body, language: question.language)
    }

    func survey(_ id: SurveyID, company: CompanyID, on connection: PostgresConnection) async throws -> Survey? {
        try Self.surveys(from: try await connection.query(Self.surveyQuery(id, company: company))).first
    }

    // Surveys with their questions come back one row per question (a survey without any,
    // as one row of NULLs), in survey order, and are grouped here, questions in id order:
    // the first question is the fallback language. Aggregating into arrays on the server
    // cost it a sort per array per survey, most of the statement's time; and even one sort
    // of the rows by question id cost more to set up than sorting a few in Swift.

    static func surveyQuery(_ id: SurveyID, company: CompanyID) -> PostgresQuery {
        """
        SELECT s.survey_id, s.name, s.interaction_type, q.question_id, q.body, q.language
          FROM surveys AS s
          LEFT JOIN questions AS q ON q.company_id = s.company_id AND q.survey_id = s.survey_id
         WHERE s.company_id = \(company) AND s.survey_id = \(id)
        """
    }

    static func surveysQuery(after: SurveyID?, limit: Int, company: CompanyID) -> PostgresQuery {
        """
        SELECT s.survey_id, s.name, s.interaction_type, q.question_id, q.body, q.language
          FROM (SELECT survey_id, name, interaction_type
                  FROM surveys
                 WHERE company_id = \(company) AND survey_id > coalesce(\(after)::bigint, 0)
                 ORDER BY survey_id
                 LIMIT \(limit)) AS s
          LEFT JOIN questions AS q ON q.company_id = \(company) AND q.survey_id = s.survey_id
         ORDER BY s.survey_id
        """
    }

    static func surveys(from rows: PostgresRows) throws -> [Survey] {
        var surveys: [Survey] = []
        for row in rows {
            let (id, name, interactionType, questionID, body, language) = try row.decode(
                (SurveyID, String, String, QuestionID?, String?, LanguageTag?).self)
            if surveys.last?.id != id {
                surveys.append(Survey(id: id, name: name, interactionType: interactionType, questions: []))
            }
            if let questionID, let body, let language {
                surveys[surveys.count - 1].questions.append(Question(id: questionID, body: body, language: language))
            }
        }
        for index in surveys.indices {
            surveys[index].questions.sort { $0.id < $1.id }
        }
        return surveys
    }
}
