extension Survey {
    /// The question to send for a requested language: the exact tag, else the same primary
    /// language (`en-GB` → `en`, or `en` → `en-US`), else the survey's first question.
    public func question(for language: LanguageTag?) -> Question? {
        guard let language else { return questions.first }
        if let exact = questions.first(where: { $0.language == language }) { return exact }
        if let sameLanguage = questions.first(where: { $0.language.primaryLanguage == language.primaryLanguage }) {
            return sameLanguage
        }
        return questions.first
    }
}
