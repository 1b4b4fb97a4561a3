import EcoWattProtocol
import EcoWattTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@testable import EcoWattSimulator

@Suite struct InverterModelTests {
    @Test func sameSeedReadsTheSameValues() {
        var first = InverterModel(seed: 42)
        var second = InverterModel(seed: 42)
        var other = InverterModel(seed: 43)
        let registers = [0, 1, 5, 6, 7, 9]
        let a = (0..<200).map { _ in first.read(registers) }
        let b = (0..<200).map { _ in second.read(registers) }
        let c = (0..<200).map { _ in other.read(registers) }
        #expect(a == b)
        #expect(a != c)
    }

    @Test func valuesStayAroundTheInverterOperatingPoint() {
        var model = InverterModel(seed: 7)
        var sawNight = false
        var sawDay = false
        for _ in 0..<5_000 {
            let all = model.read(Array(0..<10))
            #expect((2250...2350).contains(all[0]), "Vac1 \(all[0])")
            #expect((4990...5010).contains(all[2]), "Fac1 \(all[2])")
            #expect((3550...3650).contains(all[3]), "Vpv1 \(all[3])")
            #expect((340...670).contains(all[7]), "Temp \(all[7])")
            #expect(all[8] == 100, "Pow is the export limit")
            #expect(all[9] <= 1300, "Pac \(all[9])")
            if all[5] == 0 && all[9] == 0 { sawNight = true }
            if all[9] > 1000 { sawDay = true }
        }
        #expect(sawNight && sawDay)
    }

    @Test func exportLimitDrivesPowerAndThePowRegister() {
        var model = InverterModel(seed: 3)
        model.exportLimit = 50
        let readings = (0..<300).map { _ in model.read([8, 9]) }
        #expect(readings.allSatisfy { $0[0] == 50 })
        #expect(readings.allSatisfy { $0[1] <= 650 })
    }
}

@Suite struct NonceStoreTests {
    @Test func countersStartAtTheFirmwareValueAndSurviveARestart() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("nonces-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        let store = try NonceStore(file: file)
        #expect(store.next(for: "A") == 11001)
        #expect(store.next(for: "A") == 11002)
        #expect(store.next(for: "B") == 11001)
        try store.save()
        let reloaded = try NonceStore(file: file)
        #expect(reloaded.next(for: "A") == 11003)
        #expect(reloaded.next(for: "B") == 11002)
    }
}

@Suite struct FleetSimulatorTests {
    @Test func invalidOptionsAreRefused() {
        var options = SimulationOptions(baseURL: "http://127.0.0.1:1")
        options.devices = 0
        #expect(throws: SimulationError.self) { try FleetSimulator(options: options) }
        options.devices = 1
        options.speed = 0
        #expect(throws: SimulationError.self) { try FleetSimulator(options: options) }
        options.speed = 1
        #expect(throws: SimulationError.self) { try FleetSimulator(options: SimulationOptions(baseURL: "ftp://x")) }
        #expect(options.deviceID(0) == "ESP32_SIM_001")
        #expect(options.deviceID(1233) == "ESP32_SIM_1234")
    }

    /// No server: every request fails, the report says so, and packets pile up in the ring instead of being lost
    /// silently.
    @Test func unreachableServerIsReportedNotFatal() async throws {
        let port = LoopbackPort.free()
        var options = SimulationOptions(baseURL: "http://127.0.0.1:\(port)")
        options.devices = 2
        options.duration = 60  // ended by `stop` (a busy test process on 2 cores runs the devices slower)
        options.speed = 40
        options.rampUp = 0
        let latest = LatestReport()
        let stop = SimulationStop()
        let run = Task { try await FleetSimulator(options: options).run(stop: stop) { latest.set($0.report) } }
        try await latest.wait { $0.packetsCompressed >= 4 }
        stop.request()
        let report = try await run.value
        #expect(report.uploadsAccepted == 0)
        #expect(report.packetsCompressed > 0, "\(report.rendered())")
        #expect(report.requests["POST /aggregated/{id}"]?.transportErrors ?? 0 > 0)
        #expect(report.requests["GET /ota/status"]?.transportErrors == 2)
        #expect(!report.isClean)
        #expect(report.rendered().contains("POST /aggregated/{id}"))
        // Without keys no device checks for firmware: the report says so instead of "0 downloads".
        #expect(report.rendered().contains("no firmware check was due in this run"), "\(report.rendered())")
        #expect(report.json["clean"] == .bool(false))
        #expect(report.json["routes"]?["GET /ota/status"]?["transport_errors"] == .int(2))
    }
}

/// The simulator against a stand-in server with Flask-era replies: what a real device would reject, it rejects.
@Suite struct DeviceCompatibilityTests {
    /// A poll reply carrying two Flask-style commands needs more than the firmware's 512-byte pool: the device cannot
    /// parse it and executes nothing. The report names the route and the pool.
    @Test func pollRepliesThatOverflowTheDevicePoolAreReported() async throws {
        let router = Router()
        router.get("/ota/status") { _, _ in "{}" }
        router.post("/devices") { _, _ in Response(status: .created) }
        router.post("/ota/:id/complete") { _, _ in "{}" }
        router.post("/config/:id/current") { _, _ in "{}" }
        router.get("/config/:id") { _, _ in #"{"is_pending":false}"# }
        router.post("/aggregated/:id") { _, _ in #"{"success":true}"# }
        let command: @Sendable (String) -> String = { id in
            #"{"command_id":"\#(id)","command":{"action":"set_power","target_register":"export_power","value":5000,"register_address":8,"register_name":"export_power"}}"#
        }
        router.get("/commands/:id/poll") { _, _ in
            #"{"success":true,"device_id":"ESP32_SIM_001","commands":[\#(command("0b6f7a52-0f1e-4c5e-9d3a-1f2b3c4d5e6f")),\#(command("7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"))],"count":2}"#
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            var options = SimulationOptions(baseURL: "http://127.0.0.1:\(try #require(client.port))")
            options.devices = 1
            options.duration = 60  // ended by `stop` once a poll and an upload happened
            options.speed = 20
            options.rampUp = 0
            options.intervals.command = 5
            let latest = LatestReport()
            let stop = SimulationStop()
            let run = Task { try await FleetSimulator(options: options).run(stop: stop) { latest.set($0.report) } }
            try await latest.wait { ($0.requests["GET /commands/{id}/poll"]?.total ?? 0) >= 2 && $0.uploadsAccepted > 0 }
            stop.request()
            let report = try await run.value
            #expect(report.commands.isEmpty, "nothing executed from an unparsable reply")
            let overflow = report.errors.keys.filter { $0.hasPrefix("GET /commands/{id}/poll: reply needs") }
            #expect(overflow.count == 1, "\(report.errors)")
            #expect(overflow.first?.contains("of the device's 512 pool bytes") == true)
            #expect(report.uploadsAccepted > 0)
            #expect(!report.isClean)
        }
    }
}

@Suite struct SampleVerificationTests {
    typealias Stored = SampleVerification.Stored

    static func reading(at timeMs: Int64, _ value: UInt16, byServerClock: Bool) -> SimulatedDevice.Reading {
        SimulatedDevice.Reading(values: [value], layout: [0], timeMs: timeMs, placedByServerClock: byServerClock)
    }

    static func stored(at timeMs: Int64, _ value: UInt16, estimated: Bool = false) -> Stored {
        Stored(timeMs: timeMs, layout: [0], values: [value], approximate: false, estimated: estimated)
    }

    @Test func aReadingPlacedByTheServersClockMayBeOffByTheSkewEvenWhereItsTimeIsNotFlaggedEstimated() {
        // Stored 5.7 s early and flagged exact: spread between an estimated time and the first synced stamp.
        let outcome = SampleVerification.match(
            [Self.reading(at: 100_000, 7, byServerClock: true), Self.reading(at: 105_200, 8, byServerClock: false)],
            [Self.stored(at: 94_300, 7), Self.stored(at: 105_000, 8)],
            clockSkewMs: 10_000
        )
        #expect(outcome.exactly == 2)
        #expect(outcome.worstErrorMs == 200, "the error of a reading placed by the server's clock is not a timing error")
    }

    @Test func aReadingTheDeviceStampedGetsTheSkewOnlyForATimeTheServerFlagsEstimated() {
        let readings = [Self.reading(at: 100_000, 7, byServerClock: false), Self.reading(at: 110_000, 9, byServerClock: false)]
        let outcome = SampleVerification.match(
            readings,
            [Self.stored(at: 94_300, 7), Self.stored(at: 104_300, 9, estimated: true)],
            clockSkewMs: 10_000
        )
        #expect(outcome.exactly == 1, "5.7 s off and not estimated is a miss; estimated is within the skew")
        let withoutSkew = SampleVerification.match(readings, [Self.stored(at: 104_300, 9, estimated: true)], clockSkewMs: 0)
        #expect(withoutSkew.exactly == 0)
    }
}
