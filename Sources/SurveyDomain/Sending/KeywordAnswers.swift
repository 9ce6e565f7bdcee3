/// What the service answers to a HELP keyword. Every company sends from the same number,
/// so the answer speaks for the service, not for one company; carriers require one.
public enum KeywordAnswers {
    public static func help(language: String) -> String {
        switch language {
        case "fr":
            "Enquêtes de satisfaction : répondez par une note de 0 à 10. Répondez STOP pour ne plus en recevoir, START pour les recevoir à nouveau."
        case "nl":
            "Tevredenheidsenquêtes: antwoord met een cijfer van 0 tot 10. Antwoord STOP om er geen meer te ontvangen, START om ze weer te ontvangen."
        default:
            "Customer satisfaction surveys: reply with a score from 0 to 10. Reply STOP to receive no more, START to receive them again."
        }
    }
}
