import ArgumentParser
import EcoWattProtocol
import EcoWattSQLite
import EcoWattServer
import EcoWattStorage
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
        let ingest = IngestService(store: InMemoryStore(), fleetKey: .init(data: keyBytes), logger: logger)
        /// Every stored packet by serial: where it came from and its values (a packet that waited for its predecessors
        /// gets them from a later upload).
        var results: [(deviceID: String, serial: Int64, seq: Int, index: Int, samples: [[UInt16]]?, why: String)] = []
        var rejected = 0
        var resent = 0
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
            // A boot line: the device's boot signal came just before this upload (at the boot report's time).
            var bootSignalAtMs: Int64?
            if object["boot"] as? Bool == true {
                let report = (object["boot_report"] as? [String: Any])?["body"] as? String
                let reported = report.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                let seconds = (reported?["timestamp"] as? NSNumber)?.int64Value ?? 0
                bootSignalAtMs = seconds >= 1_000_000_000 ? seconds * 1000 : arrivalMs - 15_000
            }
            do {
                let outcome = try await ingest.ingest(
                    deviceID: deviceID,
                    body: Array(body.utf8),
                    arrivalMs: arrivalMs,
                    bootSignalAtMs: bootSignalAtMs
                )
                for packet in outcome.packets {
                    guard !packet.resend else {
                        resent += 1
                        continue
                    }
                    results.append(
                        (deviceID, packet.serial, seq, packet.index, packet.samples, "\(packet.reason?.rawValue ?? "?"): \(packet.detail ?? "")")
                    )
                }
                for update in outcome.updates {
                    guard let samples = update.samples,
                        let position = results.lastIndex(where: { $0.deviceID == deviceID && $0.serial == update.serial })
                    else { continue }
                    results[position].samples = samples
                }
            } catch {
                let answer = error.apiError
                printError("\(deviceID) seq \(seq): rejected (HTTP \(answer.status.code)): \(answer.reason)")
                rejected += 1
            }
        }
        var decoded = 0
        var undecodable = 0
        for result in results {
            if let samples = result.samples {
                let values = samples.map { "[" + $0.map(String.init).joined(separator: ",") + "]" }
                print(
                    #"{"device_id":\#(JSONValue.string(result.deviceID).serialized),"seq":\#(result.seq),"packet_index":\#(result.index),"values":[\#(values.joined(separator: ","))]}"#
                )
                decoded += 1
            } else {
                printError("\(result.deviceID) seq \(result.seq) packet \(result.index): undecodable (\(result.why))")
                undecodable += 1
            }
        }
        printError("decoded \(decoded) packets, \(undecodable) undecodable, \(resent) resent, \(rejected) uploads rejected")
    }

    private func printError(_ message: String) {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }
}
