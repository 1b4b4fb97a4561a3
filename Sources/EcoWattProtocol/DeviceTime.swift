/// Times the device reports in its messages (energy reports in ms, fault events and OTA progress in s): epoch time when
/// NTP synced, else time since boot (spec §0.6). They are unsigned and not authenticated, so a value below zero or more
/// than a day ahead of the server's clock is not stored (no year 506713 in the API); the record keeps a flag instead.
public enum DeviceTime {
    /// How far ahead of the server's clock a device clock may run.
    public static let toleranceMs: Int64 = 86_400_000

    /// A time in milliseconds, or `nil` with `invalid` when implausible.
    public static func milliseconds(_ value: Int64?, arrivalMs: Int64) -> (value: Int64?, invalid: Bool) {
        guard let value else { return (nil, false) }
        let latest = arrivalMs.addingReportingOverflow(toleranceMs)
        guard value >= 0, latest.overflow || value <= latest.partialValue else { return (nil, true) }
        return (value, false)
    }

    /// A time in seconds, or `nil` with `invalid` when implausible.
    public static func seconds(_ value: Int64?, arrivalMs: Int64) -> (value: Int64?, invalid: Bool) {
        guard let value else { return (nil, false) }
        guard value >= 0, value <= (arrivalMs / 1000).addingReportingOverflow(toleranceMs / 1000).partialValue else {
            return (nil, true)
        }
        return (value, false)
    }
}
