import Foundation
import SurveyDomain

/// Charts drawn on the server as inline SVG: no chart library, no script, nothing to load.
/// Colours come from the stylesheet's classes (so dark mode and the CSP's `style-src 'self'`
/// both hold: no `style` attribute is ever written). Each chart is an image with a title
/// and a description for screen readers; the page puts a table of its values beside it.
enum SVGCharts {
    /// One point of a trend: its label (the bucket's first day), NPS if anyone answered.
    struct TrendPoint {
        var label: String
        var nps: Double?
        var responses: Int
    }

    /// NPS over time, on a fixed -100…100 scale with the zero line marked.
    static func trend(_ points: [TrendPoint], id: String, title: String) -> String {
        let width = 640.0, height = 220.0
        let left = 40.0, right = 12.0, top = 12.0, bottom = 28.0
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        func x(_ index: Int) -> Double {
            points.count <= 1 ? left + plotWidth / 2 : left + plotWidth * Double(index) / Double(points.count - 1)
        }
        func y(_ nps: Double) -> Double { top + plotHeight * (100 - nps) / 200 }

        var svg = begin(id: id, width: width, height: height, title: title, description: describe(points))
        for value in [100.0, 50, 0, -50, -100] {
            let line = value == 0 ? "axis zero" : "grid"
            svg += #"<line class="\#(line)" x1="\#(f(left))" x2="\#(f(width - right))" y1="\#(f(y(value)))" y2="\#(f(y(value)))"/>"#
            svg += #"<text class="tick" x="\#(f(left - 6))" y="\#(f(y(value) + 4))" text-anchor="end">\#(Int(value))</text>"#
        }
        // Labels: as many as fit without overlapping (about one per 80 px).
        let every = max(1, Int((Double(points.count) * 80 / plotWidth).rounded(.up)))
        for (index, point) in points.enumerated() where index % every == 0 {
            // The last label ends at the edge rather than running past it.
            let anchor = index == points.count - 1 && points.count > 1 ? "end" : index == 0 && points.count > 1 ? "start" : "middle"
            svg += #"<text class="tick" x="\#(f(x(index)))" y="\#(f(height - 8))" text-anchor="\#(anchor)">\#(point.label.markupEscaped)</text>"#
        }
        // The line breaks where a bucket had no response: no invented values.
        var segments: [[(Double, Double)]] = [[]]
        for (index, point) in points.enumerated() {
            if let nps = point.nps { segments[segments.count - 1].append((x(index), y(nps))) } else if !segments[segments.count - 1].isEmpty {
                segments.append([])
            }
        }
        for segment in segments where segment.count > 1 {
            svg += #"<polyline class="trend-line" fill="none" points="\#(segment.map { "\(f($0.0)),\(f($0.1))" }.joined(separator: " "))"/>"#
        }
        for (index, point) in points.enumerated() {
            guard let nps = point.nps else { continue }
            svg += #"<circle class="trend-point" cx="\#(f(x(index)))" cy="\#(f(y(nps)))" r="3.5"><title>\#(point.label.markupEscaped): NPS \#(format(nps)), \#(point.responses) responses</title></circle>"#
        }
        return svg + "</svg>"
    }

    /// Promoters, passives and detractors as one bar split in proportion.
    static func split(promoters: Int, passives: Int, detractors: Int, id: String) -> String {
        let total = promoters + passives + detractors
        let width = 640.0, height = 28.0
        let description =
            total == 0
            ? "No responses in this period."
            : "Promoters \(promoters) (\(percent(promoters, total))), passives \(passives) (\(percent(passives, total))), detractors \(detractors) (\(percent(detractors, total)))."
        var svg = begin(id: id, width: width, height: height, title: "Promoters, passives and detractors", description: description)
        guard total > 0 else {
            return svg + #"<rect class="empty" x="0" y="0" width="\#(f(width))" height="\#(f(height))" rx="4"/></svg>"#
        }
        var offset = 0.0
        for (count, kind) in [(detractors, "detractors"), (passives, "passives"), (promoters, "promoters")] where count > 0 {
            let part = width * Double(count) / Double(total)
            svg += #"<rect class="\#(kind)" x="\#(f(offset))" y="0" width="\#(f(part))" height="\#(f(height))"><title>\#(kind.capitalized): \#(count)</title></rect>"#
            offset += part
        }
        return svg + "</svg>"
    }

    /// A small trend line for a table cell; decorative next to its numbers (the row's
    /// figures say the same), so hidden from screen readers.
    static func sparkline(_ values: [Double?]) -> String {
        let width = 96.0, height = 24.0
        let known = values.enumerated().compactMap { index, value in value.map { (index, $0) } }
        var svg = #"<svg class="sparkline" viewBox="0 0 \#(f(width)) \#(f(height))" width="\#(f(width))" height="\#(f(height))" aria-hidden="true" focusable="false">"#
        svg += #"<line class="axis zero" x1="0" x2="\#(f(width))" y1="\#(f(height / 2))" y2="\#(f(height / 2))"/>"#
        func x(_ index: Int) -> Double { values.count <= 1 ? width / 2 : 2 + (width - 4) * Double(index) / Double(values.count - 1) }
        func y(_ nps: Double) -> Double { 2 + (height - 4) * (100 - nps) / 200 }
        if known.count > 1 {
            svg += #"<polyline class="trend-line" fill="none" points="\#(known.map { "\(f(x($0.0))),\(f(y($0.1)))" }.joined(separator: " "))"/>"#
        } else if let (index, value) = known.first {
            svg += #"<circle class="trend-point" cx="\#(f(x(index)))" cy="\#(f(y(value)))" r="2"/>"#
        }
        return svg + "</svg>"
    }

    /// One bar per day, with a dashed line at `limit` (the daily cap) if it fits the scale.
    static func dailyBars(_ bars: [(label: String, value: Int)], limit: Int?, id: String, title: String, unit: String) -> String {
        let width = 640.0, height = 200.0
        let left = 48.0, right = 12.0, top = 12.0, bottom = 28.0
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        // The cap is drawn when it is on the bars' scale; far above them it would flatten
        // every bar to nothing, so it is then only said (the description, a label).
        let tallest = max(1, bars.map(\.value).max() ?? 0)
        let drawsLimit = limit.map { $0 <= tallest * 2 } ?? false
        let scale = niceCeiling(drawsLimit ? max(tallest, limit ?? 0) : tallest)
        func y(_ value: Int) -> Double { top + plotHeight * (1 - Double(value) / Double(scale)) }
        let description =
            bars.isEmpty
            ? "No days."
            : "\(bars.map(\.value).reduce(0, +)) \(unit) over \(bars.count) days; most in one day: \(bars.map(\.value).max() ?? 0)"
                + (limit.map { ", against a daily cap of \($0)." } ?? ".")
        var svg = begin(id: id, width: width, height: height, title: title, description: description)
        for fraction in [0.0, 0.5, 1.0] {
            let value = Int(Double(scale) * fraction)
            svg += #"<line class="\#(fraction == 0 ? "axis" : "grid")" x1="\#(f(left))" x2="\#(f(width - right))" y1="\#(f(y(value)))" y2="\#(f(y(value)))"/>"#
            svg += #"<text class="tick" x="\#(f(left - 6))" y="\#(f(y(value) + 4))" text-anchor="end">\#(value)</text>"#
        }
        let slot = plotWidth / Double(max(1, bars.count))
        for (index, bar) in bars.enumerated() {
            let x = left + slot * Double(index) + slot * 0.15
            let top = y(bar.value)
            svg += #"<rect class="bar" x="\#(f(x))" y="\#(f(top))" width="\#(f(slot * 0.7))" height="\#(f(y(0) - top))"><title>\#(bar.label.markupEscaped): \#(bar.value) \#(unit.markupEscaped)</title></rect>"#
        }
        let every = max(1, Int((Double(bars.count) * 40 / plotWidth).rounded(.up)))
        for (index, bar) in bars.enumerated() where index % every == 0 {
            svg += #"<text class="tick" x="\#(f(left + slot * (Double(index) + 0.5)))" y="\#(f(height - 8))" text-anchor="middle">\#(bar.label.markupEscaped)</text>"#
        }
        if let limit, drawsLimit {
            svg += #"<line class="limit" x1="\#(f(left))" x2="\#(f(width - right))" y1="\#(f(y(limit)))" y2="\#(f(y(limit)))"><title>Daily cap: \#(limit)</title></line>"#
        } else if let limit {
            svg += #"<text class="tick" x="\#(f(width - right))" y="\#(f(top + 10))" text-anchor="end">Daily cap \#(limit), far above</text>"#
        }
        return svg + "</svg>"
    }

    // MARK: Pieces

    private static func begin(id: String, width: Double, height: Double, title: String, description: String) -> String {
        #"<svg class="chart" id="\#(id)" viewBox="0 0 \#(f(width)) \#(f(height))" role="img" aria-labelledby="\#(id)-title \#(id)-desc" preserveAspectRatio="xMidYMid meet">"#
            + #"<title id="\#(id)-title">\#(title.markupEscaped)</title><desc id="\#(id)-desc">\#(description.markupEscaped)</desc>"#
    }

    private static func describe(_ points: [TrendPoint]) -> String {
        let known = points.filter { $0.nps != nil }
        guard let first = known.first, let last = known.last else { return "No responses in this period." }
        let best = known.max { $0.nps! < $1.nps! }!, worst = known.min { $0.nps! < $1.nps! }!
        return "NPS from \(format(first.nps!)) (\(first.label)) to \(format(last.nps!)) (\(last.label)); "
            + "highest \(format(best.nps!)) (\(best.label)), lowest \(format(worst.nps!)) (\(worst.label))."
    }

    /// 1, 2 or 5 times a power of ten, at least `value`: a scale whose ticks read well.
    static func niceCeiling(_ value: Int) -> Int {
        var magnitude = 1
        while magnitude * 10 <= value { magnitude *= 10 }
        for step in [1, 2, 5, 10] where step * magnitude >= value { return step * magnitude }
        return 10 * magnitude
    }

    static func percent(_ part: Int, _ total: Int) -> String {
        total == 0 ? "0 %" : "\(Int((100 * Double(part) / Double(total)).rounded())) %"
    }

    static func format(_ nps: Double) -> String {
        nps == nps.rounded() ? String(Int(nps)) : String(format: "%.1f", nps)
    }

    /// Coordinates with at most two decimals: smaller pages, same picture.
    static func f(_ value: Double) -> String {
        let rounded = (value * 100).rounded() / 100
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }
}
