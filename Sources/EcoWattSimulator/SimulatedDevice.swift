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

    struct Sample {
        var values: [UInt16]
        var layout: [Int]
        var timestamp: UInt32
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
    private var pendingLayout: [Int]?
    private var configChangePending = false
    /// What `POST /ota/{id}/complete` reports at the next boot.
    private var bootStatus = "success"

    // RAM, lost on reboot.
    private var samples: [Sample] = []
    private var newSample = false
    private var packets: [UploadBuilder.Packet] = []
    private var compressor = SmartCompressor()
    private var bootMs: Int64 = 0
    private var due: [Job: Int64] = [:]

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
        faults = SplitMix64(seed: seed ^ 0x5EED_FA17)
    }

    // MARK: - Scheduling

    private func period(_ job: Job) -> Double {
        switch job {
        case .sensor: intervals.poll
        case .upload: intervals.upload
        case .config: intervals.config
        case .command: intervals.command
        case .energy: intervals.energy
        case .ota: intervals.ota
        }
    }

    private mutating func schedule(_ job: Job) {
        due[job] = clock.nowMs + Int64(max(period(job), 0.05) * 1000)
    }

    /// Boots, then runs the tasks until `end` or a stop request (a task already started is finished, so no command is
    /// left executed but unreported and no upload half done).
    mutating func run(until end: ContinuousClock.Instant, stop: SimulationStop) async {
        await boot()
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
            case .sensor: await readSensors()
            case .upload: await upload()
            case .config: await pollConfig()
            case .command: await pollCommand()
            case .energy: await reportEnergy()
            case .ota: await checkFirmware()
            }
            if job != .ota || due[.ota] == deviceMs { schedule(job) }
        }
    }

    // MARK: - Boot (spec §0.7, §1.1 A–D)

    private var seconds: Int64 { clock.nowMs / 1000 }

    mutating func boot() async {
        statistics.update { $0.boots += 1 }
        samples = []
        packets = []
        newSample = false
        compressor = SmartCompressor()
        bootMs = clock.nowMs
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
        // Taken after the read, in whole seconds × 1000, cut to 32 bits.
        let timestamp = UInt32(truncatingIfNeeded: clock.nowMs / 1000 * 1000)
        samples.append(Sample(values: values, layout: layout, timestamp: timestamp))
        if samples.count > 50 { samples.removeFirst() }
        newSample = true
        statistics.update { $0.samplesRead += 1 }
    }

    mutating func upload() async {
        guard newSample, let first = samples.first else { return }
        newSample = false
        let batch = samples
        samples = []
        let values = batch.flatMap(\.values)
        let selection = (0..<values.count).map { first.layout[$0 % first.layout.count] }
        let blob = compressor.compress(values, selection: selection)
        packets.append(
            .init(blob: blob, registerLayout: first.layout, sampleCount: batch.count, timestamp: batch.last!.timestamp)
        )
        var dropped = 0
        if packets.count > 20 {
            packets.removeFirst()
            dropped = 1
        }
        statistics.update {
            $0.packetsCompressed += 1
            $0.packetsByMarker[HexCoding.byteLabel(blob[0]), default: 0] += 1
            $0.packetsDropped += dropped
        }

        let drained = Array(packets.prefix(UploadBuilder.maxPacketsPerUpload))
        packets.removeFirst(drained.count)
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
            packets += drained
            if packets.count > 20 {
                let excess = packets.count - 20
                packets.removeFirst(excess)
                statistics.update { $0.packetsDropped += excess }
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

    // MARK: - Commands (spec §4)

    mutating func pollCommand() async {
        guard
            let reply = await connection.send(
                .GET,
                "/commands/\(id)/poll",
                route: "GET /commands/{id}/poll",
                timeoutSeconds: 6,
                accepted: [200],
                pool: ArduinoJSONPool.commandPoll
            ),
            reply.status == 200, let json = reply.json, json["commands"] != nil,
            let count = json["count"]?.intValue, count > 0,
            let first = json["commands"]?.arrayValue?.first
        else { return }
        let commandID = first["command_id"]?.stringValue ?? ""
        guard let command = first["command"], command.isObject else { return }
        let action = command["action"]?.stringValue ?? ""
        let status = execute(action: action, command: command) ? "success" : "failed"
        let result: JSONValue = .object([
            (
                "command_result",
                .object([
                    ("command_id", .string(commandID)), ("status", .string(status)),
                    ("executed_at", .string(EpochTime.iso8601(seconds: seconds))),
                ])
            )
        ])
        let answer = await connection.send(
            .POST,
            "/commands/\(id)/result",
            route: "POST /commands/{id}/result",
            body: result.serialized,
            timeoutSeconds: 5,
            accepted: [200]
        )
        let executed = ExecutedCommand(
            deviceID: id,
            commandID: commandID,
            action: action,
            status: status,
            reported: answer?.status == 200
        )
        statistics.update { $0.commands.append(executed) }
    }

    /// The firmware's `CommandExecutor` against the simulated inverter (only register 8, `Pow`, changes anything).
    mutating func execute(action: String, command: JSONValue) -> Bool {
        let value = command["value"]?.intValue ?? 0
        switch action {
        case "write_register":
            var address = command["register_address"]?.intValue ?? -1
            if address < 0 {
                // atoi(target_register): a leading number, "0" allowed; a name without an address fails.
                let digits = (command["target_register"]?.stringValue ?? "").prefix { $0.isNumber }
                guard let parsed = Int64(digits) else { return false }
                address = parsed
            }
            if UInt16(truncatingIfNeeded: address) == 8 { model.exportLimit = UInt16(truncatingIfNeeded: value) }
            return true
        case "set_power":
            model.exportLimit = UInt16(min(max(value * 100 / 10000, 0), 100))
            return true
        case "set_power_percentage":
            model.exportLimit = UInt16(min(max(value, 0), 100))
            return true
        case "get_power_stats", "get_peripheral_stats", "reset_power_stats", "reset_peripheral_stats":
            return true
        default:
            return false
        }
    }

    // MARK: - Remote configuration (spec §5)

    mutating func pollConfig() async {
        // The firmware parses the body whatever the status.
        guard
            let reply = await connection.send(
                .GET,
                "/config/\(id)",
                route: "GET /config/{id}",
                timeoutSeconds: 15,
                accepted: [200],
                pool: ArduinoJSONPool.config
            ),
            let json = reply.json, json["is_pending"] == .bool(true),
            let pending = json["pending_config"], pending.isObject
        else { return }
        let document = pending["config_update"].flatMap { $0.isObject ? $0 : nil } ?? pending
        var changes = 0
        func interval(_ key: String) -> Double? {
            guard let field = document[key] else { return nil }
            // as<uint32_t>(): floats truncate, numeric strings parse, anything else is 0.
            if let number = field.doubleValue { return number < 0 ? 0 : Double(UInt32(min(number, 4e9))) }
            if let text = field.stringValue { return Double(UInt32(text) ?? 0) }
            return 0
        }
        func apply(_ key: String, _ job: Job, _ path: WritableKeyPath<DeviceIntervals, Double>) {
            guard let seconds = interval(key), seconds != intervals[keyPath: path] else { return }
            if key == "energy_poll_interval", seconds < 5 { return }  // the firmware rejects it silently
            guard seconds > 0 else {
                // The firmware would write 0 to its timer (a busy loop); the simulator refuses it and reports it.
                statistics.update {
                    $0.errors["GET /config/{id}: \(key)=\(Int(seconds)) would stall the firmware; not applied", default: 0] += 1
                }
                return
            }
            intervals[keyPath: path] = seconds
            changes += 1
            schedule(job)
        }
        apply("sampling_interval", .sensor, \.poll)
        apply("upload_interval", .upload, \.upload)
        apply("config_poll_interval", .config, \.config)
        apply("command_poll_interval", .command, \.command)
        apply("firmware_check_interval", .ota, \.ota)
        apply("energy_poll_interval", .energy, \.energy)
        if let names = document["registers"]?.arrayValue {
            let matched = Set(names.compactMap { $0.stringValue.flatMap(Register.init(name:))?.rawValue })
            if !matched.isEmpty {
                pendingLayout = matched.sorted()
                changes += 1  // always counted as a change (spec §5.2)
            }
        }
        if let power = document["power_management"], power.isObject {
            if let enabled = power["enabled"]?.boolValue, enabled != powerManagementEnabled {
                powerManagementEnabled = enabled
                changes += 1
            }
            if let value = power["techniques"]?.intValue, Int(value) != techniques {
                techniques = Int(value)
                changes += 1
            }
        }
        guard changes > 0 else { return }
        configChangePending = true
        let acknowledgement: JSONValue = .object([
            ("status", "applied"), ("timestamp", .int(seconds)), ("error_msg", "Configuration updated successfully"),
            (
                "power_management",
                .object([
                    ("enabled", .bool(powerManagementEnabled)), ("techniques", .int(Int64(techniques))),
                    ("energy_poll_freq", .int(Int64(UInt32(truncatingIfNeeded: Int64(intervals.energy * 1_000_000))))),
                ])
            ),
        ])
        _ = await connection.send(
            .POST,
            "/config/\(id)/acknowledge",
            route: "POST /config/{id}/acknowledge",
            body: acknowledgement.serialized,
            timeoutSeconds: 15,
            accepted: [200]
        )
        statistics.update { $0.configsApplied += 1 }
    }

    // MARK: - Energy report (spec §6.1)

    mutating func reportEnergy() async {
        let uptime = UInt32(truncatingIfNeeded: clock.nowMs - bootMs)
        let current = 140 + Double(model.exportLimit) / 10
        let saved = powerManagementEnabled ? Double(uptime) / 3_600_000 * 12 : 0
        let body =
            #"{"device_id":"\#(id)","timestamp":\#(clock.nowMs),"power_management":{"enabled":\#(powerManagementEnabled),"#
            + #""techniques":"0x\#(String(format: "%02X", techniques))","avg_current_ma":\#(String(format: "%.2f", current)),"#
            + #""energy_saved_mah":\#(String(format: "%.2f", saved)),"peripheral_savings_mah":\#(String(format: "%.2f", saved / 2)),"#
            + #""uptime_ms":\#(uptime),"high_perf_ms":\#(uptime / 10),"normal_ms":\#(uptime - uptime / 10),"low_power_ms":0,"sleep_ms":0}}"#
        let reply = await connection.send(
            .POST,
            "/power/energy/\(id)",
            route: "POST /power/energy/{id}",
            body: body,
            timeoutSeconds: 10
        )
        if let reply, reply.status == 200 || reply.status == 201 { statistics.update { $0.energyReports += 1 } }
    }

    // MARK: - FOTA (spec §7.1)

    private func progress(_ phase: String, _ percent: Int, _ message: String) async {
        let body: JSONValue = .object([
            ("phase", .string(phase)), ("progress", .int(Int64(percent))), ("message", .string(message)),
            ("timestamp", .int(seconds)),
        ])
        _ = await connection.send(
            .POST,
            "/ota/\(id)/progress",
            route: "POST /ota/{id}/progress",
            body: body.serialized,
            timeoutSeconds: 30
        )
    }

    mutating func checkFirmware() async {
        guard let keys = firmwareKeys else { return }
        guard
            let reply = await connection.send(
                .GET,
                "/ota/check/\(id)?version=\(runningVersion)",
                route: "GET /ota/check/{id}",
                timeoutSeconds: 30,
                accepted: [200],
                pool: ArduinoJSONPool.otaCheck
            ),
            reply.status == 200, let json = reply.json, json["update_available"] == .bool(true),
            let info = json["update_info"]
        else { return }
        let offered = clock.elapsedSeconds
        var outcome = FirmwareUpdateOutcome(
            deviceID: id,
            fromVersion: runningVersion,
            toVersion: info["latest_version"]?.stringValue ?? "?",
            failure: nil,
            chunks: 0,
            seconds: 0
        )
        defer {
            outcome.seconds = clock.elapsedSeconds - offered
            statistics.update { [outcome] in $0.firmwareUpdates.append(outcome) }
        }
        var receiver: DeviceFirmwareReceiver
        do {
            receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
        } catch {
            outcome.failure = "\(error)"
            return
        }
        await progress("downloading", 0, "Starting firmware download...")
        guard
            let initiated = await connection.send(
                .POST,
                "/ota/initiate/\(id)",
                route: "POST /ota/initiate/{id}",
                body: JSONValue.object([("firmware_version", .string(receiver.version))]).serialized,
                timeoutSeconds: 30,
                pool: ArduinoJSONPool.otaInitiate
            ),
            initiated.status == 200 || initiated.status == 201, initiated.json?["success"] == .bool(true)
        else {
            outcome.failure = "initiate refused"
            return
        }
        var lastReportMs = clock.nowMs
        while !receiver.isComplete {
            let n = receiver.nextChunk
            let percent = (n + 1) * 100 / receiver.totalChunks
            let chunk = await connection.send(
                .GET,
                "/ota/chunk/\(id)?version=\(receiver.version)&chunk=\(n)",
                route: "GET /ota/chunk/{id}",
                timeoutSeconds: 30,
                accepted: [200],
                pool: ArduinoJSONPool.otaChunk
            )
            do {
                guard let chunk, chunk.status == 200, let json = chunk.json else {
                    throw DeviceFirmwareReceiver.Failure.chunk(n, "no 200 reply")
                }
                try receiver.receive(reply: json)
            } catch {
                await progress("failed", percent, "Download failed - will retry on next cycle")
                outcome.failure = "\(error)"
                return
            }
            outcome.chunks += 1
            if n % 50 == 0 || percent % 10 == 0 || clock.nowMs - lastReportMs > 5000 {
                await progress("downloading", percent, "Downloading chunk \(n + 1) of \(receiver.totalChunks)")
                lastReportMs = clock.nowMs
            }
        }
        await progress("download_complete", 100, "Download complete, verifying security...")
        await progress("verifying", 100, "Verifying firmware security...")
        do {
            try receiver.verify(publicKey: keys.publicKey)
        } catch {
            await progress("verification_failed", 0, "Security verification failed - Rolling back")
            outcome.failure = "\(error)"
            bootStatus = "rolled_back"
            await boot()
            return
        }
        await progress("verification_success", 100, "Security verification passed - Installing firmware")
        await progress("installing", 100, "Installing new firmware - Device will reboot")
        try? await clock.sleep(deviceSeconds: 2)
        runningVersion = receiver.version
        await boot()
    }
}
