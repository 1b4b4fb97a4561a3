import ArgumentParser
import AsyncHTTPClient
import EcoWattAPI
import EcoWattProtocol
import Foundation
import HTTPTypes
import NIOSSL
import OpenAPIAsyncHTTPClient
import OpenAPIRuntime

/// Options shared by the commands that talk to a running server's operator API (through the client generated from
/// the same OpenAPI document as the server).
struct OperatorOptions: ParsableArguments {
    @Option(help: "Server URL (env ECOWATT_URL, default http://127.0.0.1:5001).") var url: String?
    @Option(
        help:
            "File holding the token (env ECOWATT_TOKEN_FILE; default ~/.config/ecowatt/token, then ./keys/operator_token). The token itself is never a flag: set ECOWATT_TOKEN or use a file."
    )
    var tokenFile: String?
    @Option(help: "PEM certificate(s) to trust for an https URL, e.g. the operator listener's own (env ECOWATT_CA_FILE).")
    var caFile: String?

    var baseURL: String {
        (url ?? ProcessInfo.processInfo.environment["ECOWATT_URL"] ?? "http://127.0.0.1:5001")
            .trimmingCharacters(in: CharacterSet(charactersIn: "/"))
    }

    /// The token: `ECOWATT_TOKEN`, else the first file of `--token-file` / `ECOWATT_TOKEN_FILE`,
    /// `~/.config/ecowatt/token` and `./keys/operator_token` (the bootstrap token) that exists. Never a flag: command
    /// lines end up in shell histories and process lists.
    func resolvedToken() throws -> String {
        let environment = ProcessInfo.processInfo.environment
        if let token = environment["ECOWATT_TOKEN"], !token.isEmpty { return token }
        let home = environment["HOME"].map { ($0 as NSString).appendingPathComponent(".config/ecowatt/token") }
        let explicit = tokenFile ?? environment["ECOWATT_TOKEN_FILE"]
        let candidates = explicit.map { [$0] } ?? [home, "./keys/operator_token"].compactMap { $0 }
        for path in candidates {
            if let data = FileManager.default.contents(atPath: path) {
                return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        throw ValidationError(
            "no operator token: set ECOWATT_TOKEN, write it to ~/.config/ecowatt/token, or point --token-file at a file (\(candidates.joined(separator: ", ")) not found)"
        )
    }

    /// Runs `body` with the API client; a refused request ends the command with one line: the status, the server's
    /// message and the URL (no usage text: the command line was fine).
    func withClient<T>(_ body: (Client) async throws -> T) async throws -> T {
        try await withClient(credentials: BearerToken(try resolvedToken()), body)
    }

    /// Runs `body` in a session of `user` (logged in with `password`, logged out after): what needs a user rather
    /// than a token, such as creating a user's first API token.
    func withSession<T>(user: String, password: String, _ body: (Client) async throws -> T) async throws -> T {
        let session = SessionCookie()
        return try await withClient(credentials: session) { client in
            let login = try await client.login(body: .json(.init(name: user, password: password))).ok.body.json
            session.setCSRFToken(login.csrfToken)
            let result = try await body(client)
            _ = try? await client.logout()
            return result
        }
    }

    private func withClient<T>(credentials: some ClientMiddleware, _ body: (Client) async throws -> T) async throws -> T {
        guard let serverURL = URL(string: baseURL), serverURL.scheme != nil else { throw ValidationError("--url \(baseURL) is not a URL") }
        var configuration = HTTPClient.Configuration()
        if let caFile = caFile ?? ProcessInfo.processInfo.environment["ECOWATT_CA_FILE"] {
            // Trust only the given certificates (a self-signed operator listener).
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(caFile)
            configuration.tlsConfiguration = tls
        }
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let client = Client(
            serverURL: serverURL,
            configuration: .ecoWatt,
            transport: AsyncHTTPClientTransport(configuration: .init(client: http, timeout: .seconds(60))),
            middlewares: [credentials, FailureMiddleware()]
        )
        do {
            let result = try await body(client)
            try await http.shutdown()
            return result
        } catch let error as ClientError {
            try? await http.shutdown()
            throw error.underlyingError is APIFailure ? error.underlyingError : ConnectionFailure(url: baseURL, underlying: error.underlyingError)
        } catch {
            try? await http.shutdown()
            throw error
        }
    }
}

/// A request the server refused, as one line.
struct APIFailure: Error, CustomStringConvertible {
    let status: Int
    let message: String
    let url: String

    var description: String { "server answered \(status): \(message) (\(url))" }
}

/// The server could not be reached.
struct ConnectionFailure: Error, CustomStringConvertible {
    let url: String
    let underlying: any Error

    var description: String { "cannot reach \(url): \(underlying)" }
}

/// Turns every answer that is not 2xx into an ``APIFailure`` with the server's message.
struct FailureMiddleware: ClientMiddleware {
    func intercept(
        _ request: HTTPRequest,
        body: HTTPBody?,
        baseURL: URL,
        operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        let (response, responseBody) = try await next(request, body, baseURL)
        guard response.status.kind != .successful else { return (response, responseBody) }
        var bytes: [UInt8] = []
        if let responseBody { bytes = (try? await [UInt8](collecting: responseBody, upTo: 64 * 1024)) ?? [] }
        let json = try? JSONParser.parse(bytes)
        let message =
            json?["error"]?["message"]?.stringValue ?? json?["error"]?.stringValue ?? response.status.reasonPhrase
        let url = baseURL.absoluteString.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + (request.path ?? "")
        throw APIFailure(status: response.status.code, message: message, url: url)
    }
}

/// `--output json|table`.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

struct OutputOptions: ParsableArguments {
    @Option(help: "table (default) or json.") var output: OutputFormat = .table

    /// Prints `value` as compact JSON with sorted keys and millisecond dates (one line, for scripts).
    func printJSON(_ value: some Encodable) throws {
        print(try Self.json(value))
    }

    static func json(_ value: some Encodable) throws -> String {
        try MillisecondDates.compactJSON(value)
    }
}

/// Paging options of list commands: one page (`--limit`, `--cursor`) or every page (`--all`).
struct PageOptions: ParsableArguments {
    @Option(help: "Items per page.") var limit: Int?
    @Option(help: "Continue from this cursor (printed after a page that has more).") var cursor: String?
    @Flag(help: "Fetch every page.") var all = false

    /// Calls `fetch` for each page (one unless --all); prints the cursor of a further page to stderr.
    func pages<Item>(_ fetch: (String?) async throws -> (items: [Item], next: String?)) async throws -> [Item] {
        var items: [Item] = []
        var cursor = cursor
        var pages = 0
        repeat {
            let page = try await fetch(cursor)
            items += page.items
            cursor = page.next
            pages += 1
            if all, pages % 10 == 0 { FileHandle.standardError.write(Data("… \(items.count) so far\n".utf8)) }
        } while all && cursor != nil
        if let cursor { FileHandle.standardError.write(Data("more: --cursor \(cursor)\n".utf8)) }
        return items
    }
}

/// Prints rows as aligned columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
    for row in [header] + rows {
        print(
            zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ").trimmingCharacters(
                in: .whitespaces
            )
        )
    }
}

extension Date {
    /// As the API writes it.
    var iso: String { (try? MillisecondDates().encode(self)) ?? "\(self)" }
}
