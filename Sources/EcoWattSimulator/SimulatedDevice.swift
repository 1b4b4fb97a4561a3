import AsyncHTTPClient
import EcoWattProtocol
import FirmwareImage
import Foundation
import NIOHTTP1

/// One simulated EcoWatt device: the firmware's boot sequence and its six periodic tasks (spec §0.7), run one at a
/// time as the firmware's WiFi mutex serialises them, each waiting a full period before its first run.
///
/// RAM state (the 50-sample ring, the 20-packet upload ring, the encoder's temporal state) is lost at every reboot; the
/// nonce counter, the register set and the intervals survive it, as they live in NVS on the device.
struct SimulatedDevice {
    enum Job: CaseIterable { case sensor, upload, config, command, energy, ota }

    /// A reading and when it was taken (device time), kept to check afterwards what the server stored.
    struct Reading: Sendable {
        var values: [UInt16]
        var layout: [Int]
        var timeMs: Int64
        /// The server can place this reading only by its own clock: taken before NTP synced (spec §0.6), or in the
        /// batch after one stamped before the sync (the server spreads its samples from that estimated stamp).
        var placedByServerClock = false
    }

    let id: String
    let connection: DeviceConnection
    let clock: SimulationClock
    let statistics: SimulationStatistics
    let nonces: NonceStore
    let uploadKey: EnvelopeKey
    let firmwareKeys: FirmwareKeys?

    var intervals: DeviceIntervals
    var layout: [Int]
    var runningVersion: String
    var model: InverterModel
    /// Modbus faults: probability per read and their own generator (so they do not change the readings).
    let modbusFaultRate: Double
    var faults: SplitMix64
    var powerManagementEnabled = false
    var techniques = 8

    /// Register set received from the server, applied after the next successful upload (spec §5.3).
    var pendingLayout: [Int]?
    var configChangePending = false
    /// What `POST /ota/{id}/complete` reports at the next boot.
    var bootStatus = "success"
    /// Update faults to play, and whether one left the device silent (it stops every task).
    let updateFaults: UpdateFaults
    var silent = false

    /// NTP syncs this long after a boot; until then the device stamps with `millis()` and reports its uptime.
    let ntpDelayMs: Int64
    /// Each Modbus read takes this long: the sensor period is the poll interval plus it.
    let readMs: Int64
    /// Every reading, when the run checks what the server stored.
    var readings: [Reading]?

    // RAM, lost on reboot.
    var queue = FirmwareUploadQueue()
    var bootMs: Int64 = 0
    /// The last reading was stamped with `millis()`, and the batch after the last one compressed follows such a stamp.
    var lastStampUnsynced = false
    var batchFollowsUnsyncedStamp = false
    var due: [Job: Int64] = [:]

    init(
        id: String,
        options: SimulationOptions,
        connection: DeviceConnection,
        clock: SimulationClock,
        statistics: SimulationStatistics,
        nonces: NonceStore,
        seed: UInt64
    ) {
        self.id = id
        self.connection = connection
        self.clock = clock
        self.statistics = statistics
        self.nonces = nonces
        uploadKey = EnvelopeKey(options.uploadKey)
        firmwareKeys = options.firmwareKeys
        intervals = options.intervals
        layout = Set(options.registers.map(\.rawValue)).sorted()
        runningVersion = options.firmwareVersion
        model = InverterModel(seed: seed)
        modbusFaultRate = options.modbusFaultRate
        ntpDelayMs = Int64(options.ntpDelay * 1000)
        readMs = Int64(options.modbusReadTime * 1000)
        readings = options.operatorToken == nil ? nil : []
        faults = SplitMix64(seed: seed ^ 0x5EED_FA17)
        updateFaults = options.updateFaults
    }

    // MARK: - Scheduling

    func period(_ job: Job) -> Double {
        switch job {
        case .sensor: intervals.poll
        case .upload: intervals.upload
        case .config: intervals.config
        case .command: intervals.command
        case .energy: intervals.energy
        case .ota: intervals.ota
        }
    }

    mutating func schedule(_ job: Job, after extraMs: Int64 = 0) {
        due[job] = clock.nowMs + extraMs + Int64(max(period(job), 0.05) * 1000)
    }

    /// Boots, then runs the tasks until `end` or a stop request (a task already started is finished, so no command is
    /// left executed but unreported and no upload half done).
    mutating func run(until end: ContinuousClock.Instant, stop: SimulationStop) async {
        await boot()
        defer {
            let unsent = queue.samplesWaiting
            statistics.update { $0.samplesUnsent += unsent }
        }
        while !Task.isCancelled, !stop.isRequested {
            guard let (job, deviceMs) = due.min(by: { $0.value < $1.value }) else { return }
            let wake = clock.instant(atDeviceMs: deviceMs)
            if wake >= end { return }
            // Sleep in slices of at most 0.5 s so that a stop request ends an idle device promptly.
            while ContinuousClock.now < wake {
                if stop.isRequested { return }
                do { try await Task.sleep(until: min(wake, .now + .milliseconds(500)), clock: .continuous) } catch {
                    return
                }
            }
            switch job {
            case .sensor:
                await readSensors()
                schedule(.sensor, after: readMs)  // the next wait starts when the read is done
                continue
            case .upload: await upload()
            case .config: await pollConfig()
            case .command: await pollCommand()
            case .energy: await reportEnergy()
            case .ota: await checkFirmware()
            }
            if silent { return }
            if job != .ota || due[.ota] == deviceMs { schedule(job) }
        }
    }

    // MARK: - Boot (spec §0.7, §1.1 A–D)

    /// NTP has synced (spec §0.6).
    var synced: Bool { clock.nowMs - bootMs >= ntpDelayMs }
    /// `millis()` at device time `ms`: 32 bits since boot.
    func millis(_ ms: Int64) -> Int64 { (ms - bootMs) & 0xFFFF_FFFF }
    /// The "Unix seconds" fields: epoch seconds, or seconds since boot before NTP (spec §0.6).
    var seconds: Int64 { (synced ? clock.nowMs : millis(clock.nowMs)) / 1000 }

    mutating func boot() async {
        // RAM is lost: readings not uploaded before the reboot are gone.
        let unsent = queue.samplesWaiting
        statistics.update {
            $0.boots += 1
            $0.samplesUnsent += unsent
        }
        queue = FirmwareUploadQueue()
        bootMs = clock.nowMs
        (lastStampUnsynced, batchFollowsUnsyncedStamp) = (false, false)
        if let pendingLayout {
            layout = pendingLayout
            self.pendingLayout = nil
        }
        configChangePending = false

        let selfTest = await connection.send(
            .GET,
            "/ota/status",
            route: "GET /ota/status",
            timeoutSeconds: 5,
            accepted: [200]
        )
        if selfTest?.status == 200 {
            let registration: JSONValue = .object([
                ("device_id", .string(id)), ("device_name", "EcoWatt Smart Monitor"),
                ("firmware_version", .string(runningVersion)), ("location", "Default Location"),
                ("description", "EcoWatt Energy Monitor"),
            ])
            _ = await connection.send(
                .POST,
                "/devices",
                route: "POST /devices",
                body: registration.serialized,
                timeoutSeconds: 10,
                accepted: Self.bootMessageStatuses.union([409])
            )
            var complete: [(String, JSONValue)] = [
                ("version", .string(runningVersion)), ("status", .string(bootStatus)), ("timestamp", .int(seconds)),
            ]
            if bootStatus == "rolled_back" {
                complete.append(("error_msg", "Firmware validation failed, rolled back to previous version"))
            }
            _ = await connection.send(
                .POST,
                "/ota/\(id)/complete",
                route: "POST /ota/{id}/complete",
                body: JSONValue.object(complete).serialized,
                timeoutSeconds: 30,
                accepted: Self.bootMessageStatuses
            )
        }
        bootStatus = "success"
        let report: JSONValue = .object([
            ("sampling_interval", .int(Int64(intervals.poll))), ("upload_interval", .int(Int64(intervals.upload))),
            ("config_poll_interval", .int(Int64(intervals.config))),
            ("command_poll_interval", .int(Int64(intervals.command))),
            ("firmware_check_interval", .int(Int64(intervals.ota))),
            ("energy_poll_interval", .int(Int64(intervals.energy))),
            (
                "power_management",
                .object([("enabled", .bool(powerManagementEnabled)), ("techniques", .int(Int64(techniques)))])
            ),
            ("compression_enabled", true), ("timestamp", .int(seconds)),
            ("registers", .array(layout.compactMap { Register(rawValue: $0).map { .string($0.name) } })),
        ])
        _ = await connection.send(
            .POST,
            "/config/\(id)/current",
            route: "POST /config/{id}/current",
            body: report.serialized,
            timeoutSeconds: 15,
            accepted: Self.bootMessageStatuses
        )
        for job in Job.allCases { schedule(job) }
    }

    /// Answers the firmware takes for its once-per-boot messages (it only logs them): applied (200/201), or held (202)
    /// until the device's first verified upload from this address confirms them (a first boot, a new address).
    static let bootMessageStatuses: Set<Int> = [200, 201, 202]

    // MARK: - Sensor and upload (spec §3.2, §3.6)

    mutating func readSensors() async {
        if modbusFaultRate > 0, Double.random(in: 0..<1, using: &faults) < modbusFaultRate {
            guard await recoverFromModbusFault() else { return }
        }
        let values = model.read(layout)
        // Taken after the read, in whole seconds × 1000 (of epoch time, or of millis() before NTP), cut to 32 bits.
        let takenMs = clock.nowMs + readMs
        let synced = synced
        let stamp = UInt32(truncatingIfNeeded: (synced ? takenMs : millis(takenMs)) / 1000 * 1000)
        let overwritten = queue.record(.init(values: values, layout: layout, timestamp: stamp))
        lastStampUnsynced = !synced
        readings?.append(
            Reading(values: values, layout: layout, timeMs: takenMs, placedByServerClock: !synced || batchFollowsUnsyncedStamp)
        )
        statistics.update {
            $0.samplesRead += 1
            $0.samplesOverwritten += overwritten
        }
    }

    mutating func upload() async {
        guard let (packet, dropped) = queue.batch() else { return }
        batchFollowsUnsyncedStamp = lastStampUnsynced
        statistics.update {
            $0.packetsCompressed += 1
            $0.packetsByMarker[HexCoding.byteLabel(packet.blob[0]), default: 0] += 1
            $0.packetsDropped += dropped.count
            $0.samplesDropped += dropped.reduce(0) { $0 + $1.sampleCount }
        }

        let drained = queue.drain()
        var delivered = false
        for attempt in 0..<2 where !delivered {
            if attempt == 1 { try? await clock.sleep(deviceSeconds: 0.3) }
            let inner = UploadBuilder.innerJSON(
                deviceID: id,
                timestamp: UInt64(max(0, seconds)),
                samplingInterval: Int(intervals.poll),
                packets: drained
            )
            guard inner.utf8.count < UploadBuilder.maxInnerJSONBytes else {
                statistics.update { $0.uploadsFailedLocally += 1 }
                continue
            }
            let envelope = SecuredEnvelope.sign(payload: Array(inner.utf8), nonce: nonces.next(for: id), key: uploadKey)
            let reply = await connection.send(
                .POST,
                "/aggregated/\(id)",
                route: "POST /aggregated/{id}",
                body: envelope.jsonBody,
                timeoutSeconds: 15,
                accepted: [200]
            )
            if reply?.status == 200 {
                delivered = true
            } else if reply != nil {
                statistics.update { $0.uploadsRejected += 1 }
            }
        }
        guard delivered else {
            // Pushed back behind the packets that were not drained (this reorders them, as on the device).
            let dropped = queue.pushBack(drained)
            statistics.update {
                $0.packetsDropped += dropped.count
                $0.samplesDropped += dropped.reduce(0) { $0 + $1.sampleCount }
            }
            return
        }
        statistics.update {
            $0.uploadsAccepted += 1
            $0.packetsUploaded += drained.count
            $0.packetsPerUpload[drained.count, default: 0] += 1
            $0.samplesUploaded += drained.reduce(0) { $0 + $1.sampleCount }
        }
        if configChangePending {
            configChangePending = false
            if let pendingLayout {
                layout = pendingLayout
                self.pendingLayout = nil
            }
        }
    }

    /// A Modbus fault, up to 3 re-reads, and the event the firmware posts (spec §6.2). Returns whether a read succeeded.
    mutating func recoverFromModbusFault() async -> Bool {
        let kinds = ["timeout", "crc_error", "truncated_payload", "garbage_data", "buffer_overflow", "modbus_exception"]
        let kind = kinds.randomElement(using: &faults)!
        let retries = Int.random(in: 1...3, using: &faults)
        let recovered = retries < 3 || Bool.random(using: &faults)
        let details =
            recovered
            ? "\(kind) detected and recovered after \(retries) retries"
            : "\(kind) detected, recovery FAILED after 3 retries"
        let event: JSONValue = .object([
            ("device_id", .string(id)), ("timestamp", .int(seconds)), ("fault_type", .string(kind)),
            ("recovery_action", "retry_read"), ("success", .bool(recovered)), ("details", .string(details)),
            ("retry_count", .int(Int64(retries))),
        ])
        _ = await connection.send(
            .POST,
            "/fault/recovery",
            route: "POST /fault/recovery",
            body: event.serialized,
            timeoutSeconds: 5
        )
        statistics.update {
            if recovered { $0.faultsRecovered += 1 } else { $0.faultsFailed += 1 }
        }
        return recovered
    }
}
