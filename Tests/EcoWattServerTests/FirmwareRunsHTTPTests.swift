import EcoWattProtocol
import EcoWattSQLite
import EcoWattServer
import EcoWattTestSupport
import Foundation
import HummingbirdTesting
import Testing

/// Issue 15: the requests the real firmware (1.3.4, unmodified) sent in two runs — four boots, an upload outage whose
/// backlog came back out of order, interval changes, cut packets — replayed against a live server, and every value the
/// firmware read compared with what the server stored (`firmware_runs.jsonl`, `firmware_truth.jsonl`).
@Suite struct FirmwareRunsHTTPTests {
    struct Stored {
        var rows: [[Int]]
        var times: [Int64]
        var approximate: Bool
    }

    /// Samples stored per (nonce, packet index), in time order.
    static func stored(_ server: EcoWattApplication) throws -> [String: Stored] {
        var result: [String: Stored] = [:]
        for stored in try DatabaseInspector(server.database).packets() {
            let samples = zip(stored.packet.samples ?? [], stored.packet.sampleTimesMs).enumerated()
                .sorted { ($0.element.1, $0.offset) < ($1.element.1, $1.offset) }.map(\.element)
            result["\(stored.packet.nonce)/\(stored.packet.packetIndex)"] = Stored(
                rows: samples.map { $0.0.map { Int($0) } },
                times: samples.map(\.1),
                approximate: stored.packet.approximate
            )
        }
        return result
    }

    static let registerNames = Register.allCases.map(\.name)

    @Test(arguments: ["fast", "realtime"]) func everyValueTheFirmwareReadIsStoredAsReadAndWhenRead(run: String) async throws {
        // Every request but the 24 uploads the original server answered 503 (an injected outage): the device sent
        // their packets again, later and in another order, and those requests are in the file.
        let requests = try Conformance.lines("firmware_runs.jsonl").filter { $0["run"] as? String == run }
            .filter { $0["scenario"] as? String != "outage" }
            .map { (at: $0["t_epoch_ms"] as! Int64, method: $0["method"] as! String, path: $0["path"] as! String, body: $0["body"] as! String) }
        let truth = try Conformance.lines("firmware_truth.jsonl").filter { $0["run"] as? String == run }
        let test = try await TestServer()
        try await test.run { client in
            for request in requests {
                test.clock.set(request.at)
                let response =
                    request.method == "GET"
                    ? try await client.execute(uri: request.path, method: .get)
                    : try await client.postJSON(request.path, request.body)
                if request.path.hasPrefix("/aggregated/") {
                    #expect(response.status == .ok, "\(run) upload at \(request.at)")
                }
            }
        }
        let stored = try Self.stored(test.server)
        var counts: [String: Int] = [:]
        var worstTime: (error: Int64, read: Int) = (0, -1)
        // The lossy 0x50 packets: what the firmware's own encoder makes of the readings it was given.
        var lossy: [String: [[String: Any]]] = [:]
        for line in truth where line["expect"] as? String == "approximate" {
            lossy["\(line["delivered_nonce"]!)/\(line["delivered_packet_index"]!)", default: []].append(line)
        }
        for line in truth {
            let expect = line["expect"] as! String
            counts[expect, default: 0] += 1
            guard expect != "absent", let nonce = line["delivered_nonce"] as? Int,
                let index = line["delivered_packet_index"] as? Int
            else { continue }
            let key = "\(nonce)/\(index)"
            let sample = line["sample_index"] as! Int
            let names = line["register_layout"] as! [String]
            let registers = line["registers"] as! [String: Int]
            let read = names.map { registers[$0]! }
            guard let packet = stored[key], sample < packet.rows.count else {
                Issue.record("\(run) read \(line["read_index"]!) (\(expect)): not stored (\(key) sample \(sample))")
                continue
            }
            switch expect {
            case "approximate":
                let batch = lossy[key]!.sorted { ($0["sample_index"] as! Int) < ($1["sample_index"] as! Int) }
                let layout = names.map { Self.registerNames.firstIndex(of: $0)! }
                let values = batch.flatMap { row in names.map { UInt16((row["registers"] as! [String: Int])[$0]!) } }
                let selection = (0..<values.count).map { layout[$0 % layout.count] }
                let encoded = SemanticRLEEncoder.encode(values, selection: selection)
                let expected = try SemanticRLEDecoder.decode(encoded, count: values.count).map(Int.init)
                #expect(packet.approximate)
                #expect(packet.rows[sample] == Array(expected[sample * names.count..<(sample + 1) * names.count]), "\(key) sample \(sample)")
            default:
                #expect(packet.rows[sample] == read, "\(run) read \(line["read_index"]!) (\(expect)): values")
            }
            let error = abs(packet.times[sample] - (line["firmware_stamp_epoch_ms"] as! Int64))
            if error > worstTime.error { worstTime = (error, line["read_index"] as! Int) }
            // The device sends its last sample's time only: the others are placed evenly after the previous packet, so
            // a read that a Modbus retry delayed by a second or so is where the error is (the README's tolerance).
            #expect(error <= 1_500, "\(run) read \(line["read_index"]!) (\(key) sample \(sample)): time off by \(error) ms")
        }
        let kept = truth.count - counts["absent", default: 0]
        let storedSamples = stored.values.reduce(0) { $0 + $1.rows.count }
        #expect(storedSamples == kept, "no sample the firmware lost appears, none it kept is missing")
        print(
            "FirmwareRunsHTTPTests \(run): \(kept) of \(truth.count) reads kept by the firmware, all stored; \(counts); worst time error \(worstTime.error) ms (read \(worstTime.read))"
        )
    }
}

/// Issue 15 against the real store: a device with 3-sample batches and 1 s Modbus reads (samples 6 s apart, reported
/// as 5 s) whose backlog comes back in push-back order. A packet that arrived before its predecessor was stored with
/// nominal times, then re-timed in SQLite when the predecessor came: every stored sample ends within 1.5 s of its read.
@Suite struct BacklogHTTPTests {
    @Test func aBacklogOutOfOrderIsStoredWithEveryValueAndTimeOnceItsPredecessorsArrive() async throws {
        var device = FieldDevice(at: Uploads.exampleArrivalMs)
        device.intervalMs = 5_000
        device.reportedInterval = 5
        device.readMs = 1_000
        device.uploadMs = 15_000
        device.outages = [device.nowMs + 200_000...device.nowMs + 400_000]
        let uploads = device.run(until: device.nowMs + 800_000)
        let requests = uploads.map { upload in
            (upload.arrivalMs, SecuredEnvelope.sign(payload: Array(upload.inner.utf8), nonce: upload.nonce, key: FleetKey.firmwareDefault).jsonBody)
        }
        let test = try await TestServer()
        try await test.run { client in
            for (arrivalMs, body) in requests {
                test.clock.set(arrivalMs)
                let response = try await client.postJSON("/aggregated/FIELD", body)
                #expect(response.status == .ok)
            }
        }
        let packets = try DatabaseInspector(test.server.database).packets(deviceID: "FIELD")
        let rows = packets.flatMap { zip($0.packet.samples ?? [], $0.packet.sampleTimesMs) }.sorted { $0.1 < $1.1 }
        let readings = device.batches.values.flatMap { $0 }.sorted { $0.timeMs < $1.timeMs }  // every batch uploaded
        #expect(rows.count == readings.count)
        var worst: Int64 = 0
        for (row, reading) in zip(rows, readings) {
            #expect(row.0 == reading.values)
            worst = max(worst, abs(row.1 - reading.timeMs))
        }
        #expect(worst <= 1_500, "worst time error \(worst) ms")
        let retimed = try DatabaseInspector(test.server.database).int("SELECT COUNT(*) FROM telemetry_refs WHERE device_id = 'FIELD'")
        #expect((retimed ?? 0) > 0, "packets of the backlog kept where their samples are")
    }
}
