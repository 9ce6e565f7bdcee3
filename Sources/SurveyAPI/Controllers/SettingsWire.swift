import SurveyDomain

/// The company settings the operator's admin API and the company's own `/settings` share:
/// `requestRateLimit` as `{"perSecond", "burst"}`, `quietHours` as `{"start": "21:00",
/// "end": "09:00"}` (or `null`: none) and `timezone`.
enum SettingsWire {
    static func rateLimit(_ limit: RateLimit) -> JSONDocument {
        .object([("perSecond", .number(limit.ratePerSecond)), ("burst", .integer(Int64(limit.burst)))])
    }

    static func quietHours(_ hours: QuietHours) -> JSONDocument {
        .object([("start", .string(hours.start.description)), ("end", .string(hours.end.description))])
    }

    /// Absent: no change; `null` (or the same start and end): off; an object: both times, `HH:MM`.
    static func quietHoursChange(_ value: JSONValue?, _ validator: inout FieldValidator) -> CompanySettingsChange.QuietHoursChange? {
        switch value {
        case nil:
            return nil
        case .null?:
            return .off
        case .object(let fields)?:
            validator.rejectUnknown(fields, known: ["start", "end"], at: "quietHours")
            var times: [TimeOfDay] = []
            for key in ["start", "end"] {
                if case .string(let text)? = fields[key], let time = TimeOfDay(parsing: text) {
                    times.append(time)
                } else {
                    validator.fail("quietHours.\(key)", "is required: a time of day as HH:MM, 24-hour (e.g. 21:00)")
                }
            }
            guard times.count == 2 else { return nil }
            // The same start and end is an empty window: no quiet hours.
            return QuietHours(start: times[0], end: times[1]).map { .set($0) } ?? .off
        default:
            validator.fail("quietHours", "must be an object {start, end} or null")
            return nil
        }
    }

    static func timeZone(_ value: JSONValue?, _ validator: inout FieldValidator) -> String? {
        switch value {
        case nil:
            return nil
        case .string(let name)? where ReportTimeZones.zone(named: name) != nil:
            return name
        default:
            validator.fail("timezone", "must be an IANA time zone name such as Europe/Brussels or UTC")
            return nil
        }
    }
}
