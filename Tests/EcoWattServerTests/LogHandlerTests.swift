import EcoWattServer
import Logging
import Testing

/// The server's log handler defers rendering metadata to the lines it writes (issue 23), and writes what swift-log's
/// stream handler writes.
@Suite struct LogHandlerTests {
    @Test func theDeferredHandlerWritesWhatTheStreamHandlerWrites() {
        let direct = LogLines()
        let deferred = LogLines()
        var loggers = [
            Logger(label: "ecowatt.test") { StreamLogHandler(label: $0, stream: direct, metadataProvider: nil) },
            Logger(label: "ecowatt.test") { DeferredMetadataLogHandler(StreamLogHandler(label: $0, stream: deferred, metadataProvider: nil)) },
        ]
        for index in loggers.indices {
            loggers[index].logLevel = .info
            loggers[index][metadataKey: "hb.request.id"] = "42"
            loggers[index][metadataKey: "device_id"] = "DEV-1"
            loggers[index].debug("not written")
            loggers[index].info("plain")
            loggers[index].notice("explicit wins", metadata: ["device_id": "DEV-2", "reason": "mac"])
            loggers[index][metadataKey: "hb.request.id"] = nil
            loggers[index].warning("after removal")
        }
        #expect(deferred.untimed.count == 3)
        #expect(deferred.untimed == direct.untimed, "\(deferred.untimed)")
        #expect(deferred.untimed[1].contains("device_id=DEV-2") && !deferred.untimed[1].contains("DEV-1"))
        #expect(loggers[1][metadataKey: "device_id"] == "DEV-1" && loggers[1].logLevel == .info)
    }
}
