import ArgumentParser
import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import Foundation
import MQTTBridge

extension BenchCommand {
    /// `ecowatt bench fill-outbox`: pre-fills a stopped server's MQTT outbox, to time how fast it drains.
    struct FillOutbox: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fill-outbox",
            abstract: "Store N uploads of the spec §3.6.3 packet, queued for the MQTT feed, in a stopped server's database.",
            discussion: "Start the server with a broker afterwards and watch GET /mqtt/status until the backlog is 0."
        )

        @Option(help: "Database directory.") var dataDir: String
        @Option(help: "Messages.") var messages = 100_000
        @Option(help: "Devices (messages are spread round-robin).") var devices = 1000

        func run() async throws {
            let database = try EcoWattDatabase(path: EcoWattDatabase.path(inDirectory: dataDir))
            let upload = try UploadPayload(parsing: Array(BenchCommand.exampleInner(device: "BENCH-0").utf8))
            var state = DeviceStreamState()
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let packet = try require(DeviceStreamDecoder.decode(upload, arrivalMs: now, state: &state).packets.first)
            let stream = state
            let record = IngestRecord(deviceID: "", nonce: 0, receivedAtMs: now, packets: [packet], streamState: stream)
            try await database.fillBenchOutbox(record: record, messages: messages, devices: devices)
            try database.close()
            print("queued \(messages) messages")
        }
    }
}

/// `#require` for the CLI: the value or a validation error.
func require<T>(_ value: T?, _ message: String = "missing value") throws -> T {
    guard let value else { throw ValidationError(message) }
    return value
}
