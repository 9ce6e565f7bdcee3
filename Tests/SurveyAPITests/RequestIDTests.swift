import TestSupport
import Testing

@testable import SurveyAPI

@Suite struct RequestIDTests {
    /// The public mixer undone: its steps are invertible, so anyone can run them backwards.
    static func unmix(_ value: UInt64) -> UInt64 {
        func unshift(_ value: UInt64, _ shift: UInt64) -> UInt64 {
            var result = value
            for _ in 0..<(64 / shift) { result = value ^ (result >> shift) }
            return result
        }
        var value = unshift(value, 31)
        value = unshift(value &* 0x3196_42B2_D24D_8EC3, 27)  // inverse of 0x94D0_49BB_1331_11EB
        return unshift(value &* 0x96DE_1B17_3F11_9089, 30)  // inverse of 0xBF58_476D_1CE4_E5B9
    }

    @Test func theMixerIsABijectionThatCanBeUndone() {
        var random = SplitMix64(seed: 7)
        for _ in 0..<1000 {
            let value = random.next()
            #expect(Self.unmix(CorrelationID.mix(value)) == value)
        }
    }

    /// Consecutive ids of a process: unique, and undoing the public mixer does not reveal
    /// consecutive counters (it would with a single round behind a key added first).
    @Test func consecutiveIdsDoNotRevealACount() {
        let ids = (0..<1000).map { _ in CorrelationID.make() }
        #expect(Set(ids).count == ids.count)
        #expect(Set(ids.map { $0.prefix(16) }).count == 1, "one prefix per process")
        let counters = ids.map { Self.unmix(UInt64($0.suffix(16), radix: 16)!) }
        let steps = zip(counters, counters.dropFirst()).map { $1 &- $0 }
        #expect(Set(steps).count > 990, "the undone ids step by a constant: \(steps.prefix(4))")
    }
}
