import EcoWattServer
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization

/// A live server on a loopback port with its own temporary directories and a settable clock.
final class TestServer: Sendable {
    let directory: URL
    let clock = TestClock()
    let server: EcoWattApplication

    init(durability: String? = nil) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ecowatt-test-\(UUID().uuidString)")
        var flags = ServerConfiguration.Layer()
        flags.host = "127.0.0.1"
        flags.port = 0
        flags.dataDirectory = directory.appendingPathComponent("data").path
        flags.keysDirectory = directory.appendingPathComponent("keys").path
        flags.firmwareDirectory = directory.appendingPathComponent("firmware").path
        flags.diagnosticsDirectory = directory.appendingPathComponent("diagnostics").path
        flags.durability = durability
        let configuration = try ServerConfiguration.load(configFile: nil, environment: [:], flags: flags)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let clock = self.clock
        server = try EcoWattApplication(configuration: configuration, logger: logger, clock: { clock.now })
    }

    deinit {
        try? FileManager.default.removeItem(at: directory)
    }

    var operatorHeaders: HTTPFields { [.authorization: "Bearer \(server.operatorToken)"] }

    /// Runs `body` against the live server.
    func run(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try await server.application.test(.live) { client in try await body(client) }
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

extension TestResponse {
    /// The body parsed as a JSON object.
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
    }
}

/// A settable epoch-millisecond clock.
final class TestClock: Sendable {
    private let value = Mutex<Int64>(Int64(Date().timeIntervalSince1970 * 1000))
    var now: Int64 { value.withLock { $0 } }
    func set(_ ms: Int64) { value.withLock { $0 = ms } }
}
