import EcoWattProtocol

/// SplitMix64: a small, seedable generator so that runs with the same seed read the same values.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Raw register values of a grid-tied PV inverter, in the regimes the firmware meets in the field: normal noise,
/// steady output, a frozen plateau (rare ±1 flicker), passing clouds (PV current and power jump) and night (PV and AC
/// current and power at 0). Centre values as in the conformance corpus: Vac1≈2300, Iac1≈50, Fac1≈5000, Vpv≈3600,
/// Ipv≈70, Temp≈450, Pac≈1200·Pow/100.
struct InverterModel: Sendable {
    enum Regime: CaseIterable, Sendable { case normal, steady, frozen, cloudy, night }

    private var random: SplitMix64
    private(set) var regime = Regime.normal
    private var remaining = 30
    private var temperature = 450.0
    private var plateau: [UInt16]?
    /// Register 8 (`Pow`, the export limit in percent): the only writable register.
    var exportLimit: UInt16 = 100

    init(seed: UInt64) {
        random = SplitMix64(seed: seed)
        remaining = Int.random(in: 10...60, using: &random)
    }

    private mutating func noise(_ amplitude: Int) -> Int {
        amplitude == 0 ? 0 : Int.random(in: -amplitude...amplitude, using: &random)
    }

    private mutating func nextRegime() {
        let roll = Int.random(in: 0..<100, using: &random)
        regime =
            switch roll {
            case 0..<40: .normal
            case 40..<65: .steady
            case 65..<75: .frozen
            case 75..<90: .cloudy
            default: .night
            }
        remaining = Int.random(in: 20...120, using: &random)
        plateau = nil
    }

    /// One Modbus read of `registers`, in order.
    mutating func read(_ registers: [Int]) -> [UInt16] {
        remaining -= 1
        if remaining <= 0 { nextRegime() }
        temperature += Double(noise(2)) * 0.5
        temperature = min(max(temperature, 350), 650)

        let all = sampleAll()
        if regime == .frozen {
            if plateau == nil { plateau = all }
            var values = plateau!
            if Int.random(in: 0..<20, using: &random) == 0 {
                // Any measured register may flicker; Pow is a setting, not a measurement.
                let index = [0, 1, 2, 3, 4, 5, 6, 7, 9].randomElement(using: &random)!
                values[index] = values[index] &+ 1
            }
            return registers.map { (0..<10).contains($0) ? values[$0] : 0 }
        }
        return registers.map { (0..<10).contains($0) ? all[$0] : 0 }
    }

    private mutating func sampleAll() -> [UInt16] {
        let quiet = regime == .steady
        let sun: Double =
            switch regime {
            case .night: 0
            case .cloudy: Int.random(in: 0..<3, using: &random) == 0 ? 0.3 : 1
            default: 1
            }
        func clamp(_ value: Int) -> UInt16 { UInt16(min(max(value, 0), 65535)) }
        let vac = clamp(2300 + noise(quiet ? 2 : 12))
        let fac = clamp(5000 + noise(quiet ? 1 : 3))
        let vpv1 = clamp(3600 + noise(quiet ? 3 : 20))
        let vpv2 = clamp(3600 + noise(quiet ? 3 : 20))
        let ipv1 = sun == 0 ? 0 : clamp(Int(70 * sun) + noise(quiet ? 1 : 4))
        let ipv2 = sun == 0 ? 0 : clamp(Int(70 * sun) + noise(quiet ? 1 : 4))
        let limit = Double(min(exportLimit, 100)) / 100
        let pac = sun == 0 ? 0 : clamp(Int(1200 * limit * sun) + noise(quiet ? 3 : 20))
        let iac = sun == 0 ? 0 : clamp(Int(50 * limit * sun) + noise(quiet ? 1 : 3))
        let temp = clamp(Int(temperature) + noise(quiet ? 1 : 3))
        return [vac, iac, fac, vpv1, vpv2, ipv1, ipv2, temp, exportLimit, pac]
    }
}
