import EcoWattProtocol
import EcoWattServer
import Foundation
import HummingbirdTesting
import NIOCore
import Testing

@Suite struct DiagnosticsHTTPTests {
    static func lines(_ path: String) throws -> [Substring] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { $0 }
    }

    @Test func concurrentWritersProduceOnlyWholeLinesThatSurviveARestart() async throws {
        let first = try await TestServer()
        let writers = 48
        try await first.run { client in
            let port = try #require(client.port)
            // Eight connections of six writers each: the test client's one connection would send every request down
            // the same pipeline, answered one at a time (and past its 40 s read timeout in a loaded full test run).
            try await withThrowingTaskGroup(of: Void.self) { group in
                for connection in 0..<8 {
                    group.addTask {
                        try await TestClient.withClient(host: "127.0.0.1", port: port) { client in
                            for index in stride(from: connection, to: writers, by: 8) {
                                // Bodies of 1-12 KB, so concurrent writes would interleave if they were not serialized.
                                let filler = String(repeating: "x", count: 1000 * (1 + index % 12))
                                let body = #"{"seq":\#(index),"free_heap":150000,"device_id":"spoofed","filler":"\#(filler)"}"#
                                let response = try await client.post(
                                    "/diagnostics/DIAG-1",
                                    headers: [.contentType: "application/json"],
                                    body: ByteBuffer(string: body)
                                )
                                #expect(response.head.status == .created)
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        let path = first.directory.appendingPathComponent("diagnostics/DIAG-1_diagnostics.jsonl").path
        let lines = try Self.lines(path)
        #expect(lines.count == writers)
        var seen = Set<Int64>()
        for line in lines {
            let value = try JSONParser.parse(Array(line.utf8))
            #expect(value["device_id"]?.stringValue == "DIAG-1", "the URL id wins")
            #expect(value["received_at"]?.stringValue?.hasSuffix("Z") == true)
            if let seq = value["seq"]?.intValue { seen.insert(seq) }
        }
        #expect(seen.count == writers)

        // Read back from the files by a new server on the same directories, newest first.
        let second = try await TestServer(directory: first.directory)
        try await second.run { client in
            let list = try await client.execute(uri: "/api/v1/devices/DIAG-1/diagnostics?limit=100", method: .get, headers: second.operatorHeaders)
            #expect((list.json["items"] as? [Any])?.count == writers)
            let newest = try #require((list.json["items"] as? [[String: Any]])?.first)
            #expect(newest["seq"] as? Int == (try JSONParser.parse(Array(lines.last!.utf8)))["seq"]?.intValue.map(Int.init))
            let summary = try await client.execute(uri: "/api/v1/diagnostics/summary", method: .get, headers: second.operatorHeaders)
            let device = try #require((summary.json["devices"] as? [[String: Any]])?.first)
            #expect(device["device_id"] as? String == "DIAG-1" && device["entries"] as? Int == writers)
            let page = try await client.execute(uri: "/api/v1/devices/DIAG-1/diagnostics?limit=2", method: .get, headers: second.operatorHeaders)
            let cursor = try #require(page.json["next_cursor"] as? String)
            let rest = try await client.execute(
                uri: "/api/v1/devices/DIAG-1/diagnostics?limit=1000&cursor=\(cursor)",
                method: .get,
                headers: second.operatorHeaders
            )
            let paged = ((page.json["items"] as? [[String: Any]] ?? []) + (rest.json["items"] as? [[String: Any]] ?? [])).compactMap {
                $0["seq"] as? Int
            }
            let whole = (list.json["items"] as? [[String: Any]] ?? []).compactMap { $0["seq"] as? Int }
            #expect(paged == whole, "two pages are the whole list")
            #expect(
                try await client.execute(uri: "/api/v1/devices/DIAG-1/diagnostics", method: .delete, headers: second.operatorHeaders).status == .ok
            )
            #expect(!FileManager.default.fileExists(atPath: path))
            #expect(
                try await client.execute(uri: "/api/v1/devices/DIAG-1/diagnostics", method: .delete, headers: second.operatorHeaders).status
                    == .notFound
            )
        }
    }

    @Test func unsafeIdsAndBodiesAreRejected() async throws {
        let test = try await TestServer()
        try await test.run { client in
            for id in ["..", ".hidden", "-rf", "a%2Fb", "..%2F..%2Fetc%2Fpasswd", "a%00b", "x%20y", String(repeating: "a", count: 65)] {
                let response = try await client.postJSON("/diagnostics/\(id)", #"{"a":1}"#)
                #expect(response.status == .badRequest || response.status == .notFound, "\(id): \(response.status)")
                #expect(response.json["success"] as? Bool == false, "\(id)")
            }
            #expect(try await client.postJSON("/diagnostics/OK-1", "[1,2]").status == .badRequest)
            #expect(try await client.postJSON("/diagnostics/OK-1", "{not json").status == .badRequest)
            let big = #"{"filler":"\#(String(repeating: "y", count: 17 * 1024))"}"#
            #expect(try await client.postJSON("/diagnostics/OK-1", big).status == .contentTooLarge)
            #expect(try await client.execute(uri: "/diagnostics/OK-1", method: .get).status == .methodNotAllowed, "the device posts only")
            #expect(try await client.execute(uri: "/api/v1/devices/OK-1/diagnostics", method: .get).status == .unauthorized)
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: test.directory.appendingPathComponent("diagnostics").path)
        #expect(files.isEmpty, "nothing was written for refused requests: \(files)")
        // Nothing escaped the diagnostics directory either.
        #expect(!FileManager.default.fileExists(atPath: test.directory.appendingPathComponent("a_diagnostics.jsonl").path))
    }

    @Test func filesRotateBySizeAndKeepTheRetentionLimit() async throws {
        let test = try await TestServer(diagnosticsMaxFileBytes: 2048, diagnosticsRetainedFiles: 2)
        try await test.run { client in
            for seq in 0..<60 {
                let body = #"{"seq":\#(seq),"filler":"\#(String(repeating: "z", count: 200))"}"#
                #expect(try await client.postJSON("/diagnostics/ROT-1", body).status == .created)
            }
            let directory = test.directory.appendingPathComponent("diagnostics")
            let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
            #expect(names == ["ROT-1_diagnostics.1.jsonl", "ROT-1_diagnostics.2.jsonl", "ROT-1_diagnostics.jsonl"])
            var total = 0
            for name in names {
                let path = directory.appendingPathComponent(name).path
                let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int
                #expect(size <= 2048, "\(name) is \(size) bytes")
                for line in try Self.lines(path) {
                    #expect((try? JSONParser.parse(Array(line.utf8))) != nil)
                    total += 1
                }
            }
            #expect(total < 60, "the oldest file was dropped")
            let list = try await client.execute(uri: "/api/v1/devices/ROT-1/diagnostics?limit=1000", method: .get, headers: test.operatorHeaders)
            let seqs = (list.json["items"] as? [[String: Any]] ?? []).compactMap { $0["seq"] as? Int }
            #expect(seqs.count == total)
            #expect(seqs == Array((60 - total..<60).reversed()), "newest first, contiguous across rotated files")
        }
    }
}
