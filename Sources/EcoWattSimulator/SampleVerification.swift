import AsyncHTTPClient
import EcoWattProtocol
import Foundation
import NIOCore

/// After a run with the operator token: every device's samples read back from the server (`GET
/// /api/v1/devices/{id}/telemetry`) and matched with what the device read — the value it read at the time it read it.
struct SampleVerification {
    struct Stored {
        var timeMs: Int64
        var layout: [Int]
        var values: [UInt16]
        var approximate: Bool
        var estimated: Bool
    }

    struct Outcome {
        var exactly = 0
        var approximately = 0
        var worstErrorMs: Int64 = 0
    }

    let client: HTTPClient
    let baseURL: String
    let token: String
    /// A stored time may be this far from the reading (the device stamps whole seconds; the server spreads samples).
    static let toleranceMs: Int64 = 1_500

    /// The samples the server holds for `deviceID` between `fromMs` and `toMs`, page by page (the operator API's
    /// cursor: samples of one millisecond split across pages come exactly once).
    func stored(deviceID: String, fromMs: Int64, toMs: Int64) async throws -> [Stored] {
        var samples: [Stored] = []
        var cursor: String?
        let window = "start=\(EpochTime.iso8601(milliseconds: fromMs))&end=\(EpochTime.iso8601(milliseconds: toMs))"
        repeat {
            var request = HTTPClientRequest(
                url: "\(baseURL)/api/v1/devices/\(deviceID)/telemetry?\(window)&limit=10000&resolution=raw"
                    + (cursor.map { "&cursor=\($0)" } ?? "")
            )
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
            let response = try await client.execute(request, timeout: .seconds(30))
            let body = try await response.body.collect(upTo: 64 << 20)
            let page = try JSONParser.parse(Array(body.readableBytesView))
            guard response.status == .ok, let data = page["samples"]?.arrayValue else {
                throw SimulationError.invalidOption("reading back \(deviceID)'s samples: HTTP \(response.status.code)")
            }
            samples += data.compactMap { item -> Stored? in
                guard let time = item["timestamp_ms"]?.intValue, let layout = item["register_layout"]?.arrayValue,
                    let values = item["raw_values"]?.arrayValue
                else { return nil }
                return Stored(
                    timeMs: time,
                    layout: layout.compactMap { $0.intValue.map(Int.init) },
                    values: values.compactMap { $0.intValue.flatMap(UInt16.init(exactly:)) },
                    approximate: item["approximate"]?.boolValue ?? false,
                    estimated: item["time_estimated"]?.boolValue ?? false
                )
            }
            cursor = page["next_cursor"]?.stringValue
        } while cursor != nil
        return samples
    }

    /// Matches readings with stored samples, each stored sample used once. A reading that the server can place only by
    /// its own clock (``SimulatedDevice/Reading/placedByServerClock``) may be off by `clockSkewMs`, how far a sped-up
    /// run leaves the server's clock behind the devices': the server stores it at a time estimated from an arrival time,
    /// or spreads it between such a time and the first synced stamp (the firmware stamps only a batch's last sample).
    /// So may any stored time the server flags estimated. The worst error reported is that of the other readings.
    static func match(_ readings: [SimulatedDevice.Reading], _ stored: [Stored], clockSkewMs: Int64) -> Outcome {
        var outcome = Outcome()
        let stored = stored.sorted { $0.timeMs < $1.timeMs }
        var used = [Bool](repeating: false, count: stored.count)
        let widest = toleranceMs + clockSkewMs
        for reading in readings {
            // Candidates are the samples within the widest tolerance, found by binary search.
            var low = 0
            var high = stored.count
            while low < high {
                let middle = (low + high) / 2
                if stored[middle].timeMs < reading.timeMs - widest { low = middle + 1 } else { high = middle }
            }
            func candidate(approximate: Bool) -> Int? {
                var best: Int?
                var index = low
                while index < stored.count, stored[index].timeMs <= reading.timeMs + widest {
                    let sample = stored[index]
                    let tolerance = toleranceMs + (sample.estimated || reading.placedByServerClock ? clockSkewMs : 0)
                    let error = abs(sample.timeMs - reading.timeMs)
                    if !used[index], sample.approximate == approximate, sample.layout == reading.layout, error <= tolerance,
                        approximate || sample.values == reading.values,
                        best.map({ error < abs(stored[$0].timeMs - reading.timeMs) }) ?? true
                    {
                        best = index
                    }
                    index += 1
                }
                return best
            }
            if let index = candidate(approximate: false) {
                outcome.exactly += 1
                if !stored[index].estimated && !reading.placedByServerClock {
                    outcome.worstErrorMs = max(outcome.worstErrorMs, abs(stored[index].timeMs - reading.timeMs))
                }
                used[index] = true
            } else if let index = candidate(approximate: true) {
                outcome.approximately += 1
                used[index] = true
            }
        }
        return outcome
    }
}
