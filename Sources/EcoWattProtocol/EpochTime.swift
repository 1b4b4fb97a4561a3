import Foundation

/// Epoch-millisecond times as text.
public enum EpochTime {
    /// ISO 8601 in UTC with milliseconds, e.g. `2025-11-28T03:20:15.200Z`.
    public static func iso8601(milliseconds ms: Int64) -> String {
        // Clamped to years 0001...9999, which ISO 8601 can write (and no arithmetic below can overflow).
        let ms = min(max(ms, -62_135_596_800_000), 253_402_300_799_999)
        let seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
        let millis = String(Int(ms - seconds * 1000))
        let whole = Date(timeIntervalSince1970: Double(seconds)).formatted(Date.ISO8601FormatStyle())
        let fraction = String(repeating: "0", count: 3 - millis.count) + millis
        return whole.hasSuffix("Z") ? "\(whole.dropLast()).\(fraction)Z" : whole
    }

    /// Compact ISO 8601 in UTC for file and directory names, e.g. `20251128T032015Z` (key archives, databases kept
    /// aside by a restore).
    public static func compactStamp(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.string(from: date)
    }

    /// ISO 8601 in UTC with whole seconds, e.g. `2025-11-28T03:20:15Z` (the firmware's `executed_at`).
    public static func iso8601(seconds: Int64) -> String {
        Date(timeIntervalSince1970: Double(min(max(seconds, -62_135_596_800), 253_402_300_799))).formatted(Date.ISO8601FormatStyle())
    }
}
