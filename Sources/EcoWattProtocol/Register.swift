/// One of the ten Modbus registers an EcoWatt device can read (spec §3.1).
///
/// The raw value is the firmware's `RegID`, which is also the Modbus address.
public enum Register: Int, CaseIterable, Sendable, Codable {
    case vac1 = 0
    case iac1, fac1, vpv1, vpv2, ipv1, ipv2, temp, pow, pac

    /// The case-sensitive name the firmware uses (`"Vac1"`, …).
    public var name: String {
        switch self {
        case .vac1: "Vac1"
        case .iac1: "Iac1"
        case .fac1: "Fac1"
        case .vpv1: "Vpv1"
        case .vpv2: "Vpv2"
        case .ipv1: "Ipv1"
        case .ipv2: "Ipv2"
        case .temp: "Temp"
        case .pow: "Pow"
        case .pac: "Pac"
        }
    }

    /// Divisor that turns the raw register value into the physical unit.
    public var gain: Double {
        switch self {
        case .vac1, .iac1, .vpv1, .vpv2, .ipv1, .ipv2, .temp: 10
        case .fac1: 100
        case .pow, .pac: 1
        }
    }

    /// Physical unit of the scaled value.
    public var unit: String {
        switch self {
        case .vac1, .vpv1, .vpv2: "V"
        case .iac1, .ipv1, .ipv2: "A"
        case .fac1: "Hz"
        case .temp: "°C"
        case .pow: "%"
        case .pac: "W"
        }
    }

    /// Number of decimals the scaled value carries.
    public var decimals: Int {
        switch self {
        case .fac1: 2
        case .pow, .pac: 0
        default: 1
        }
    }

    /// The value in physical units (`raw / gain`).
    public func scaled(_ raw: UInt16) -> Double { scaled(Double(raw)) }

    /// A raw value that is no longer an integer (a mean of raw values) in physical units.
    public func scaled(_ raw: Double) -> Double { raw / gain }

    /// Looks a register up by its exact firmware name.
    public init?(name: String) {
        guard let match = Register.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }
}
