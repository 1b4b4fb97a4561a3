import ArgumentParser
import EcoWattAPI
import Foundation

/// `ecowatt audit …`: the tamper-evident audit trail (admin).
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "List, verify and export the audit trail (admin).",
        subcommands: [List.self, Verify.self, Export.self]
    )

    typealias Entry = Components.Schemas.AuditEntry

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Audit entries, newest first.")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var paging: PageOptions
        @Option(help: "Only this actor (user:alice, token:3:alice/ci, bootstrap, device:ID).") var actor: String?
        @Option(help: "Only this action (an operation id, login, tokenFirstUse, deviceKeyRotated).") var action: String?
        @Option(help: "Only this target (device_id=ESP32_001).") var target: String?

        func run() async throws {
            let entries = try await server.withClient { client in
                try await paging.pages { cursor in
                    let query = Operations.ListAudit.Input.Query(
                        limit: paging.limit,
                        cursor: cursor,
                        actor: actor,
                        action: action,
                        target: target
                    )
                    let page = try await client.listAudit(query: query).ok.body.json
                    return (page.items, page.nextCursor)
                }
            }
            if output.output == .json { return try output.printJSON(entries) }
            printTable(
                ["SEQ", "TIME", "ACTOR", "ROLE", "ACTION", "TARGET", "OUTCOME", "ADDRESS"],
                entries.map {
                    ["\($0.sequence)", $0.at.iso, $0.actor, $0.role, $0.action, $0.target, $0.outcome, $0.clientAddress]
                }
            )
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Walk the hash chain and check it against the head file outside the database; exit 1 if broken."
        )
        @OptionGroup var server: OperatorOptions

        func run() async throws {
            let result = try await server.withClient { try await $0.verifyAudit().ok.body.json }
            let external = result.externalSequence.map { "external head at \($0)" } ?? "no external head yet"
            if result.intact {
                print("intact: \(result.entries) entries, head \(result.headSequence) \(result.headHash ?? "-"), \(external)")
            } else {
                print(
                    "BROKEN at entry \(result.firstBrokenSequence ?? 0): \(result.firstBrokenReason ?? "?") (\(result.entries) entries read, \(external))"
                )
                throw ExitCode(1)
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every entry oldest first, one JSON object per line.")
        @OptionGroup var server: OperatorOptions
        @Flag(help: "JSON Lines (the only format).") var jsonl = false

        func run() async throws {
            try await server.withClient { client in
                var after: Int64 = 0
                var count = 0
                while true {
                    let page = try await client.listAudit(query: .init(limit: 1000, after: after)).ok.body.json.items
                    for entry in page { print(try OutputOptions.json(entry)) }
                    count += page.count
                    if count > 0, count % 10_000 < page.count { FileHandle.standardError.write(Data("… \(count) entries\n".utf8)) }
                    guard page.count == 1000, let last = page.last else { break }
                    after = last.sequence
                }
                FileHandle.standardError.write(Data("exported \(count) entries\n".utf8))
            }
        }
    }
}
