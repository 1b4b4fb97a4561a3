/// Number formatting of ArduinoJson 6.21 (`ARDUINOJSON_USE_DOUBLE`), the library the firmware serialises with.
///
/// The firmware stores `float` fields as `double` and prints them with at most 9 significant decimals, trailing zeros
/// removed (`0.833333313`, `16.66666794`, `12.5`), so reproducing its bytes needs this exact algorithm.
public enum ArduinoJSONNumber {
    /// Formats a firmware `float` the way ArduinoJson writes it.
    public static func format(_ value: Float) -> String {
        format(Double(value))
    }

    /// `TextFormatter::writeFloat` / `FloatParts` for doubles.
    public static func format(_ input: Double) -> String {
        if input.isNaN { return "NaN" }
        if input.isInfinite { return input < 0 ? "-Infinity" : "Infinity" }
        if input == 0 { return "0" }
        var text = input < 0 ? "-" : ""
        var value = input.magnitude

        var exponent = 0
        if value >= 1e7 {
            var bit = 256
            for index in stride(from: 8, through: 0, by: -1) {
                let power = pow10(1 << index)
                if value >= power {
                    value /= power
                    exponent += bit
                }
                bit >>= 1
            }
        }
        if value > 0, value <= 1e-5 {
            var bit = 256
            for index in stride(from: 8, through: 0, by: -1) {
                if value < 1 / pow10((1 << index) - 1) {
                    value *= pow10(1 << index)
                    exponent -= bit
                }
                bit >>= 1
            }
        }

        var maxDecimalPart: UInt32 = 1_000_000_000
        var decimalPlaces = 9
        var integral = UInt32(value)
        var scan = integral
        while scan >= 10 {
            maxDecimalPart /= 10
            decimalPlaces -= 1
            scan /= 10
        }
        var remainder = (value - Double(integral)) * Double(maxDecimalPart)
        var decimal = UInt32(remainder)
        remainder -= Double(decimal)
        decimal += UInt32(remainder * 2)
        if decimal >= maxDecimalPart {
            decimal = 0
            integral += 1
            if exponent != 0, integral >= 10 {
                exponent += 1
                integral = 1
            }
        }
        while decimal % 10 == 0, decimalPlaces > 0 {
            decimal /= 10
            decimalPlaces -= 1
        }

        text += String(integral)
        if decimalPlaces > 0 {
            let digits = String(decimal)
            text += "." + String(repeating: "0", count: decimalPlaces - digits.count) + digits
        }
        if exponent != 0 { text += "e" + String(exponent) }
        return text
    }

    private static func pow10(_ exponent: Int) -> Double {
        var result = 1.0
        for _ in 0..<exponent { result *= 10 }
        return result
    }
}
