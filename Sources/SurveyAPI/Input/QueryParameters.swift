import Hummingbird
import HummingbirdCore

/// The query string's names, checked before any value is believed: an unknown name (a
/// misspelt `startdate`) must not silently fall back to a default, and a repeated one
/// (other than the list-valued `segments`) must not pick a winner.
enum QueryParameters {
    static func problems(
        _ parameters: FlatDictionary<Substring, Substring>, known: Set<Substring>, hint: (Substring) -> String = { _ in "" }
    ) -> [Problem.FieldError] {
        var errors: [Problem.FieldError] = []
        var seen: Set<Substring> = []
        for (name, _) in parameters {
            if !known.contains(name) {
                errors.append(
                    .init(field: String(name), message: "is not a parameter here\(hint(name)); known: \(known.sorted().joined(separator: ", "))"))
            } else if name != "segments", !seen.insert(name).inserted {
                errors.append(.init(field: String(name), message: "must be given at most once"))
            }
        }
        return errors
    }
}
