import ArgumentParser
import AsyncHTTPClient
import EcoWattProtocol
import FirmwareImage
import Foundation
import NIOCore
import NIOHTTP1

extension BenchCommand {
    /// `ecowatt bench ota-fleet`: many emulated devices download and verify a deployed image at once.
    struct OTAFleet: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ota-fleet",
            abstract: "Emulate N devices downloading a deployed firmware at once (check, initiate, chunks, verify, complete).",
            discussion: """
                Each device does exactly what the firmware does (spec §7.1): one connection per device, chunks in order,
                CBC chained across chunks, SHA-256 and PKCS#1 v1.5 verification with the public key from --keys-dir.
                Deploy the version to the device ids first (BENCH-OTA-0 … BENCH-OTA-<N-1>, or all devices).
                """
        )
        @Option(help: "Server URL.") var url = "http://127.0.0.1:5001"
        @Option(help: "Concurrent devices.") var devices = 200
        @Option(help: "Version the devices report running (must differ from the deployed one).") var running = "0.0.1"
        @Option(help: "Keys directory holding the AES key and public key the devices trust.") var keysDir = "./keys"

        struct DeviceResult: Sendable {
            var chunkLatenciesNs: [UInt64] = []
            var failure: String?
        }

        func run() async throws {
            let keys = try FirmwareKeys(directory: keysDir)
            var configuration = HTTPClient.Configuration()
            configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: devices)
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            let base = url.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            let start = ContinuousClock.now
            let results = await withTaskGroup(of: DeviceResult.self) { group in
                for index in 0..<devices {
                    group.addTask {
                        await Self.emulate(deviceID: "BENCH-OTA-\(index)", base: base, running: running, keys: keys, client: client)
                    }
                }
                var results: [DeviceResult] = []
                for await result in group { results.append(result) }
                return results
            }
            let elapsed = ContinuousClock.now - start
            try await client.shutdown()
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let latencies = results.flatMap(\.chunkLatenciesNs).sorted()
            let failures = results.compactMap(\.failure)
            func percentile(_ p: Double) -> String {
                guard !latencies.isEmpty else { return "-" }
                let value = latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]
                return String(format: "%.2f ms", Double(value) / 1e6)
            }
            print("devices: \(devices), verified: \(devices - failures.count), failed: \(failures.count)")
            print(String(format: "wall time: %.2f s", seconds))
            print(String(format: "chunk requests: %d (%.0f/s over the whole run)", latencies.count, Double(latencies.count) / seconds))
            print("chunk latency p50 \(percentile(0.5)), p90 \(percentile(0.9)), p99 \(percentile(0.99)), max \(percentile(1))")
            for failure in Set(failures).sorted().prefix(5) { print("failure: \(failure)") }
            if !failures.isEmpty { throw ExitCode.failure }
        }

        static func emulate(
            deviceID: String,
            base: String,
            running: String,
            keys: FirmwareKeys,
            client: HTTPClient
        ) async
            -> DeviceResult
        {
            var result = DeviceResult()
            func call(_ method: HTTPMethod, _ path: String, _ body: String? = nil) async throws -> JSONValue {
                var request = HTTPClientRequest(url: base + path)
                request.method = method
                if let body {
                    request.headers.add(name: "Content-Type", value: "application/json")
                    request.body = .bytes(ByteBuffer(string: body))
                }
                let response = try await client.execute(request, timeout: .seconds(60))
                let bytes = try await response.body.collect(upTo: 64 * 1024)
                guard response.status == .ok || response.status == .created else {
                    throw ValidationError("\(path): HTTP \(response.status.code) \(String(buffer: bytes))")
                }
                return try JSONParser.parse(Array(bytes.readableBytesView))
            }
            func progress(_ phase: String, _ percent: Int, _ message: String) async throws {
                _ = try await call(
                    .POST,
                    "/ota/\(deviceID)/progress",
                    #"{"phase":"\#(phase)","progress":\#(percent),"message":"\#(message)","timestamp":0}"#
                )
            }
            do {
                let check = try await call(.GET, "/ota/check/\(deviceID)?version=\(running)")
                guard check["update_available"] == .bool(true), let info = check["update_info"] else {
                    throw ValidationError("no update offered: \(check["message"]?.stringValue ?? check.serialized)")
                }
                var receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
                try await progress("downloading", 0, "Starting firmware download...")
                _ = try await call(.POST, "/ota/initiate/\(deviceID)", #"{"firmware_version":"\#(receiver.version)"}"#)
                result.chunkLatenciesNs.reserveCapacity(receiver.totalChunks)
                while !receiver.isComplete {
                    let n = receiver.nextChunk
                    let started = DispatchTime.now().uptimeNanoseconds
                    let reply = try await call(.GET, "/ota/chunk/\(deviceID)?version=\(receiver.version)&chunk=\(n)")
                    result.chunkLatenciesNs.append(DispatchTime.now().uptimeNanoseconds - started)
                    try receiver.receive(reply: reply)
                    let percent = (n + 1) * 100 / receiver.totalChunks
                    if n % 50 == 0 || percent % 10 == 0 {  // the firmware's reporting rule
                        try await progress("downloading", percent, "Downloading chunk \(n + 1) of \(receiver.totalChunks)")
                    }
                }
                try await progress("download_complete", 100, "Download complete, verifying security...")
                try receiver.verify(publicKey: keys.publicKey)
                try await progress("verification_success", 100, "Security verification passed - Installing firmware")
                try await progress("installing", 100, "Installing new firmware - Device will reboot")
                let complete = try await call(
                    .POST,
                    "/ota/\(deviceID)/complete",
                    #"{"version":"\#(receiver.version)","status":"success","timestamp":0}"#
                )
                guard complete["outcome"]?.stringValue == "success" else {
                    throw ValidationError("complete: \(complete.serialized)")
                }
            } catch {
                result.failure = "\(error)"
            }
            return result
        }
    }
}
