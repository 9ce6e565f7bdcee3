import SurveyDomain

extension CompanySettings {
    /// The defaults without quiet hours: a test's sends go out whatever the time of day the
    /// suite runs at (the quiet-hours tests set their own).
    public static let alwaysOpen = CompanySettings(quietHours: nil)
}
