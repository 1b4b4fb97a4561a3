import Logging

/// swift-log's `StreamLogHandler`, with its metadata rendered only when a line is written.
///
/// `StreamLogHandler` renders its metadata to text every time an entry is set. Hummingbird sets the request id on
/// every request's logger, so every request paid for rendering it, although at the default levels almost no request
/// writes a line: 1.7 % of the server's CPU during an upload benchmark (issue 23, `perf record`). This handler keeps
/// the metadata as values and hands them to the stream handler with each line, which renders them as before: the output
/// is the same.
public struct DeferredMetadataLogHandler: LogHandler {
    private var stream: StreamLogHandler
    public var metadata: Logger.Metadata = [:]

    public init(_ stream: StreamLogHandler) {
        self.stream = stream
    }

    public var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { stream.metadataProvider }
        set { stream.metadataProvider = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var event = event
        if !metadata.isEmpty { event.metadata = metadata.merging(event.metadata ?? [:]) { _, explicit in explicit } }
        stream.log(event: event)
    }
}
