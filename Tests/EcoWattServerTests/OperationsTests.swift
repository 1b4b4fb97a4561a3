import AsyncHTTPClient
import EcoWattTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 16: the real binary as an operator runs it: one server per data directory, a bind failure that names the
/// address, private files, the operator listener over TLS with certificate reload, and FOTA keys that are not replaced
/// casually.
@Suite(.serialized) struct OperationsTests {
    /// A second server on the same data directory exits at once and names the pid that holds it; the first one keeps
    /// serving.
    @Test func aSecondServerOnTheSameDataDirectoryRefusesToStart() async throws {
        let root = ProcessTests.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let server = try await ServerProcess(root: root, port: LoopbackPort.free(), environment: ["ECOWATT_MQTT_ENABLED": "false"])
        let (status, _, log) = try await ServerProcess.runCLI(
            ["serve", "--host", "127.0.0.1", "--port", "\(LoopbackPort.free())", "--data-dir", root.appendingPathComponent("data").path],
            timeout: .seconds(20)
        )
        #expect(status == 1)
        #expect(log.contains("is in use by pid \(server.process.processIdentifier)"), "\(log)")
        #expect(try await server.get("/health") == 200)
        try await server.stop(signal: SIGTERM)
    }

    /// A port already taken: the second server says which address it could not listen on, and it never connects to
    /// the broker under the shared client id (so the running server's feed is not kicked off).
    @Test(.enabled(if: MosquittoBroker.isInstalled)) func aPortInUseIsNamedAndTheRunningFeedIsUndisturbed() async throws {
        let broker = try MosquittoBroker()
        let root = ProcessTests.temporaryRoot()
        let other = ProcessTests.temporaryRoot()
        defer {
            try? FileManager.default.removeItem(at: root)
            try? FileManager.default.removeItem(at: other)
        }
        let port = LoopbackPort.free()
        let mqtt = ["ECOWATT_MQTT_PORT": "\(broker.port)", "ECOWATT_MQTT_CLIENT_ID": "shared-\(broker.port)"]
        let server = try await ServerProcess(root: root, port: port, environment: mqtt)
        try await Self.waitUntil { server.log.contains("MQTT connected") }
        let (status, _, log) = try await ServerProcess.runCLI(
            ["serve", "--host", "127.0.0.1", "--port", "\(port)", "--data-dir", other.appendingPathComponent("data").path]
                + ["--keys-dir", other.appendingPathComponent("keys").path],
            environment: mqtt,
            timeout: .seconds(20)
        )
        #expect(status == 1)
        #expect(log.contains("cannot listen on 127.0.0.1:\(port)"), "\(log)")
        #expect(!log.contains("MQTT connected"), "the failed server must not connect to the broker")
        try await Task.sleep(for: .milliseconds(500))
        #expect(!server.log.contains("MQTT connection lost"), "\(server.log)")
        try await server.stop(signal: SIGTERM)
    }

    /// New files are 0600 in 0700 directories; existing ones that others could read are tightened, with a log line.
    @Test func theServersFilesArePrivate() async throws {
        let root = ProcessTests.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let keys = root.appendingPathComponent("keys")
        try FileManager.default.createDirectory(at: keys, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let loose = keys.appendingPathComponent("operator_token")
        try "a-token-someone-left-readable".write(to: loose, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: loose.path)
        let server = try await ServerProcess(root: root, port: LoopbackPort.free(), environment: ["ECOWATT_MQTT_ENABLED": "false"])
        func mode(_ path: String) throws -> Int {
            try #require(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
        }
        #expect(try mode(keys.path) == 0o700)
        #expect(try mode(loose.path) == 0o600)
        #expect(server.log.contains("file permissions tightened"))
        let data = root.appendingPathComponent("data")
        #expect(try mode(data.path) == 0o700)
        for name in ["ecowatt.sqlite", "ecowatt.sqlite-wal", "ecowatt.lock", "../keys/server_private_key.pem", "../keys/aes_firmware_key.bin"] {
            let current = try mode(data.appendingPathComponent(name).path)
            #expect(current & 0o077 == 0, "\(name) is \(String(current, radix: 8))")
        }
        #expect(try mode(root.appendingPathComponent("diagnostics").path) == 0o700)
        try await server.stop(signal: SIGTERM)
    }

    /// The operator API on its own TLS listener: the device port serves devices and health but no operator route; the
    /// operator port speaks only TLS, sends HSTS, and serves a renewed certificate after SIGHUP without a restart.
    @Test func theOperatorListenerSpeaksTLSAndTheDevicePortRefusesOperatorRoutes() async throws {
        let root = ProcessTests.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let cert = root.appendingPathComponent("tls.crt").path
        let key = root.appendingPathComponent("tls.key").path
        try await Self.makeCertificate(cert: cert, key: key, name: "first")
        let first = try #require(try NIOSSLCertificate.fromPEMFile(cert).first)
        let port = LoopbackPort.free()
        let operatorPort = LoopbackPort.free()
        let server = try await ServerProcess(
            root: root,
            port: port,
            extraArguments: ["--operator-port", "\(operatorPort)", "--tls-cert-file", cert, "--tls-key-file", key],
            environment: ["ECOWATT_MQTT_ENABLED": "false"]
        )
        let token = try ProcessTests.operatorToken(root)
        // The device port: health and device routes, no operator API even with the token.
        #expect(try await Self.request("http://127.0.0.1:\(port)/api/v1/stats", token: token).status == 404)
        #expect(try await Self.request("http://127.0.0.1:\(port)/ota/check/TLS-1?version=1.0.0").status == 200)
        // The operator port: TLS only, the API with the token, HSTS.
        let stats = try await Self.request("https://127.0.0.1:\(operatorPort)/api/v1/stats", token: token, trust: first)
        #expect(stats.status == 200)
        #expect(stats.headers["Strict-Transport-Security"].first == "max-age=31536000")
        #expect(try await Self.request("https://127.0.0.1:\(operatorPort)/api/v1/stats", trust: first).status == 401)
        let metrics = try await Self.request("https://127.0.0.1:\(operatorPort)/metrics", token: token, trust: first)
        #expect(metrics.status == 200)
        #expect(metrics.body.contains("ecowatt_operator_connections_open 1"), "this scrape's own connection is counted")
        await #expect(throws: (any Error).self) { try await Self.request("http://127.0.0.1:\(operatorPort)/health") }
        // The CLI reaches it with the certificate to trust.
        let (listed, output, listError) = try await ServerProcess.runCLI(
            ["command", "list", "TLS-1", "--url", "https://127.0.0.1:\(operatorPort)", "--ca-file", cert],
            environment: ["ECOWATT_TOKEN": token]
        )
        #expect(listed == 0, "\(listError) \(output)")

        // A renewed certificate (another key pair): served after SIGHUP, to new connections.
        try await Self.makeCertificate(cert: cert, key: key, name: "second")
        let second = try #require(try NIOSSLCertificate.fromPEMFile(cert).first)
        kill(server.process.processIdentifier, SIGHUP)
        try await Self.waitUntil { server.log.contains("TLS certificate reloaded") }
        #expect(try await Self.request("https://127.0.0.1:\(operatorPort)/health", trust: second).status == 200)
        await #expect(throws: (any Error).self) { try await Self.request("https://127.0.0.1:\(operatorPort)/health", trust: first) }
        try await server.stop(signal: SIGTERM)
    }

    /// `keys generate --force` refuses while an image was prepared with the keys, archives them with `--rotate`; the
    /// running server picks the new keys up on SIGHUP, and deploying the old image then says why it is refused.
    @Test func fotaKeysAreNotReplacedCasuallyAndARunningServerReloadsThem() async throws {
        let root = ProcessTests.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        try await ProcessTests.prepareFirmware(root: root, version: "1.0.0")
        let keysDir = root.appendingPathComponent("keys").path
        let firmwareDir = root.appendingPathComponent("firmware").path
        let port = LoopbackPort.free()
        let server = try await ServerProcess(root: root, port: port, environment: ["ECOWATT_MQTT_ENABLED": "false"])
        let keyFiles = ["--keys-dir", keysDir, "--firmware-dir", firmwareDir, "--data-dir", root.appendingPathComponent("data").path]
        let original = try #require(FileManager.default.contents(atPath: keysDir + "/server_private_key.pem"))

        let (refused, _, refusal) = try await ServerProcess.runCLI(["keys", "generate", "--force"] + keyFiles)
        #expect(refused != 0 && refusal.contains("--rotate") && refusal.contains("1 prepared image"), "\(refusal)")
        #expect(FileManager.default.contents(atPath: keysDir + "/server_private_key.pem") == original)

        let (rotated, said, _) = try await ServerProcess.runCLI(["keys", "generate", "--force", "--rotate"] + keyFiles)
        #expect(rotated == 0)
        #expect(said.contains("archived the old keys in"), "\(said)")
        let archives = try FileManager.default.contentsOfDirectory(atPath: keysDir + "/archive")
        #expect(archives.count == 1)
        #expect(FileManager.default.contents(atPath: "\(keysDir)/archive/\(archives[0])/server_private_key.pem") == original)

        kill(server.process.processIdentifier, SIGHUP)
        try await Self.waitUntil { server.log.contains("FOTA keys changed") }
        let common = ["--url", "http://127.0.0.1:\(port)", "--token-file", keysDir + "/operator_token"]
        let (deployed, _, deployError) = try await ServerProcess.runCLI(["firmware", "deploy", "1.0.0"] + common)
        #expect(deployed != 0)
        #expect(deployError.contains("prepared with other keys") && deployError.contains("archive/"), "\(deployError)")

        // An image prepared with the new keys deploys.
        let image = root.appendingPathComponent("app.bin")
        let (prepared, _, prepareError) = try await ServerProcess.runCLI(
            ["firmware", "prepare", image.path, "--version", "2.0.0", "--keys-dir", keysDir, "--firmware-dir", firmwareDir]
        )
        #expect(prepared == 0, "\(prepareError)")
        let (deployedNew, _, newError) = try await ServerProcess.runCLI(["firmware", "deploy", "2.0.0"] + common)
        #expect(deployedNew == 0, "\(newError)")
        try await server.stop(signal: SIGTERM)
    }

    @Test func versionNamesTheReleaseAndTheCommit() async throws {
        let (status, output, _) = try await ServerProcess.runCLI(["--version"])
        #expect(status == 0)
        #expect(output.hasPrefix("0.16.0 (commit "), "\(output)")
    }

    // MARK: - Helpers

    static func waitUntil(timeout: Duration = .seconds(15), _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            try #require(ContinuousClock.now < deadline, "timed out")
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// A self-signed certificate for 127.0.0.1 with a new RSA key, written by `openssl`.
    static func makeCertificate(cert: String, key: String, name: String) async throws {
        let (status, _, error) = try await ServerProcess.run(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=\(name)",
                "-addext", "subjectAltName=IP:127.0.0.1",
            ]
        )
        try #require(status == 0, "openssl: \(error)")
    }

    /// One request with a fresh client; over TLS it trusts only `trust`.
    static func request(
        _ url: String,
        token: String? = nil,
        trust: NIOSSLCertificate? = nil
    ) async throws -> (status: UInt, headers: HTTPHeaders, body: String) {
        var configuration = HTTPClient.Configuration()
        if let trust {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates([trust])
            configuration.tlsConfiguration = tls
        }
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(10))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            var request = HTTPClientRequest(url: url)
            if let token { request.headers.add(name: "Authorization", value: "bearer \(token)") }
            let response = try await client.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 20)
            try await client.shutdown()
            return (response.status.code, response.headers, String(buffer: body))
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}
