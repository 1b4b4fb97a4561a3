import ArgumentParser
import EcoWattProtocol
import EcoWattSimulator
import FirmwareImage
import Foundation

/// `ecowatt simulate`: a fleet of simulated devices that speak the firmware protocol.
struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Run N simulated EcoWatt devices against a server (uploads, commands, config, energy, OTA).",
        discussion: """
            Each device behaves like firmware 1.3.4: the boot sequence (GET /ota/status, POST /devices, \
            POST /ota/{id}/complete, POST /config/{id}/current), sensor reads of a simulated inverter, the firmware's \
            compression (smart selection with its temporal state), sample-major batches of up to 8 packets with the \
            189-byte base64 cut, HMAC-signed envelopes with a persisted nonce counter, command polling and results, \
            config polling and acknowledgement, energy reports, and OTA check, download, verification and reboot when \
            the server offers an update.

            Intervals are device seconds; --speed 10 runs everything ten times faster (device clocks too). The first \
            Ctrl-C ends the run gracefully, a second one at once. The exit status is 1 when an upload was rejected or \
            a request failed.
            """
    )

    @Option(help: "Server URL.") var url = "http://127.0.0.1:5001"
    @Option(help: "Number of devices.") var devices = 10
    @Option(help: "Run time in real seconds.") var duration: Double = 60
    @Option(help: "Device seconds per real second (faster than real time).") var speed: Double = 1
    @Option(help: "Sensor poll period, device seconds.") var pollInterval: Double = 5
    @Option(help: "Upload period, device seconds.") var uploadInterval: Double = 15
    @Option(help: "Config poll period, device seconds.") var configInterval: Double = 5
    @Option(help: "Command poll period, device seconds.") var commandInterval: Double = 10
    @Option(help: "OTA check period, device seconds.") var otaInterval: Double = 6000
    @Option(help: "Energy report period, device seconds.") var energyInterval: Double = 300
    @Option(help: "Registers read at boot (comma-separated firmware names).")
    var registers = "Vac1,Iac1,Ipv1,Ipv2,Temp,Pac"
    @Option(help: "Upload HMAC key, 64 hex digits (default: the firmware fleet key).") var key: String?
    @Option(help: "Device id prefix; ids are <prefix>001, <prefix>002, …") var idPrefix = "ESP32_SIM_"
    @Option(help: "Firmware version the devices run at first boot.") var firmwareVersion = "1.3.4"
    @Option(help: "Keys directory with the AES key and public key the devices trust (OTA is off without it).")
    var keysDir = "./keys"
    @Option(help: "File keeping each device's last nonce across runs (the device's NVS).")
    var nonceFile = ".ecowatt-simulator-nonces.json"
    @Option(help: "Real seconds over which device boots are spread (default: one upload period).") var rampUp: Double?
    @Option(help: "Probability (0–1) that a sensor read hits a Modbus fault, reported to POST /fault/recovery.")
    var modbusFaultRate = 0.0
    @Option(help: "Seed of the simulated inverters.") var seed: UInt64 = 1
    @Option(help: "Share (0–1) of devices whose downloaded image fails verification (for rollouts).")
    var otaFailVerification = 0.0
    @Option(help: "Share (0–1) of devices that install an update and boot back into the previous image.")
    var otaRollback = 0.0
    @Option(help: "Share (0–1) of devices that boot an update and reboot three times within seconds, then stay silent.")
    var otaBootLoop = 0.0
    @Option(help: "Share (0–1) of devices that boot an update and never upload again.")
    var otaSilentAfterInstall = 0.0
    @Option(help: "Device seconds after each boot until NTP syncs (before: millis() stamps and uptime). 0: at boot.")
    var ntpDelay: Double = 0
    @Option(help: "Device seconds each Modbus read takes (the sensor period is the poll interval plus this).")
    var modbusReadTime: Double = 0.15
    @Flag(help: "After the run, read every device's samples back (operator token from --keys-dir) and count those stored exactly.")
    var verify = false
    @Option(help: "Also write the final report as JSON to this file.") var reportJSON: String?

    func run() async throws {
        var options = SimulationOptions(baseURL: url)
        options.devices = devices
        options.duration = duration
        options.speed = speed
        options.intervals.poll = pollInterval
        options.intervals.upload = uploadInterval
        options.intervals.config = configInterval
        options.intervals.command = commandInterval
        options.intervals.ota = otaInterval
        options.intervals.energy = energyInterval
        options.registers = try registers.split(separator: ",").map {
            let name = $0.trimmingCharacters(in: .whitespaces)
            guard let register = Register(name: name) else {
                throw ValidationError("unknown register \(name); use Vac1, Iac1, Fac1, Vpv1, Vpv2, Ipv1, Ipv2, Temp, Pow, Pac")
            }
            return register
        }
        if let key {
            guard let bytes = HexCoding.decode(key), bytes.count == 32 else {
                throw ValidationError("--key must be 64 hex digits")
            }
            options.uploadKey = .init(data: bytes)
        }
        options.idPrefix = idPrefix
        options.firmwareVersion = firmwareVersion
        options.nonceFile = URL(fileURLWithPath: nonceFile)
        options.rampUp = rampUp
        options.seed = seed
        guard (0...1).contains(modbusFaultRate) else { throw ValidationError("--modbus-fault-rate must be in 0...1") }
        options.modbusFaultRate = modbusFaultRate
        options.updateFaults.verificationFailure = otaFailVerification
        options.updateFaults.rollback = otaRollback
        options.updateFaults.bootLoop = otaBootLoop
        options.updateFaults.silentAfterInstall = otaSilentAfterInstall
        let shares = [otaFailVerification, otaRollback, otaBootLoop, otaSilentAfterInstall]
        guard shares.allSatisfy((0...1).contains), options.updateFaults.total <= 1 else {
            throw ValidationError("the --ota-* shares must be in 0...1 and add up to at most 1")
        }
        guard ntpDelay >= 0, modbusReadTime >= 0 else { throw ValidationError("--ntp-delay and --modbus-read-time must be ≥ 0") }
        options.ntpDelay = ntpDelay
        options.modbusReadTime = modbusReadTime
        if verify {
            let tokenPath = (keysDir as NSString).appendingPathComponent("operator_token")
            guard let token = try? String(contentsOfFile: tokenPath, encoding: .utf8) else {
                throw ValidationError("--verify reads the operator token from \(tokenPath), which is not readable")
            }
            options.operatorToken = token.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        do {
            options.firmwareKeys = try FirmwareKeys(directory: keysDir)
        } catch {
            FileHandle.standardError.write(Data("note: no FOTA keys in \(keysDir) (\(error)); OTA checks are off\n".utf8))
        }
        let simulator: FleetSimulator
        do {
            simulator = try FleetSimulator(options: options)
        } catch {
            throw ValidationError("\(error)")
        }
        // Unbuffered, so that it comes before the progress lines on stderr.
        FileHandle.standardOutput.write(
            Data("simulating \(devices) devices against \(url) for \(duration) s at \(speed)× real time\n".utf8)
        )
        // The first Ctrl-C ends the run gracefully (devices finish what they are doing), a second one at once; the report
        // is printed and the nonces saved either way.
        signal(SIGINT, SIG_IGN)
        let stop = SimulationStop()
        let run = Task { try await simulator.run(stop: stop, progress: Self.printProgress) }
        let interrupt = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        interrupt.setEventHandler {
            if stop.isRequested { run.cancel() } else { stop.request() }
        }
        interrupt.resume()
        let report = try await run.value
        interrupt.cancel()
        if isatty(STDERR_FILENO) != 0 { FileHandle.standardError.write(Data("\n".utf8)) }
        print(report.rendered())
        if let reportJSON {
            try Data(report.json.serialized.utf8).write(to: URL(fileURLWithPath: reportJSON), options: .atomic)
        }
        if !report.isClean { throw ExitCode.failure }
    }

    /// A live line on a terminal; one line every 5 s in logs.
    @Sendable static func printProgress(_ progress: FleetSimulator.Progress) {
        let report = progress.report
        let line = String(
            format: "[%5.1f/%.0f s] %d requests, uploads %d ok / %d rejected, commands %d, OTA %d/%d, errors %d",
            progress.elapsedSeconds,
            progress.durationSeconds,
            report.totalRequests,
            report.uploadsAccepted,
            report.uploadsRejected,
            report.commands.count,
            report.firmwareUpdates.filter { $0.failure == nil }.count,
            report.firmwareUpdates.count,
            report.errors.values.reduce(0, +)
        )
        if isatty(STDERR_FILENO) != 0 {
            FileHandle.standardError.write(Data("\r\(line)\u{1B}[K".utf8))
        } else if Int(progress.elapsedSeconds.rounded()) % 5 == 0 {
            FileHandle.standardError.write(Data("\(line)\n".utf8))
        }
    }
}
