import EcoWattTestSupport
import Foundation
import HummingbirdTesting
import NIOCore
import Testing

/// `ecowatt bench stack-floor`, the bare HTTP stack that `scripts/bench.sh floor` measures as the ceiling of issue 23's
/// ratios: it must answer both request shapes and do none of the server's work, or the floor would be too low.
@Suite struct StackFloorProcessTests {
    @Test func theStackFloorAnswersHealthAndCollectsAnUploadsBodyWithoutVerifyingOrStoringIt() async throws {
        let port = LoopbackPort.free()
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("stack-floor-\(UUID().uuidString).log")
        defer { try? FileManager.default.removeItem(at: log) }
        let floor = try ChildProcess(
            executable: ServerProcess.binary.path,
            arguments: ["bench", "stack-floor", "--port", "\(port)", "--max-body-bytes", "4096"],
            outputPath: log.path
        )
        defer { floor.signal(SIGKILL) }
        let deadline = ContinuousClock.now + .seconds(60)
        var health: TestClient.Response?
        while health == nil, floor.isRunning, ContinuousClock.now < deadline {
            health = try? await TestClient.withClient(host: "127.0.0.1", port: port) { try await $0.get("/health") }
            if health == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let answer = try #require(health, "the stack floor answers GET /health")
        #expect(answer.head.status == .ok)
        #expect(String(buffer: try #require(answer.body)).contains(#""status":"healthy""#))

        let upload = Uploads.body(device: "FLOOR-1", nonce: 11001)
        try await TestClient.withClient(host: "127.0.0.1", port: port) { client in
            // The same upload twice: the server would refuse the second as a replay; the floor verifies nothing.
            for _ in 0..<2 {
                let reply = try await client.post(
                    "/aggregated/FLOOR-1",
                    headers: [.contentType: "application/json"],
                    body: ByteBuffer(string: upload)
                )
                #expect(reply.head.status == .ok)
                let json = try JSONSerialization.jsonObject(with: Data(buffer: try #require(reply.body))) as? [String: Any]
                #expect(json?["body_bytes"] as? Int == upload.utf8.count)
            }
            // It does collect the body, with the limit a device route has.
            let tooLarge = try await client.post(
                "/aggregated/FLOOR-1",
                headers: [.contentType: "application/json"],
                body: ByteBuffer(repeating: UInt8(ascii: "x"), count: 4097)
            )
            #expect(tooLarge.head.status == .contentTooLarge)
        }
        floor.terminate()
        let stopBy = ContinuousClock.now + .seconds(20)
        while floor.isRunning, ContinuousClock.now < stopBy { try await Task.sleep(for: .milliseconds(50)) }
        #expect(floor.terminationStatus == 0, "SIGTERM stops it cleanly")
    }
}
