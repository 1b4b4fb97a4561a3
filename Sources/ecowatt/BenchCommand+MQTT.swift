import ArgumentParser
import EcoWattProtocol
import EcoWattStore
import Foundation
import GRDB
import MQTTBridge

extension BenchCommand {
    /// `ecowatt bench fill-outbox`: pre-fills a stopped server's MQTT outbox, to time how fast it drains.
    struct FillOutbox: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fill-outbox",
            abstract: "Queue N feed messages (the spec §3.6.3 packet) in a stopped server's MQTT outbox.",
            discussion: "Start the server with a broker afterwards and watch GET /mqtt/status until the backlog is 0."
        )

        @Option(help: "Database directory.") var dataDir: String
        @Option(help: "Messages.") var messages = 100_000
        @Option(help: "Devices (messages are spread round-robin).") var devices = 1000

        func run() async throws {
            let database = try EcoWattDatabase(path: (dataDir as NSString).appendingPathComponent("ecowatt.sqlite"))
            let upload = try UploadPayload(parsing: Array(BenchCommand.exampleInner(device: "BENCH-0").utf8))
            var state = DeviceStreamState()
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let packet = try require(DeviceStreamDecoder.decode(upload, arrivalMs: now, state: &state).first)
            try await database.pool.write { db in
                let statement = try db.makeStatement(
                    sql: "INSERT INTO mqtt_outbox (device_id, topic, payload, created_at_ms) VALUES (?, ?, ?, ?)"
                )
                for index in 0..<messages {
                    let device = "BENCH-\(index % devices)"
                    let payload = TelemetryMessage.payload(deviceID: device, packet: packet, receivedAtMs: now + Int64(index))
                    try statement.execute(arguments: [
                        device, TelemetryMessage.topic(prefix: "ecowatt/data", deviceID: device), Data(payload), now,
                    ])
                }
            }
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
