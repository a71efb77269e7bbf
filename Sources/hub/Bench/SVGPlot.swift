import Foundation

/// Line charts as SVG text, with no dependencies: panels side by side, each with a log-scale
/// x axis of counts, a linear y axis from 0, and up to two series, the second on its own
/// axis at the right.
///
/// A pure value: `render()` reads nothing but the fields, so the same input always gives the
/// same text. No scripts, no external fonts (the viewer's `sans-serif`).
struct SVGPlot: Sendable, Equatable {
    struct Point: Sendable, Equatable {
        var x: Double
        var y: Double
    }

    /// One line: its name in the legend, the label of its axis, and its points. Points whose
    /// x is not above 0, or whose y is negative or not finite, are left out.
    struct Series: Sendable, Equatable {
        var name: String
        var axisLabel: String
        var points: [Point]
    }

    struct Panel: Sendable, Equatable {
        var title: String
        var xLabel: String
        /// Drawn against the left axis, which also carries the grid.
        var left: Series
        /// Drawn dashed against the right axis, with its own scale.
        var right: Series?
    }

    var panels: [Panel]
    var width = 960
    var height = 360

    static let leftColor = "#1f6fb4"
    static let rightColor = "#c8402f"
    static let background = "#ffffff"
    static let gridColor = "#e2e2e2"
    static let tickColor = "#888888"
    static let axisColor = "#444444"

    func render() -> String {
        var svg = [
            #"<svg xmlns="http://www.w3.org/2000/svg" width="\#(width)" height="\#(height)" viewBox="0 0 \#(width) \#(height)" font-family="sans-serif" font-size="12">"#,
            #"<rect width="\#(width)" height="\#(height)" fill="\#(Self.background)"/>"#,
        ]
        let panelWidth = Double(width) / Double(max(1, panels.count))
        for (index, panel) in panels.enumerated() {
            svg += render(panel, left: Double(index) * panelWidth, width: panelWidth)
        }
        svg.append("</svg>")
        return svg.joined(separator: "\n") + "\n"
    }

    private func render(_ panel: Panel, left panelLeft: Double, width panelWidth: Double) -> [String] {
        let plotLeft = panelLeft + 64
        let plotRight = panelLeft + panelWidth - (panel.right == nil ? 20 : 64)
        let plotTop = 58.0
        let plotBottom = Double(height) - 52
        let series = [panel.left] + (panel.right.map { [$0] } ?? [])
        let decades = Self.decades(covering: series.flatMap(\.points).filter(Self.isDrawable).map(\.x))
        func x(_ value: Double) -> Double {
            plotLeft + (log10(value) - Double(decades.lowerBound)) / Double(decades.upperBound - decades.lowerBound) * (plotRight - plotLeft)
        }
        let leftTicks = Self.ticks(upTo: panel.left.points.filter(Self.isDrawable).map(\.y).max() ?? 0)
        let rightTicks = Self.ticks(upTo: panel.right?.points.filter(Self.isDrawable).map(\.y).max() ?? 0)
        func y(_ value: Double, _ ticks: [Double]) -> Double {
            plotBottom - value / ticks.last! * (plotBottom - plotTop)
        }
        let middle = Self.number((plotTop + plotBottom) / 2)
        var out = ["<g>"]
        out.append(#"<text x="\#(Self.number(panelLeft + panelWidth / 2))" y="22" text-anchor="middle" font-size="14" font-weight="bold">\#(Self.escaped(panel.title))</text>"#)

        // The legend: one entry at the plot's left edge, the other at its middle.
        for (index, line) in series.enumerated() {
            let start = index == 0 ? plotLeft : (plotLeft + plotRight) / 2
            out.append(#"<line x1="\#(Self.number(start))" y1="40" x2="\#(Self.number(start + 22))" y2="40" \#(Self.stroke(index))/>"#)
            out.append(#"<text x="\#(Self.number(start + 28))" y="44">\#(Self.escaped(line.name))</text>"#)
        }

        // The left axis and its grid; the right axis's labels.
        for tick in leftTicks {
            let at = Self.number(y(tick, leftTicks))
            out.append(#"<line x1="\#(Self.number(plotLeft))" y1="\#(at)" x2="\#(Self.number(plotRight))" y2="\#(at)" stroke="\#(Self.gridColor)"/>"#)
            out.append(#"<text x="\#(Self.number(plotLeft - 6))" y="\#(Self.number(y(tick, leftTicks) + 4))" text-anchor="end">\#(Self.label(tick))</text>"#)
        }
        if panel.right != nil {
            for tick in rightTicks {
                out.append(#"<text x="\#(Self.number(plotRight + 6))" y="\#(Self.number(y(tick, rightTicks) + 4))" fill="\#(Self.rightColor)">\#(Self.label(tick))</text>"#)
            }
        }

        // The x axis: a grid line and a label per decade, short ticks at 2…9 × each decade.
        for decade in decades {
            let value = pow(10, Double(decade))
            let at = Self.number(x(value))
            out.append(#"<line x1="\#(at)" y1="\#(Self.number(plotTop))" x2="\#(at)" y2="\#(Self.number(plotBottom))" stroke="\#(Self.gridColor)"/>"#)
            out.append(#"<text x="\#(at)" y="\#(Self.number(plotBottom + 16))" text-anchor="middle">\#(Self.grouped(value))</text>"#)
            guard decade < decades.upperBound else { continue }
            for multiple in 2...9 {
                let minor = Self.number(x(Double(multiple) * value))
                out.append(#"<line x1="\#(minor)" y1="\#(Self.number(plotBottom))" x2="\#(minor)" y2="\#(Self.number(plotBottom + 4))" stroke="\#(Self.tickColor)"/>"#)
            }
        }
        out.append(#"<line x1="\#(Self.number(plotLeft))" y1="\#(Self.number(plotBottom))" x2="\#(Self.number(plotRight))" y2="\#(Self.number(plotBottom))" stroke="\#(Self.axisColor)"/>"#)
        out.append(#"<line x1="\#(Self.number(plotLeft))" y1="\#(Self.number(plotTop))" x2="\#(Self.number(plotLeft))" y2="\#(Self.number(plotBottom))" stroke="\#(Self.axisColor)"/>"#)
        if panel.right != nil {
            out.append(#"<line x1="\#(Self.number(plotRight))" y1="\#(Self.number(plotTop))" x2="\#(Self.number(plotRight))" y2="\#(Self.number(plotBottom))" stroke="\#(Self.axisColor)"/>"#)
        }

        // Axis labels.
        out.append(#"<text x="\#(Self.number((plotLeft + plotRight) / 2))" y="\#(height - 14)" text-anchor="middle">\#(Self.escaped(panel.xLabel))</text>"#)
        out.append(#"<text transform="translate(\#(Self.number(panelLeft + 14)) \#(middle)) rotate(-90)" text-anchor="middle" fill="\#(Self.leftColor)">\#(Self.escaped(panel.left.axisLabel))</text>"#)
        if let right = panel.right {
            out.append(#"<text transform="translate(\#(Self.number(panelLeft + panelWidth - 12)) \#(middle)) rotate(90)" text-anchor="middle" fill="\#(Self.rightColor)">\#(Self.escaped(right.axisLabel))</text>"#)
        }

        // The lines, with a dot per point.
        for (index, line) in series.enumerated() {
            let ticks = index == 0 ? leftTicks : rightTicks
            let points = line.points.filter(Self.isDrawable).sorted { $0.x < $1.x }
            guard !points.isEmpty else { continue }
            let at = points.map { (x: Self.number(x($0.x)), y: Self.number(y($0.y, ticks))) }
            out.append(#"<polyline points="\#(at.map { "\($0.x),\($0.y)" }.joined(separator: " "))" fill="none" \#(Self.stroke(index))/>"#)
            for point in at {
                out.append(#"<circle cx="\#(point.x)" cy="\#(point.y)" r="3" fill="\#(index == 0 ? Self.leftColor : Self.rightColor)"/>"#)
            }
        }
        out.append("</g>")
        return out
    }

    private static func stroke(_ series: Int) -> String {
        series == 0
            ? #"stroke="\#(leftColor)" stroke-width="2""#
            : #"stroke="\#(rightColor)" stroke-width="2" stroke-dasharray="6 4""#
    }

    static func isDrawable(_ point: Point) -> Bool {
        point.x.isFinite && point.x > 0 && point.y.isFinite && point.y >= 0
    }

    /// The decades (powers of ten) that enclose the values: 10…10,000 for 10, 100, 1000,
    /// 10000, and at least one decade wide. With no values, 10…10,000.
    static func decades(covering values: [Double]) -> ClosedRange<Int> {
        guard let low = values.min(), let high = values.max() else { return 1...4 }
        // The slack keeps an exact power of ten (log10(1000) = 2.9999…) in its own decade.
        let lower = Int((log10(low) + 1e-9).rounded(.down))
        let upper = Int((log10(high) - 1e-9).rounded(.up))
        return lower...max(upper, lower + 1)
    }

    /// 4 to 6 evenly spaced ticks from 0 whose step is 1, 2, 2.5 or 5 × a power of ten, the
    /// last at or above `maximum`. A maximum that is not above 0 gives 0…1.
    static func ticks(upTo maximum: Double) -> [Double] {
        let top = maximum.isFinite && maximum > 0 ? maximum : 1
        let raw = top / 5
        let magnitude = pow(10, log10(raw).rounded(.down))
        let step = [1, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw * (1 - 1e-9) } ?? 10 * magnitude
        let intervals = max(1, Int((top / step - 1e-9).rounded(.up)))
        return (0...intervals).map { Double($0) * step }
    }

    /// A y tick: 0, 2.5, 750, 12.5k, 1.5M.
    static func label(_ value: Double) -> String {
        switch abs(value) {
        case 1e6...: return String(format: "%gM", value / 1e6)
        case 1e3...: return String(format: "%gk", value / 1e3)
        default: return String(format: "%g", value)
        }
    }

    /// An x tick, a count: 10, 1,000, 10,000.
    static func grouped(_ value: Double) -> String {
        guard value >= 1 else { return String(format: "%g", value) }
        let digits = String(Int(value.rounded()))
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return out
    }

    /// A coordinate, to a tenth of a pixel.
    static func number(_ value: Double) -> String { String(format: "%.1f", value) }

    /// Text safe inside an element or an attribute.
    static func escaped(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }
}
