import EcoWattTestSupport
import Foundation
import HummingbirdTesting
import NIOCore

/// The built `ecowatt` executable run as a child process (for kill/restart and CLI tests).
/// `@unchecked Sendable`: `Process` is only started once and then read or signalled, which Foundation allows from
/// any thread.
final class ServerProcess: @unchecked Sendable {
    /// `$ECOWATT_BINARY`, else `.build/debug/ecowatt` of this package (built by `swift build --build-tests`).
    static var binary: URL {
        if let path = ProcessInfo.processInfo.environment["ECOWATT_BINARY"] { return URL(fileURLWithPath: path) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/ecowatt")
    }

    /// Runs the CLI to completion and returns (status, stdout, stderr).
    ///
    /// The blocking wait runs on a Dispatch thread, never on Swift's cooperative pool: on a 2-core machine two blocked
    /// pool threads would stall every other test running in parallel. With `timeout`, a process still running then is
    /// killed (a `serve` expected to fail that does not must not hang the suite).
    static func runCLI(
        _ arguments: [String],
        environment: [String: String] = [:],
        timeout: Duration? = nil,
        input: String? = nil
    ) async throws -> (Int32, String, String) {
        try await run(binary.path, arguments, environment: environment, timeout: timeout, input: input)
    }

    /// Runs any executable to completion (see ``runCLI(_:environment:timeout:)``).
    static func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        timeout: Duration? = nil,
        input: String? = nil
    ) async throws -> (Int32, String, String) {
        let merged = environment.isEmpty ? nil : ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let result = try await ChildProcess.run(executable, arguments, environment: merged, timeout: timeout, input: input)
        return (result.status, result.output, result.error)
    }

    let process: ChildProcess
    let port: Int
    let logFile: URL

    /// Starts `ecowatt serve` on `port` with every directory under `root`, and waits until `/health` answers.
    /// - Parameter descriptorLimit: run under `ulimit -n` (soft and hard) of this many descriptors.
    /// - Parameter environment: variables set for the server on top of the test's own.
    init(
        root: URL,
        port: Int,
        extraArguments: [String] = [],
        descriptorLimit: Int? = nil,
        environment: [String: String] = [:]
    ) async throws {
        self.port = port
        logFile = root.appendingPathComponent("server-\(UUID().uuidString).log")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let arguments =
            [
                "serve", "--host", "127.0.0.1", "--port", "\(port)", "--data-dir", root.appendingPathComponent("data").path,
                "--keys-dir", root.appendingPathComponent("keys").path, "--firmware-dir",
                root.appendingPathComponent("firmware").path, "--diagnostics-dir",
                root.appendingPathComponent("diagnostics").path, "--log-level", "info",
            ] + extraArguments
        let environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        if let descriptorLimit {
            process = try ChildProcess(
                executable: "/bin/sh",
                arguments: ["-c", #"ulimit -n \#(descriptorLimit) && exec "$0" "$@""#, Self.binary.path] + arguments,
                environment: environment,
                outputPath: logFile.path
            )
        } else {
            process = try ChildProcess(executable: Self.binary.path, arguments: arguments, environment: environment, outputPath: logFile.path)
        }
        // Generous: beside a busy test run a server that was listening within 2 s was once not seen healthy in 20 s.
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            // Our server, not another test's that took the port meanwhile: its own log says it listens there.
            if log.contains("listening on 127.0.0.1:\(port)"), let status = try? await get("/health"), status == 200 { return }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        process.terminate()
        throw ProcessError.didNotStart(log)
    }

    enum ProcessError: Error { case didNotStart(String) }

    var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    func get(_ path: String) async throws -> UInt {
        try await TestClient.withClient(host: "127.0.0.1", port: port) { client in
            UInt(try await client.get(path).head.status.code)
        }
    }

    /// POSTs JSON on a fresh connection (as the firmware does); returns the status code.
    func post(_ path: String, _ body: String) async throws -> Int {
        try await TestClient.withClient(host: "127.0.0.1", port: port) { client in
            try await client.post(path, headers: [.contentType: "application/json"], body: ByteBuffer(string: body))
                .head.status.code
        }
    }

    /// Sends `signal` and waits for the process to exit; returns its termination status.
    @discardableResult
    func stop(signal: Int32) async throws -> Int32 {
        kill(process.processIdentifier, signal)
        let deadline = ContinuousClock.now + .seconds(20)
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        return process.terminationStatus
    }
}
