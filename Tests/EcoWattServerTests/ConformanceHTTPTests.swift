import EcoWattSQLite
import EcoWattServer
import EcoWattTestSupport
import Foundation
import HummingbirdTesting
import Testing

/// Replays `../shared/conformance/uploads.jsonl` and `negative.jsonl` against the real server on loopback and checks
/// statuses and, from the database, every packet's decode.
@Suite struct ConformanceHTTPTests {
    /// Decoded packets of one upload, read back from SQLite: (decoded, approximate, last sample ms, rows).
    static func storedPackets(
        _ server: EcoWattApplication,
        device: String,
        nonce: Int
    ) throws
        -> [(decoded: Bool, approximate: Bool, lastMs: Int64, rows: [[Int]])]
    {
        try DatabaseInspector(server.database).packets(deviceID: device).filter { $0.packet.nonce == UInt32(nonce) }
            .sorted { $0.packet.packetIndex < $1.packet.packetIndex }
            .map { stored in
                let packet = stored.packet
                let rows = zip(packet.samples ?? [], packet.sampleTimesMs).enumerated()
                    .sorted { ($0.element.1, $0.offset) < ($1.element.1, $1.offset) }.map { $0.element.0.map { Int($0) } }
                return (packet.samples != nil, packet.approximate, packet.lastSampleMs, rows)
            }
    }

    /// Checks stored packets against a corpus `expected.packets` list. A packet the corpus calls decodable must be
    /// decoded at once, exactly. The corpus does not require more, but a server may decode more (a 0x71 packet whose
    /// predecessors all arrived late, the whole samples of a cut 0xD0 blob): those values must be what the device read.
    static func check(
        _ stored: [(decoded: Bool, approximate: Bool, lastMs: Int64, rows: [[Int]])],
        against expected: [[String: Any]],
        _ label: String
    ) -> Int {
        #expect(stored.count == expected.count, "\(label): packet count")
        var beyond = 0
        for (index, (got, want)) in zip(stored, expected).enumerated() {
            let decodable = want["decodable"] as! Bool
            if decodable {
                #expect(got.decoded, "\(label) packet \(index): decodable")
                guard got.decoded else { continue }
                #expect(got.rows == want["values"] as! [[Int]], "\(label) packet \(index): values")
                #expect(got.approximate == !(want["exact"] as! Bool), "\(label) packet \(index): approximate flag")
                if let last = want["last_sample_epoch_ms"] as? Int64 {
                    #expect(got.lastMs == last, "\(label) packet \(index): last sample time")
                }
            } else if got.decoded {
                beyond += 1
                let truth = want["true_values"] as! [[Int]]
                #expect(
                    !got.rows.isEmpty && got.rows == Array(truth.prefix(got.rows.count)),
                    "\(label) packet \(index): decoded beyond the corpus, exactly"
                )
            }
        }
        return beyond
    }

    @Test func uploadsCorpusIsAcceptedAndDecodedExactly() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let lines = try Conformance.lines("uploads.jsonl")
            #expect(lines.count == 317)
            var packetsChecked = 0
            for line in lines {
                let device = line["device_id"] as! String
                let label = "\(device) seq \(line["seq"]!)"
                if line["boot"] as? Bool == true, let report = line["boot_report"] as? [String: Any] {
                    // Sent a few seconds before the upload, at the time in its body. Applied (200) for a device bound to
                    // this address, held (202) on its first boot until its first verified upload confirms it; the
                    // firmware only logs the status either way.
                    let body = report["body"] as! String
                    let sentAt = (try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["timestamp"] as? Int64
                    test.clock.set((sentAt ?? 0) * 1000)
                    let response = try await client.postJSON(report["path"] as! String, body)
                    #expect([.ok, .accepted].contains(response.status), "\(label): boot report")
                }
                test.clock.set(Int64(((line["sent_at"] as! Double) * 1000).rounded()))
                let response = try await client.postJSON(line["path"] as! String, line["body"] as! String)
                let expected = line["expected"] as! [String: Any]
                #expect(Int(response.status.code) == expected["http_status"] as! Int, "\(label): status")
                let packets = expected["packets"] as! [[String: Any]]
                _ = Self.check(
                    try Self.storedPackets(test.server, device: device, nonce: line["nonce"] as! Int),
                    against: packets,
                    label
                )
                packetsChecked += packets.count
            }
            #expect(packetsChecked == 361)
            // Again after the whole replay: packets decoded by later uploads (their predecessors came late) are exact.
            var beyond = 0
            for line in lines {
                let device = line["device_id"] as! String
                beyond += Self.check(
                    try Self.storedPackets(test.server, device: device, nonce: line["nonce"] as! Int),
                    against: (line["expected"] as! [String: Any])["packets"] as! [[String: Any]],
                    "\(device) seq \(line["seq"]!) (end)"
                )
            }
            print("ConformanceHTTPTests: \(beyond) packets decoded beyond what the corpus requires, each exactly")
        }
    }

    @Test func negativeCorpusGetsTheExpectedAnswers() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let lines = try Conformance.lines("negative.jsonl")
            #expect(lines.count == 29)
            for line in lines {
                let device = line["device_id"] as! String
                let label = "\(line["case"]!) seq \(line["seq"]!)"
                if line["boot"] as? Bool == true, let report = line["boot_report"] as? [String: Any] {
                    _ = try await client.postJSON(report["path"] as! String, report["body"] as! String)
                }
                if let sentAt = line["sent_at"] as? Double {
                    test.clock.set(Int64((sentAt * 1000).rounded()))
                }
                let response = try await client.postJSON(line["path"] as! String, line["body"] as! String)
                let expected = line["expected"] as! [String: Any]
                let acceptable = (expected["acceptable_status"] as? [Int]) ?? [expected["http_status"] as! Int]
                #expect(acceptable.contains(Int(response.status.code)), "\(label): status \(response.status.code)")
                if response.status.code != 200 {
                    #expect(response.json["success"] as? Bool == false, "\(label): error shape")
                    #expect((response.json["error"] as? String)?.isEmpty == false, "\(label): error reason")
                }
                if let packets = expected["packets"] as? [[String: Any]], response.status == .ok {
                    _ = Self.check(
                        try Self.storedPackets(test.server, device: device, nonce: line["nonce"] as! Int),
                        against: packets,
                        label
                    )
                }
            }
        }
    }
}
