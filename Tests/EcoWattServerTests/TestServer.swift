import Configuration
import EcoWattAPI
import EcoWattProtocol
import EcoWattSQLite
import EcoWattServer
import FirmwareImage
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OpenAPIAsyncHTTPClient
import Synchronization

/// A live server on a loopback port with its own temporary directories and a settable clock.
final class TestServer: Sendable {
    let directory: URL
    let clock = TestClock()
    let server: EcoWattApplication

    private let ownsDirectory: Bool

    /// One RSA-2048 key set for every test server that brings none: generating one per server (as a fresh server does)
    /// costs up to a second of CPU on Swift's cooperative pool each time, and 50 of them starve time-sensitive tests.
    static let sharedKeys: FirmwareKeys = {
        do { return try FirmwareKeys.generate() } catch { fatalError("RSA key generation failed: \(error)") }
    }()

    /// - Parameter directory: reuse a data directory (a "restart"); by default a fresh one removed afterwards.
    /// - Parameter firmwareKeys: FOTA keys written to the keys directory first (otherwise ``sharedKeys``).
    init(
        durability: String? = nil,
        directory: URL? = nil,
        commandResultTimeoutSeconds: Int? = nil,
        firmwareKeys: FirmwareKeys? = nil,
        faultInjection: Bool? = nil,
        diagnosticsMaxFileBytes: Int? = nil,
        diagnosticsRetainedFiles: Int? = nil,
        mqttPort: Int? = nil,
        mqttOutboxLimit: Int? = nil,
        limits: [String: Int]? = nil,
        deviceBinding: String? = nil,
        commandDefaultTTLSeconds: Int? = nil,
        deviceAdmission: String? = nil,
        databaseURL: String? = nil,
        settings: [String: Int] = [:],
        logLines: LogLines? = nil
    ) async throws {
        ownsDirectory = directory == nil
        self.directory =
            directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("ecowatt-test-\(UUID().uuidString)")
        let directory = self.directory
        var flags: [String: ConfigValue] = [
            "host": "127.0.0.1", "port": 0,
            "data_dir": .init(.string(directory.appendingPathComponent("data").path), isSecret: false),
            "keys_dir": .init(.string(directory.appendingPathComponent("keys").path), isSecret: false),
            "firmware_dir": .init(.string(directory.appendingPathComponent("firmware").path), isSecret: false),
            "diagnostics_dir": .init(.string(directory.appendingPathComponent("diagnostics").path), isSecret: false),
            // The MQTT feed only when a test brings its own broker.
            "mqtt_enabled": .init(.bool(mqttPort != nil), isSecret: false),
            "mqtt_client_id": .init(.string("ecowatt-test-\(UUID().uuidString.prefix(8))"), isSecret: false),
        ]
        let texts: [(String, String?)] = [
            ("durability", durability), ("device_binding", deviceBinding), ("device_admission", deviceAdmission),
        ]
        for case (let key, let value?) in texts { flags[key] = .init(.string(value), isSecret: false) }
        if let databaseURL { flags["database_url"] = .init(.string(databaseURL), isSecret: true) }
        let numbers: [(String, Int?)] = [
            ("command_result_timeout_seconds", commandResultTimeoutSeconds), ("diagnostics_max_file_bytes", diagnosticsMaxFileBytes),
            ("diagnostics_retained_files", diagnosticsRetainedFiles), ("mqtt_port", mqttPort), ("mqtt_outbox_max_messages", mqttOutboxLimit),
            ("command_default_ttl_seconds", commandDefaultTTLSeconds),
        ]
        for case (let key, let value?) in numbers { flags[key] = .init(.int(value), isSecret: false) }
        for (key, value) in settings { flags[key] = .init(.int(value), isSecret: false) }
        if let faultInjection { flags["fault_injection"] = .init(.bool(faultInjection), isSecret: false) }
        // HummingbirdTesting's live client holds one connection for the whole test. A simulation test that used it only
        // at its end, 81 s in on a loaded CI machine, found it closed by the 60 s keep-alive limit ("I/O on closed
        // channel", CI of stop 38). Tests keep their connection unless one sets the limit.
        flags["limits.idle_timeout_seconds"] = .init(.int(3_600), isSecret: false)
        for (key, value) in limits ?? [:] { flags["limits." + key] = .init(.int(value), isSecret: false) }
        var configuration = try await ServerConfiguration.load(configFile: nil, environment: [:], flags: flags)
        // bcrypt at cost 4 (about 1 ms) unless a test sets `password_cost`: at the production minimum of 12 each hash
        // is a quarter second on the hashing thread at nice 10, and with both CI cores busy a test's few logins and
        // user creations queued past the test client's 40 s read timeout (three tests in one CI run).
        if settings["password_cost"] == nil { configuration.accounts.passwordCost = 4 }
        if !FirmwareKeys.anyExist(in: configuration.security.keysDirectory) {
            try (firmwareKeys ?? Self.sharedKeys).write(to: configuration.security.keysDirectory)
        }
        var logger = Logger(label: "test")
        logger.logLevel = ProcessInfo.processInfo.environment["ECOWATT_TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        if let logLines {
            // The server's log as an operator sees it (level `info`, the default of `serve`), kept for the test to read.
            logger = Logger(label: "ecowatt") { StreamLogHandler(label: $0, stream: logLines, metadataProvider: nil) }
            logger.logLevel = .info
        }
        let clock = self.clock
        // A restart on the same directory may find the lock still held for a moment: a process another test spawns
        // while the previous server lets go inherits the lock's descriptor until its exec (CI: "in use by another
        // process" right after the release).
        let deadline = ContinuousClock.now + .seconds(5)
        while true {
            do {
                server = try await EcoWattApplication(configuration: configuration, logger: logger, clock: { clock.now })
                break
            } catch DataDirectoryLock.Failure.inUse where !ownsDirectory && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    deinit {
        if ownsDirectory { try? FileManager.default.removeItem(at: directory) }
    }

    var operatorHeaders: HTTPFields { [.authorization: "Bearer \(server.operatorToken)"] }

    /// Nonces of the uploads ``bind(_:client:)`` sent (shared by servers on one data directory, a "restart").
    private static let bindNonces = Mutex<[String: UInt32]>([:])

    /// Makes `deviceID` a device with a verified upload from the test client's address, so that its unsigned requests
    /// are honoured (issue 14), as the firmware's first upload does.
    func bind(_ deviceID: String, client: some TestClientProtocol) async throws {
        let nonce = Self.bindNonces.withLock { nonces in
            let next = (nonces[deviceID] ?? 90_000) + 1
            nonces[deviceID] = next
            return next
        }
        let response = try await client.postJSON("/aggregated/\(deviceID)", Uploads.body(device: deviceID, nonce: nonce))
        precondition(response.status == .ok, "binding upload of \(deviceID): \(response.status)")
    }

    /// Runs `body` against the live server.
    func run(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        // The data directory is free again once this server stopped (a restart test opens a new one on it).
        defer { server.lock.release() }
        try await server.application.test(.live) { client in try await body(client) }
    }
}

extension TestServer {
    /// The generated operator API client (EcoWattAPI) against the live server `client` talks to, with the token.
    func api(_ client: some TestClientProtocol) -> EcoWattAPI.Client {
        Client(
            serverURL: URL(string: "http://127.0.0.1:\(client.port!)")!,
            configuration: .ecoWatt,
            transport: AsyncHTTPClientTransport(),
            middlewares: [BearerToken(server.operatorToken)]
        )
    }
}

extension TestClientProtocol {
    /// POSTs a JSON body as the firmware does.
    func postJSON(_ path: String, _ body: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        var fields = headers
        fields[.contentType] = "application/json"
        return try await execute(uri: path, method: .post, headers: fields, body: ByteBuffer(string: body))
    }
}

extension TestClientProtocol {
    /// An operator request with a JSON body.
    func operatorJSON(
        _ method: HTTPRequest.Method,
        _ path: String,
        _ body: String?,
        server: TestServer
    ) async throws
        -> TestResponse
    {
        var headers = server.operatorHeaders
        headers[.contentType] = "application/json"
        return try await execute(uri: path, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
    }
}

extension TestResponse {
    /// The body parsed as a JSON object.
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
    }
}

/// Log lines written by swift-log's stream handler, kept in memory.
final class LogLines: TextOutputStream, @unchecked Sendable {
    let lines = Mutex<[String]>([])
    func write(_ string: String) { lines.withLock { $0.append(string) } }
    /// The lines without their leading timestamp (two handlers may write in different seconds).
    var untimed: [String] { lines.withLock { $0 }.map { String($0.drop { $0 != " " }) } }
    /// The lines that contain `text`.
    func matching(_ text: String) -> [String] { lines.withLock { $0 }.filter { $0.contains(text) } }
}

/// A settable epoch-millisecond clock, or the wall clock (for runs against simulated devices, whose clocks run).
final class TestClock: Sendable {
    private let value = Mutex<Int64?>(Int64(Date().timeIntervalSince1970 * 1000))
    var now: Int64 { value.withLock { $0 } ?? Int64(Date().timeIntervalSince1970 * 1000) }
    func set(_ ms: Int64) { value.withLock { $0 = ms } }
    /// From now on the clock is the wall clock.
    func followWallClock() { value.withLock { $0 = nil } }
}

extension EcoWattApplication {
    /// The SQLite database of a server on the embedded backend (the tests that look at stored rows run on it).
    var database: EcoWattDatabase {
        guard let database = storage.sqlite else { preconditionFailure("this test reads SQLite rows; the server runs on PostgreSQL") }
        return database
    }
}
