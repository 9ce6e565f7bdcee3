/// The words of a survey sent by e-mail, in the request's language: a subject, the question,
/// eleven one-click score links (0 to 10) and the way out, as plain text and as HTML that
/// mail clients render without CSS files, scripts or remote images.
public struct EmailSurveyContent: Sendable, Equatable {
    public var subject: String
    public var text: String
    public var html: String

    /// `link(score)` is the landing page of one score; `unsubscribe` the one-click way out.
    public init(question: String, companyName: String, language: LanguageTag?, link: (Int) -> String, unsubscribe: String) {
        let words = EmailWording.for(language)
        subject = words.subject(companyName)
        let scores = (0...10).map { "\($0): \(link($0))" }.joined(separator: "\n")
        text = """
            \(question)

            \(words.choose) (0 = \(words.low), 10 = \(words.high))
            \(scores)

            \(words.unsubscribe) \(unsubscribe)
            """
        let cells = (0...10).map { score in
            #"<td style="padding:2px"><a href="\#(link(score).markupEscaped)" style="display:block;min-width:28px;padding:8px 4px;border:1px solid #1d4ed8;border-radius:4px;color:#1d4ed8;text-align:center;text-decoration:none;font:bold 16px sans-serif">\#(score)</a></td>"#
        }.joined()
        let tag = (language?.value ?? "en").markupEscaped
        html = """
            <!DOCTYPE html>
            <html lang="\(tag)"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>\(subject.markupEscaped)</title></head>
            <body style="margin:0;padding:16px;font:16px/1.5 sans-serif;color:#111">
            <p style="font-size:18px">\(question.markupEscaped)</p>
            <p>\(words.choose.markupEscaped)</p>
            <table role="presentation" style="border-collapse:collapse"><tr>\(cells)</tr></table>
            <table role="presentation" style="width:100%;max-width:420px;font-size:13px;color:#444"><tr><td>0 = \(words.low.markupEscaped)</td><td style="text-align:right">10 = \(words.high.markupEscaped)</td></tr></table>
            <p style="font-size:13px;color:#444">\(words.unsubscribe.markupEscaped) <a href="\(unsubscribe.markupEscaped)" style="color:#444">\(words.unsubscribeLink.markupEscaped)</a></p>
            </body></html>
            """
    }
}

/// The few words around the company's question, by the request's primary language; English
/// for any other (documented in docs/SENDING.md).
struct EmailWording: Sendable {
    var subject: @Sendable (String) -> String
    var choose: String
    var low: String
    var high: String
    var unsubscribe: String
    var unsubscribeLink: String

    static func `for`(_ language: LanguageTag?) -> EmailWording {
        switch language?.primaryLanguage.lowercased() {
        case "fr": french
        case "nl": dutch
        case "de": german
        default: english
        }
    }

    static let english = EmailWording(
        subject: { "A quick question from \($0)" }, choose: "Choose a score:", low: "not at all likely", high: "extremely likely",
        unsubscribe: "No more of these e-mails?", unsubscribeLink: "Unsubscribe")
    static let french = EmailWording(
        subject: { "Une petite question de \($0)" }, choose: "Choisissez une note :", low: "pas du tout probable",
        high: "extrêmement probable", unsubscribe: "Vous ne souhaitez plus recevoir ces e-mails ?", unsubscribeLink: "Se désinscrire")
    static let dutch = EmailWording(
        subject: { "Een korte vraag van \($0)" }, choose: "Kies een score:", low: "helemaal niet waarschijnlijk",
        high: "zeer waarschijnlijk", unsubscribe: "Geen e-mails als deze meer?", unsubscribeLink: "Afmelden")
    static let german = EmailWording(
        subject: { "Eine kurze Frage von \($0)" }, choose: "Wählen Sie eine Bewertung:", low: "überhaupt nicht wahrscheinlich",
        high: "äußerst wahrscheinlich", unsubscribe: "Keine solchen E-Mails mehr?", unsubscribeLink: "Abmelden")
}

extension String {
    /// Text as HTML or XML character data or a quoted attribute value: the one escaper of the
    /// e-mails, the dashboard's SVG and TwiML.
    public var markupEscaped: String {
        var out = ""
        out.reserveCapacity(utf8.count)
        for character in self {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}
