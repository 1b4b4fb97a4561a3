import ArgumentParser
import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import Foundation

/// `ecowatt bench …`: measurement helpers behind BENCHMARKS.md.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: CPU cost of verify + decode, and pre-signed uploads for HTTP load tools.",
        subcommands: [DecodeCost.self, CodecCost.self, MakeUploads.self, Seed.self, OTAFleet.self, FillOutbox.self, History.self, StackFloor.self]
    )

    /// The spec §3.6.3 inner JSON (one 0x01 packet, 3 samples × 6 registers) for `device`.
    /// The spec §3.6.3 upload of `device`, as its `round`-th batch: 15 s later per round, so that every upload carries
    /// a new batch (the same batch again would be a resend, acknowledged but not stored).
    static func exampleInner(device: String, round: Int = 0) -> String {
        UploadBuilder.innerJSON(
            deviceID: device,
            timestamp: UInt64(1_764_300_015 + 15 * round),
            samplingInterval: 5,
            packets: [
                .init(
                    blob: HexCoding.decode("010c129000340470461c44ae9020340470461c44b19010350480461c54af") ?? [],
                    registerLayout: [0, 1, 5, 6, 7, 9],
                    sampleCount: 3,
                    timestamp: UInt32(truncatingIfNeeded: 3_363_422_140 + 15_000 * round)
                )
            ]
        )
    }

    struct DecodeCost: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "decode",
            abstract: "Time envelope parsing + HMAC verification + inner JSON + packet decoding per upload.",
            discussion: "Uses the uploads corpus when --corpus is given, else the spec §3.6.3 example upload."
        )

        @Option(help: "uploads.jsonl to replay (each line's body).") var corpus: String?
        @Option(help: "Passes over the input.") var iterations = 200

        func run() throws {
            var bodies: [(String, [UInt8])] = []
            if let corpus {
                guard let text = FileManager.default.contents(atPath: corpus) else {
                    throw ValidationError("cannot read \(corpus)")
                }
                for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
                    let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
                    bodies.append((object["device_id"] as! String, Array((object["body"] as! String).utf8)))
                }
            } else {
                let inner = Array(BenchCommand.exampleInner(device: "BENCH").utf8)
                let body = SecuredEnvelope.sign(payload: inner, nonce: 11001, key: FleetKey.firmwareDefault).jsonBody
                bodies = [("BENCH", Array(body.utf8))]
            }
            let key = EnvelopeKey(FleetKey.firmwareDefault)
            var packets = 0
            var phases = [Duration](repeating: .zero, count: 3)
            let clock = ContinuousClock()
            let total = clock.measure {
                for _ in 0..<iterations {
                    var states = [String: DeviceStreamState]()
                    for (device, body) in bodies {
                        let start = clock.now
                        guard let envelope = try? SecuredEnvelope(parsing: body), (try? envelope.verify(key: key)) != nil
                        else { continue }
                        let verified = clock.now
                        guard let upload = try? UploadPayload(parsing: envelope.payload) else { continue }
                        let parsed = clock.now
                        packets +=
                            DeviceStreamDecoder.decode(
                                upload,
                                arrivalMs: 1_764_300_015_000,
                                state: &states[device, default: DeviceStreamState()]
                            ).packets.count
                        let done = clock.now
                        phases[0] += verified - start
                        phases[1] += parsed - verified
                        phases[2] += done - parsed
                    }
                }
            }
            let uploads = Double(iterations * bodies.count)
            func micros(_ duration: Duration) -> String {
                String(format: "%.2f", Double(duration.components.attoseconds) / 1e12 / uploads + Double(duration.components.seconds) * 1e6 / uploads)
            }
            print("uploads: \(Int(uploads)), packets: \(packets), total: \(total)")
            print(
                "per upload: \(micros(total)) µs (envelope+HMAC \(micros(phases[0])) µs, inner JSON \(micros(phases[1])) µs, decode \(micros(phases[2])) µs)"
            )
        }
    }

    struct Seed: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "seed",
            abstract: "Pre-fill a (stopped) server's database with bench devices, their commands and configuration changes.",
            discussion: """
                Devices are BENCH-0 … BENCH-(n-1), as in scripts/wrk-device-requests.lua. Each is stored as a verified \
                device bound to --address, as if it had just uploaded from there (commands are dispatched to, and results, \
                acknowledgements and OTA reports taken from, a device's bound address only). Commands are pending (for \
                the dispatching-poll benchmark) or, with --dispatched, sent and awaiting their result, with the ids \
                BENCH-<device>-<round>.
                """
        )

        @Option(help: "Database directory.") var dataDir: String
        @Option(help: "Number of devices.") var devices = 4000
        @Option(help: "Commands per device.") var commands = 0
        @Flag(help: "Store the commands as dispatched (awaiting their results).") var dispatched = false
        @Flag(help: "Give every device a delivered configuration change awaiting its acknowledgement.") var pendingConfigs = false
        @Option(help: "The address the devices' requests come from.") var address = "127.0.0.1"

        func run() async throws {
            let database = try EcoWattDatabase(path: EcoWattDatabase.path(inDirectory: dataDir))
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            try await database.seedBench(
                devices: devices,
                commands: commands,
                dispatched: dispatched,
                pendingConfigs: pendingConfigs,
                address: address,
                nowMs: now
            )
            try database.close()
            var parts = ["\(devices) devices"]
            if commands > 0 { parts.append("\(devices * commands) \(dispatched ? "dispatched" : "pending") commands") }
            if pendingConfigs { parts.append("\(devices) configuration changes awaiting acknowledgement") }
            print("seeded " + parts.joined(separator: ", "))
        }
    }

    struct MakeUploads: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "make-uploads",
            abstract: "Write pre-signed uploads for wrk (scripts/wrk-uploads.lua): one 'path<TAB>body' line each.",
            discussion: "Line i is device i % devices, round i / devices (nonce 11001 + round), so per-device order holds."
        )

        @Option(help: "Number of simulated devices.") var devices = 2000
        @Option(help: "Uploads per device.") var rounds = 60
        @Option(help: "Output file.") var out: String

        func run() throws {
            guard let stream = OutputStream(toFileAtPath: out, append: false) else { throw ValidationError("cannot write \(out)") }
            stream.open()
            defer { stream.close() }
            for round in 0..<rounds {
                for index in 0..<devices {
                    let device = "BENCH-\(index)"
                    let inner = Array(BenchCommand.exampleInner(device: device, round: round).utf8)
                    let body = SecuredEnvelope.sign(payload: inner, nonce: UInt32(11001 + round), key: FleetKey.firmwareDefault)
                        .jsonBody
                    let line = Array("/aggregated/\(device)\t\(body)\n".utf8)
                    _ = line.withUnsafeBufferPointer { stream.write($0.baseAddress!, maxLength: $0.count) }
                }
            }
            print("wrote \(devices * rounds) uploads to \(out)")
        }
    }
}
