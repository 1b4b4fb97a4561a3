import EcoWattProtocol
import Foundation
import OpenAPIRuntime

/// `date-time` values as the server stores them: RFC 3339 in UTC with exactly three fraction digits, both ways (the
/// runtime's default drops the milliseconds). Decoding also accepts a value without a fraction.
public struct MillisecondDates: DateTranscoder {
    public init() {}

    public func encode(_ date: Date) throws -> String {
        EpochTime.iso8601(milliseconds: Self.milliseconds(date))
    }

    public func decode(_ text: String) throws -> Date {
        for style in [Date.ISO8601FormatStyle(includingFractionalSeconds: true), Date.ISO8601FormatStyle()] {
            if let date = try? style.parse(text) { return date }
        }
        throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "'\(text)' is not an RFC 3339 date-time"))
    }

    /// Epoch milliseconds of `date`, rounded (a `Date` is a `Double` of seconds).
    public static func milliseconds(_ date: Date) -> Int64 {
        let value = (date.timeIntervalSince1970 * 1000).rounded()
        return value.isFinite && abs(value) < 9e15 ? Int64(value) : (value < 0 ? -9_000_000_000_000_000 : 9_000_000_000_000_000)
    }

    public static func date(_ milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }
}

extension OpenAPIRuntime.Configuration {
    /// The API's configuration on both sides: millisecond dates, compact JSON with sorted keys.
    public static let ecoWatt = OpenAPIRuntime.Configuration(
        dateTranscoder: MillisecondDates(),
        jsonEncodingOptions: [.sortedKeys, .withoutEscapingSlashes]
    )
}

extension MillisecondDates {
    /// One line of JSON with sorted keys and the API's millisecond dates: the CLI's `--output json` and the
    /// dashboard's event stream.
    public static func compactJSON(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(try MillisecondDates().encode(date))
        }
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
