import ArgumentParser
import AsyncHTTPClient
import EcoWattProtocol
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// Options shared by the commands that talk to a running server's operator API.
struct OperatorOptions: ParsableArguments {
    @Option(help: "Server URL (env ECOWATT_URL, default http://127.0.0.1:5001).") var url: String?
    @Option(help: "Operator token (env ECOWATT_TOKEN; default: read from --token-file).") var token: String?
    @Option(help: "File holding the operator token (default ./keys/operator_token).") var tokenFile: String?
    @Option(help: "PEM certificate(s) to trust for an https URL, e.g. the operator listener's own (env ECOWATT_CA_FILE).")
    var caFile: String?

    var baseURL: String {
        (url ?? ProcessInfo.processInfo.environment["ECOWATT_URL"] ?? "http://127.0.0.1:5001")
            .trimmingCharacters(in: CharacterSet(charactersIn: "/"))
    }

    func resolvedToken() throws -> String {
        if let token = token ?? ProcessInfo.processInfo.environment["ECOWATT_TOKEN"] { return token }
        let path = tokenFile ?? "./keys/operator_token"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("no operator token: pass --token, set ECOWATT_TOKEN, or point --token-file at keys/operator_token")
        }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Sends one request and returns the status and parsed JSON body.
    func send(_ method: HTTPMethod, _ path: String, body: String? = nil) async throws -> (UInt, JSONValue) {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(try resolvedToken())")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        guard let caFile = caFile ?? ProcessInfo.processInfo.environment["ECOWATT_CA_FILE"] else {
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            return try await Self.parse(response)
        }
        // A client that trusts only the given certificates (a self-signed operator listener).
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(caFile)
        var configuration = HTTPClient.Configuration()
        configuration.tlsConfiguration = tls
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            let result = try await Self.parse(try await client.execute(request, timeout: .seconds(30)))
            try await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    private static func parse(_ response: HTTPClientResponse) async throws -> (UInt, JSONValue) {
        let bytes = try await response.body.collect(upTo: 16 * 1024 * 1024)
        let json = (try? JSONParser.parse(Array(bytes.readableBytesView))) ?? .null
        return (response.status.code, json)
    }

    /// Fails with the server's reason unless the status is 2xx.
    func check(_ result: (UInt, JSONValue)) throws -> JSONValue {
        guard (200..<300).contains(result.0) else {
            throw ValidationError("server answered \(result.0): \(result.1["error"]?.stringValue ?? result.1.serialized)")
        }
        return result.1
    }
}

/// `ecowatt command queue|list|cancel|status`: the operator command API from the shell.
struct CommandCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "command",
        abstract: "Queue, list and cancel device commands on a running server.",
        subcommands: [Queue.self, List.self, Cancel.self, Status.self]
    )

    struct Queue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Queue a command for a device.",
            discussion: """
                Actions: write_register (needs --register and --value), set_power (--value watts 0-10000),
                set_power_percentage (--value 0-100), get_power_stats, get_peripheral_stats, reset_power_stats,
                reset_peripheral_stats.
                """
        )
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Device id.") var deviceID: String
        @Argument(help: "Action.") var action: String
        @Option(help: "Target register: a name (export_power, Pow, …) or an address.") var register: String?
        @Option(help: "Integer value.") var value: Int?
        @Option(help: "Expire if not delivered within this many seconds.") var ttl: Int?
        @Option(help: "Idempotency key: queuing again with the same key returns the first command.") var idempotencyKey: String?

        func run() async throws {
            var command: [(String, JSONValue)] = [("action", .string(action))]
            if let register { command.append(("target_register", .string(register))) }
            if let value { command.append(("value", .int(Int64(value)))) }
            var body: [(String, JSONValue)] = [("command", .object(command))]
            if let ttl { body.append(("ttl_seconds", .int(Int64(ttl)))) }
            if let idempotencyKey { body.append(("idempotency_key", .string(idempotencyKey))) }
            let reply = try server.check(
                try await server.send(.POST, "/commands/\(deviceID.urlPathEscaped)", body: JSONValue.object(body).serialized)
            )
            print(reply["command_id"]?.stringValue ?? reply.serialized)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a device's commands, newest first.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Device id.") var deviceID: String
        @Option(help: "How many.") var limit = 20

        func run() async throws {
            let reply = try server.check(try await server.send(.GET, "/commands/\(deviceID.urlPathEscaped)/history?limit=\(limit)"))
            for command in reply["history"]?.arrayValue ?? [] {
                let fields = ["command_id", "status", "action", "value", "created_at", "result_status"].map { key in
                    switch command[key] {
                    case .string(let text): text
                    case .int(let number): String(number)
                    default: "-"
                    }
                }
                print(fields.joined(separator: "\t"))
            }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a pending command.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Command id.") var commandID: String

        func run() async throws {
            let reply = try server.check(try await server.send(.DELETE, "/commands/\(commandID.urlPathEscaped)"))
            print(reply["command"]?["status"]?.stringValue ?? reply.serialized)
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one command as JSON.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Command id.") var commandID: String

        func run() async throws {
            let reply = try server.check(try await server.send(.GET, "/commands/status/\(commandID.urlPathEscaped)"))
            print((reply["command"] ?? reply).serialized)
        }
    }
}

extension String {
    /// Percent-escaped as one path segment.
    var urlPathEscaped: String {
        addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? self
    }
}
