import EcoWattProtocol
import EcoWattStorage
import Logging
import ServiceLifecycle
import Synchronization

/// Log lines that anonymous requests can trigger (client errors, device reports) or that every request repeats while
/// something is broken (server errors: a full disk failed every upload, three lines each): the first `burst` per
/// interval are written in full, the rest are counted by kind and summed up in one line per interval. A flood of bad
/// requests becomes a few lines a minute instead of one line per request (issue 13: 122 000 bad requests wrote 52 000
/// lines).
public final class RateLimitedLog: Service, Sendable {
    private let logger: Logger
    private let what: String
    private let interval: Duration
    private let burst: Int
    private struct Window {
        var start: ContinuousClock.Instant
        var logged = 0
        var suppressed: [String: Int] = [:]
    }
    private let window: Mutex<Window>

    /// - Parameter what: the summary's noun, e.g. "client errors".
    public init(logger: Logger, what: String, interval: Duration, burst: Int) {
        self.logger = logger
        self.what = what
        self.interval = interval
        self.burst = burst
        window = Mutex(Window(start: .now))
    }

    /// Logs one event of `kind` in full (through `requestLogger`, with its request id, when given), or counts it when
    /// the interval's burst is spent.
    public func log(
        level: Logger.Level,
        kind: String,
        _ message: @autoclosure () -> Logger.Message,
        metadata: @autoclosure () -> Logger.Metadata,
        via requestLogger: Logger? = nil
    ) {
        guard logger.logLevel <= level else { return }
        let (full, summary) = window.withLock { window -> (Bool, (Duration, [String: Int])?) in
            let summary = rollOver(&window)
            guard window.logged < burst else {
                window.suppressed[kind, default: 0] += 1
                return (false, summary)
            }
            window.logged += 1
            return (true, summary)
        }
        if let summary { write(summary) }
        if full { (requestLogger ?? logger).log(level: level, message(), metadata: metadata()) }
    }

    /// Writes the summary of a finished interval (also called every interval while idle), or with `early` of the
    /// unfinished one (at shutdown).
    public func flush(early: Bool = false) {
        if let summary = window.withLock({ rollOver(&$0, early: early) }) { write(summary) }
    }

    public func run() async throws {
        await repeatUntilShutdown(every: interval) { self.flush() }
        flush(early: true)
    }

    /// Starts a new window when the current one is over (or `early`); returns what the old one suppressed.
    private func rollOver(_ window: inout Window, early: Bool = false) -> (Duration, [String: Int])? {
        let now = ContinuousClock.now
        guard early || now - window.start >= interval else { return nil }
        defer { window = Window(start: now) }
        return window.suppressed.isEmpty ? nil : (now - window.start, window.suppressed)
    }

    private func write(_ summary: (Duration, [String: Int])) {
        let total = summary.1.values.reduce(0, +)
        var metadata: Logger.Metadata = ["seconds": "\(summary.0.components.seconds)", "not_logged": "\(total)"]
        for (kind, count) in summary.1.sorted(by: { $0.value > $1.value }).prefix(20) { metadata[kind] = "\(count)" }
        logger.notice("\(what) not logged in full (counts by kind)", metadata: metadata)
    }
}

/// Device-supplied text in log metadata: escaped like a JSON string (quotes, backslashes and control characters), so a
/// newline in a device's message cannot forge a log line; cut to `limit` characters.
public enum LogText {
    public static func escaped(_ text: String, limit: Int = 200) -> String {
        let cut = text.unicodeScalars.count > limit
        let literal = JSONValue.string(cut ? String(String.UnicodeScalarView(text.unicodeScalars.prefix(limit))) : text).serialized
        return String(literal.dropFirst().dropLast()) + (cut ? "…" : "")
    }

    /// ``escaped(_:limit:)`` as a metadata value.
    public static func value(_ text: String) -> Logger.MetadataValue { .string(escaped(text)) }
}
