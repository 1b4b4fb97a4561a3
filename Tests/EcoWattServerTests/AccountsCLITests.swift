import EcoWattProtocol
import EcoWattTestSupport
import Foundation
import Testing

/// The accounts CLI against a real `ecowatt serve` process (issue 19): the first admin with the bootstrap token,
/// passwords from stdin, a token from a login, the token from the environment, provisioning into a file, the audit
/// trail verified and exported, and the bootstrap token revoked.
@Suite struct AccountsCLITests {
    @Test func anOperatorSetsUpAccountsTokensDeviceKeysAndChecksTheAuditTrail() async throws {
        let root = ProcessTests.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let port = LoopbackPort.free()
        let server = try await ServerProcess(root: root, port: port)
        #expect(server.log.contains("no operator accounts yet"))
        let url = ["--url", "http://127.0.0.1:\(port)"]
        let bootstrap = url + ["--token-file", root.appendingPathComponent("keys/operator_token").path]
        let password = "a long cli passphrase 9"

        // The first admin, with the bootstrap token; the password from stdin (never a flag).
        var (status, output, error) = try await ServerProcess.runCLI(["user", "add", "ada", "--role", "admin"] + bootstrap, input: password + "\n")
        #expect(status == 0 && output.contains("ada") && output.contains("admin"), "\(error)")
        (status, _, error) = try await ServerProcess.runCLI(["user", "add", "ops", "--role", "operator"] + bootstrap, input: "short\n")
        #expect(status == 1 && error.contains("at least 12"))
        // A token from a login; it is printed once, on stdout.
        (status, output, error) = try await ServerProcess.runCLI(
            ["token", "create", "laptop", "--user", "ada"] + url,
            input: password + "\n"
        )
        #expect(status == 0 && error.contains("shown only now"), "\(error)")
        let token = output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.hasPrefix("ewt_"))
        let admin = ["ECOWATT_TOKEN": token]
        (status, output, _) = try await ServerProcess.runCLI(["token", "list"] + url, environment: admin)
        #expect(status == 0 && output.contains("laptop") && output.contains(String(token.prefix(12))) && !output.contains(token))
        (status, output, _) = try await ServerProcess.runCLI(["user", "list"] + url, environment: admin)
        #expect(output.contains("ada") && output.contains("active"))

        // A device provisioned into a file: the snippet holds the key, mode 0600.
        let snippet = root.appendingPathComponent("security_key.cpp").path
        (status, _, error) = try await ServerProcess.runCLI(["device", "provision", "CLI-P1", "--out", snippet] + url, environment: admin)
        #expect(status == 0 && error.contains("written to"), "\(error)")
        let text = try String(contentsOfFile: snippet, encoding: .utf8)
        #expect(text.contains("SecurityLayer::PSK_HMAC[32]"))
        let mode = try FileManager.default.attributesOfItem(atPath: snippet)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        (status, output, _) = try await ServerProcess.runCLI(["device", "credentials", "CLI-P1"] + url, environment: admin)
        #expect(status == 0 && output.contains("CLI-P1") && !output.contains("fleet key"))

        // The audit trail: intact, exported as JSON Lines.
        (status, output, _) = try await ServerProcess.runCLI(["audit", "verify"] + url, environment: admin)
        #expect(status == 0 && output.hasPrefix("intact"), "\(output)")
        (status, output, error) = try await ServerProcess.runCLI(["audit", "export", "--jsonl"] + url, environment: admin)
        let lines = output.split(separator: "\n")
        #expect(status == 0 && lines.count >= 5 && error.contains("exported \(lines.count) entries"))
        let actions = lines.compactMap { try? JSONParser.parse(Array($0.utf8))["action"]?.stringValue }
        #expect(actions.starts(with: ["createUser", "createUser", "login", "createToken"]), "\(actions)")
        (status, output, _) = try await ServerProcess.runCLI(["audit", "list", "--action", "provisionDevice"] + url, environment: admin)
        #expect(output.contains("token:") && output.contains("device_id=CLI-P1"))

        // The bootstrap token, revoked, stops working (its file is removed); the admin's token keeps working.
        let bootstrapToken = try ProcessTests.operatorToken(root)
        (status, _, _) = try await ServerProcess.runCLI(["token", "revoke-bootstrap"] + url, environment: admin)
        #expect(status == 0)
        (status, _, error) = try await ServerProcess.runCLI(["user", "list"] + url, environment: ["ECOWATT_TOKEN": bootstrapToken])
        #expect(status == 1 && error.contains("401"))
        #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent("keys/operator_token").path))
        (status, _, _) = try await ServerProcess.runCLI(["user", "list"] + url, environment: admin)
        #expect(status == 0)
        // A disabled user's token is refused.
        (status, _, _) = try await ServerProcess.runCLI(["user", "add", "viv", "--role", "viewer"] + url, environment: admin, input: password + "\n")
        (status, output, _) = try await ServerProcess.runCLI(["token", "create", "ro", "--user", "viv"] + url, input: password + "\n")
        let viewer = output.trimmingCharacters(in: .whitespacesAndNewlines)
        (status, _, error) = try await ServerProcess.runCLI(
            ["user", "add", "x", "--role", "viewer"] + url,
            environment: ["ECOWATT_TOKEN": viewer],
            input: password + "\n"
        )
        #expect(status == 1 && error.contains("403"), "a viewer cannot add users")
        (status, _, _) = try await ServerProcess.runCLI(["user", "disable", "viv"] + url, environment: admin)
        (status, _, error) = try await ServerProcess.runCLI(["device", "list"] + url, environment: ["ECOWATT_TOKEN": viewer])
        #expect(status == 1 && error.contains("401"))
        try await server.stop(signal: SIGTERM)
    }
}
