import Foundation
import SurveyDomain
import SurveyStorage

/// The pages an e-mailed survey's links open: self-contained HTML (no script, no external
/// asset, no tracking), in the request's language, working in any browser and without
/// JavaScript. A scanner that fetches a link sees a form, which it does not submit.
enum ResponsePage {
    /// The score chosen in the e-mail, preselected, to be confirmed with one POST.
    static func choose(_ linked: ResponseLinkRepository.LinkedRequest, token: ResponseLinkToken, chosen: Int?) -> String {
        let words = ResponsePageWording.for(linked.language)
        let selected = chosen ?? linked.score
        let options = (0...10).map { score in
            let checked = score == selected ? " checked" : ""
            return #"<label class="score"><input type="radio" name="score" value="\#(score)" required\#(checked)><span>\#(score)</span></label>"#
        }.joined()
        let previous = linked.score.map { "<p class=\"note\">\(words.previous($0).markupEscaped)</p>" } ?? ""
        return page(
            title: linked.companyName, language: linked.language,
            body: """
                <p class="from">\(linked.companyName.markupEscaped)</p>
                <h1>\(linked.question.markupEscaped)</h1>
                \(previous)
                <form method="post" action="/r/\(token.value)">
                <fieldset><legend>\(words.choose.markupEscaped)</legend>
                <div class="scores">\(options)</div>
                <div class="ends"><span>0 = \(words.low.markupEscaped)</span><span>10 = \(words.high.markupEscaped)</span></div>
                </fieldset>
                <button type="submit">\(words.send.markupEscaped)</button>
                </form>
                """)
    }

    static func thanks(_ linked: ResponseLinkRepository.LinkedRequest, score: Int, token: ResponseLinkToken) -> String {
        let words = ResponsePageWording.for(linked.language)
        return page(
            title: linked.companyName, language: linked.language,
            body: """
                <p class="from">\(linked.companyName.markupEscaped)</p>
                <h1>\(words.thanks.markupEscaped)</h1>
                <p>\(words.recorded(score).markupEscaped)</p>
                <p class="note"><a href="/r/\(token.value)/\(score)">\(words.change.markupEscaped)</a></p>
                """)
    }

    static func closed(_ linked: ResponseLinkRepository.LinkedRequest) -> String {
        let words = ResponsePageWording.for(linked.language)
        return page(
            title: linked.companyName, language: linked.language,
            body: """
                <p class="from">\(linked.companyName.markupEscaped)</p>
                <h1>\(words.closed.markupEscaped)</h1>
                """)
    }

    /// A link of no request (mistyped, or its request was deleted): in English, as nothing
    /// says which language its reader speaks.
    static let unknown = page(
        title: "Link not found", language: nil,
        body: "<h1>This link is not valid.</h1><p>Check that the whole link from the e-mail was opened.</p>")

    static func unsubscribe(token: ResponseLinkToken, language: String?) -> String {
        let words = ResponsePageWording.for(language)
        return page(
            title: words.unsubscribe, language: language,
            body: """
                <h1>\(words.unsubscribeQuestion.markupEscaped)</h1>
                <form method="post" action="/u/\(token.value)"><button type="submit">\(words.unsubscribe.markupEscaped)</button></form>
                """)
    }

    static func unsubscribed(language: String?) -> String {
        let words = ResponsePageWording.for(language)
        return page(
            title: words.unsubscribe, language: language,
            body: "<h1>\(words.unsubscribed.markupEscaped)</h1><p>\(words.noMore.markupEscaped)</p>")
    }

    /// The page's styles: inline, as the page loads nothing else (the policy allows them by hash).
    static let style = """
        body{margin:0 auto;max-width:40rem;padding:1.5rem;font:1.05rem/1.5 system-ui,sans-serif;color:#111;background:#fff}
        h1{font-size:1.35rem}.from,.note{color:#444;font-size:.95rem}fieldset{border:0;padding:0;margin:0 0 1rem}
        legend{margin-bottom:.5rem}.scores{display:flex;flex-wrap:wrap;gap:.3rem}
        .score input{position:absolute;opacity:0}.score span{display:block;min-width:2.2rem;padding:.55rem .2rem;text-align:center;border:1px solid #1d4ed8;border-radius:.3rem;color:#1d4ed8;font-weight:bold;cursor:pointer}
        .score input:checked+span{background:#1d4ed8;color:#fff}.score input:focus-visible+span{outline:3px solid #f59e0b}
        .ends{display:flex;justify-content:space-between;font-size:.85rem;color:#444;margin-top:.3rem}
        button{font:inherit;padding:.6rem 1.4rem;border:0;border-radius:.3rem;background:#1d4ed8;color:#fff;cursor:pointer}
        """

    private static func page(title: String, language: String?, body: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="\((language ?? "en").markupEscaped)"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width,initial-scale=1"><meta name="robots" content="noindex">
        <title>\(title.markupEscaped)</title><style>\(style)</style></head>
        <body>
        \(body)
        </body></html>
        """
    }
}

/// The landing page's words, by the request's primary language; English for any other
/// (as the e-mail's, docs/SENDING.md).
struct ResponsePageWording: Sendable {
    var choose: String
    var low: String
    var high: String
    var send: String
    var thanks: String
    var recorded: @Sendable (Int) -> String
    var previous: @Sendable (Int) -> String
    var change: String
    var closed: String
    var unsubscribe: String
    var unsubscribeQuestion: String
    var unsubscribed: String
    var noMore: String

    static func `for`(_ language: String?) -> ResponsePageWording {
        switch language.flatMap({ try? LanguageTag(parsing: $0) })?.primaryLanguage.lowercased() {
        case "fr": french
        case "nl": dutch
        case "de": german
        default: english
        }
    }

    static let english = ResponsePageWording(
        choose: "Your score:", low: "not at all likely", high: "extremely likely", send: "Send my score",
        thanks: "Thank you!", recorded: { "Your score of \($0) is recorded." },
        previous: { "You answered \($0); a new choice replaces it." }, change: "Change my score",
        closed: "This survey has closed. Thank you all the same.", unsubscribe: "Unsubscribe",
        unsubscribeQuestion: "Stop receiving these surveys?", unsubscribed: "You are unsubscribed.",
        noMore: "No more surveys will be sent to this address.")
    static let french = ResponsePageWording(
        choose: "Votre note :", low: "pas du tout probable", high: "extrêmement probable", send: "Envoyer ma note",
        thanks: "Merci !", recorded: { "Votre note de \($0) est enregistrée." },
        previous: { "Vous avez répondu \($0) ; un nouveau choix la remplace." }, change: "Changer ma note",
        closed: "Cette enquête est close. Merci tout de même.", unsubscribe: "Se désinscrire",
        unsubscribeQuestion: "Ne plus recevoir ces enquêtes ?", unsubscribed: "Vous êtes désinscrit.",
        noMore: "Plus aucune enquête ne sera envoyée à cette adresse.")
    static let dutch = ResponsePageWording(
        choose: "Uw score:", low: "helemaal niet waarschijnlijk", high: "zeer waarschijnlijk", send: "Mijn score versturen",
        thanks: "Bedankt!", recorded: { "Uw score van \($0) is geregistreerd." },
        previous: { "U antwoordde \($0); een nieuwe keuze vervangt die." }, change: "Mijn score wijzigen",
        closed: "Deze enquête is afgesloten. Toch bedankt.", unsubscribe: "Afmelden",
        unsubscribeQuestion: "Geen enquêtes als deze meer ontvangen?", unsubscribed: "U bent afgemeld.",
        noMore: "Naar dit adres worden geen enquêtes meer gestuurd.")
    static let german = ResponsePageWording(
        choose: "Ihre Bewertung:", low: "überhaupt nicht wahrscheinlich", high: "äußerst wahrscheinlich",
        send: "Bewertung senden", thanks: "Vielen Dank!", recorded: { "Ihre Bewertung von \($0) ist gespeichert." },
        previous: { "Sie haben \($0) gewählt; eine neue Wahl ersetzt sie." }, change: "Bewertung ändern",
        closed: "Diese Umfrage ist geschlossen. Trotzdem vielen Dank.", unsubscribe: "Abmelden",
        unsubscribeQuestion: "Keine solchen Umfragen mehr erhalten?", unsubscribed: "Sie sind abgemeldet.",
        noMore: "An diese Adresse werden keine Umfragen mehr gesendet.")
}
