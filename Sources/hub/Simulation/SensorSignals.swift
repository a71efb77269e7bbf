import Foundation
import HubProtocol

/// Plausible sensor readings: a temperature that follows a slow sine plus noise, humidity,
/// a counter that only goes up, a door that sometimes opens, further analog channels when
/// more readings per frame are asked for, and now and then a firmware string.
struct SensorSignals {
    private let phase = Double.random(in: 0..<(2 * .pi))
    private let baseTemperature = Double.random(in: 18...24)
    private var counter: Int64 = 0
    private var door = false
    private var frames = 0

    /// The next frame's readings: `count` of them, plus a firmware string every 60th frame.
    mutating func next(count: Int, atSeconds now: Double) -> [Reading] {
        frames += 1
        counter += Int64.random(in: 0...3)
        if Double.random(in: 0..<1) < 0.05 { door.toggle() }
        var readings: [Reading] = []
        readings.reserveCapacity(count + 1)
        for index in 0..<count {
            switch index {
            case 0: readings.append(Reading(name: "temp", value: .f64(Self.round(baseTemperature + 3 * sin(now / 60 + phase) + .random(in: -0.2...0.2), 2))))
            case 1: readings.append(Reading(name: "humidity", value: .f64(Self.round(45 + 10 * cos(now / 90 + phase) + .random(in: -1...1), 1))))
            case 2: readings.append(Reading(name: "count", value: .i64(counter)))
            case 3: readings.append(Reading(name: "door.open", value: .bool(door)))
            default:
                let period = Double(30 + 7 * index)
                readings.append(Reading(name: "aux.\(index - 3)", value: .f64(Self.round(sin(now / period + phase * Double(index)) + .random(in: -0.05...0.05), 3))))
            }
        }
        if frames % 60 == 1, count > 0 { readings.append(Reading(name: "fw", value: .string("1.4.\(frames % 7)"))) }
        return readings
    }

    private static func round(_ value: Double, _ digits: Int) -> Double {
        let scale = pow(10, Double(digits))
        return (value * scale).rounded() / scale
    }
}
