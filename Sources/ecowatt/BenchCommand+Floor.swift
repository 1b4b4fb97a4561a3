import ArgumentParser
import Hummingbird
import Logging
import NIOCore

extension BenchCommand {
    /// `ecowatt bench stack-floor`: the HTTP stack with none of EcoWatt, to measure what its targets can reach.
    ///
    /// Issue 23 sets targets as ratios to `GET /health`. A device upload is a POST with a 1.2 KB body; `/health` has no
    /// body. This application answers both shapes with the same Hummingbird and SwiftNIO as `ecowatt serve`, and does
    /// nothing else: no middleware, no log, no metrics, no parsing, no storage. What it costs per request is the floor
    /// of every device route on this machine (`scripts/bench.sh 10 floor` measures it beside the server).
    struct StackFloor: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stack-floor",
            abstract: "Serve bare Hummingbird routes shaped like GET /health and a device upload (benchmarks only).",
            discussion: """
                GET /health answers a small JSON. POST /aggregated/{id} collects the body (at most --max-body-bytes), \
                as every device route does, and answers a JSON of the upload reply's size (with the body's length) \
                without reading the body. Runs until interrupted.
                """
        )

        @Option(help: "Address to listen on.") var host = "127.0.0.1"
        @Option(help: "Port to listen on.") var port = 5499
        @Option(help: "Largest body collected; a larger one is answered 413.") var maxBodyBytes = 65_536

        func run() async throws {
            let router = Router()
            let health = ByteBuffer(string: #"{"status":"healthy","service":"ecowatt-cloud"}"#)
            router.get("/health") { _, _ in Self.json(health) }
            let limit = maxBodyBytes
            router.post("/aggregated/:id") { request, _ in
                var request = request
                let body = try await request.collectBody(upTo: limit)
                // The size of the server's upload reply, without echoing the id (that would need escaping).
                return Self.json(
                    ByteBuffer(
                        string: #"{"success":true,"packets_processed":1,"samples_stored":3,"undecodable_packets":0,"#
                            + #""resent_packets":0,"body_bytes":\#(body.readableBytes)}"#
                    )
                )
            }
            var logger = Logger(label: "stack-floor")
            logger.logLevel = .warning
            let app = Application(router: router, configuration: .init(address: .hostname(host, port: port)), logger: logger)
            try await app.runService()
        }

        static func json(_ body: ByteBuffer) -> Response {
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        }
    }
}
