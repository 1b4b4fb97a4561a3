import ArgumentParser
import EcoWattProtocol
import EcoWattServer
import EcoWattStore
import Foundation
import Logging

/// `ecowatt decode`: runs captured uploads through the server's verification and decoding pipeline.
struct DecodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Verify and decode captured uploads (JSONL with device_id, seq, body) like the server would.",
        discussion: """
            Each input line is an object with "device_id", "seq" and "body" (the exact request body), optionally
            "boot": true (the device rebooted before this upload) and "sent_at" (arrival time, Unix seconds).
            Prints one JSON line per decoded packet on stdout:
              {"device_id":…,"seq":…,"packet_index":…,"values":[[…],…]}
            Undecodable packets and rejected uploads are reported on stderr with the reason.
            """
    )

    @Option(help: "JSONL input file ('-' for standard input).") var input: String
    @Option(help: "Fleet HMAC key as hex (default: the firmware's key).") var fleetKey: String?

    func run() async throws {
        guard let keyBytes = HexCoding.decode(fleetKey ?? FleetKey.firmwareDefaultHex), keyBytes.count >= 16 else {
            throw ValidationError("--fleet-key must be at least 16 bytes of hex")
        }
        let text: String
        if input == "-" {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        } else {
            guard let data = FileManager.default.contents(atPath: input) else {
                throw ValidationError("cannot read \(input)")
            }
            text = String(decoding: data, as: UTF8.self)
        }
        var logger = Logger(label: "ecowatt.decode")
        logger.logLevel = .warning
        let ingest = IngestService(store: InMemoryTelemetryStore(), fleetKey: .init(data: keyBytes), logger: logger)
        var decoded = 0
        var undecodable = 0
        var rejected = 0
        for (lineNumber, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let deviceID = object["device_id"] as? String, let body = object["body"] as? String
            else {
                printError("line \(lineNumber + 1): not an object with device_id and body")
                rejected += 1
                continue
            }
            let seq = (object["seq"] as? Int) ?? lineNumber
            let arrivalMs = Int64(((object["sent_at"] as? Double) ?? Date().timeIntervalSince1970) * 1000)
            do {
                // A boot line: the device's boot signal came just before this upload.
                let outcome = try await ingest.ingest(
                    deviceID: deviceID,
                    body: Array(body.utf8),
                    arrivalMs: arrivalMs,
                    bootSignal: object["boot"] as? Bool == true
                )
                for packet in outcome.packets {
                    if let samples = packet.samples {
                        let values = samples.map { "[" + $0.map(String.init).joined(separator: ",") + "]" }
                        print(
                            #"{"device_id":\#(JSONValue.string(deviceID).serialized),"seq":\#(seq),"packet_index":\#(packet.index),"values":[\#(values.joined(separator: ","))]}"#
                        )
                        decoded += 1
                    } else {
                        printError(
                            "\(deviceID) seq \(seq) packet \(packet.index): undecodable (\(packet.reason?.rawValue ?? "?")): \(packet.detail ?? "")"
                        )
                        undecodable += 1
                    }
                }
            } catch {
                printError("\(deviceID) seq \(seq): rejected (HTTP \(error.status.code)): \(error.reason)")
                rejected += 1
            }
        }
        printError("decoded \(decoded) packets, \(undecodable) undecodable, \(rejected) uploads rejected")
    }

    private func printError(_ message: String) {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }
}
