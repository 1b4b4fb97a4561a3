import AsyncHTTPClient
import EcoWattProtocol
import FirmwareImage
import Foundation
import NIOHTTP1

/// Firmware updates (spec §7).
extension SimulatedDevice {
    // MARK: - FOTA (spec §7.1)

    func progress(_ phase: String, _ percent: Int, _ message: String) async {
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
        let fault = updateFaults.way(for: id)
        do {
            try receiver.verify(publicKey: keys.publicKey)
            if fault == .verificationFailure { throw SimulatedUpdateFault(way: .verificationFailure) }
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
        if fault == .rollback {
            outcome.failure = "simulated rollback"
            bootStatus = "rolled_back"
            await boot()
            return
        }
        runningVersion = receiver.version
        await boot()
        switch fault {
        case .bootLoop:
            outcome.failure = "simulated boot loop"
            for _ in 0..<3 {
                try? await clock.sleep(deviceSeconds: 5)
                await boot()
            }
            silent = true
        case .silentAfterInstall:
            outcome.failure = "simulated silence after install"
            silent = true
        case .verificationFailure, .rollback, nil: break
        }
    }
}

/// An update fault the simulator was told to play (``UpdateFaults``).
struct SimulatedUpdateFault: Error, CustomStringConvertible {
    let way: UpdateFaults.Way
    var description: String { "simulated \(way.rawValue)" }
}
