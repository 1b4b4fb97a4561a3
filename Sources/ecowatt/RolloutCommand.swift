import ArgumentParser
import EcoWattAPI

/// `ecowatt rollout …` (issue 21): staged rollouts through the operator API.
struct RolloutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout",
        abstract: "Create, watch and steer staged firmware rollouts (waves that halt themselves when devices fail).",
        subcommands: [Create.self, List.self, Show.self, Pause.self, Resume.self, Cancel.self, Advance.self, Retry.self, Rollback.self]
    )

    typealias Rollout = Components.Schemas.Rollout

    /// One line per wave: its devices by state.
    static func summary(_ rollout: Rollout) -> String {
        var lines = [
            "rollout \(rollout.id): \(rollout.version) \(rollout.status.rawValue), wave \(rollout.currentWave) of \(rollout.waveCount)"
                + (rollout.reason.map { " (\($0))" } ?? "")
        ]
        for wave in rollout.waves ?? [] {
            let counts = wave.counts.additionalProperties.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            lines.append("  wave \(wave.wave)\(wave.open ? "" : " (not open)"): \(wave.targeted) devices: \(counts)")
        }
        return lines.joined(separator: "\n")
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Roll an uploaded image out in waves (default 1, 10, 50, 100 %) to devices, all, or a filter.",
            discussion: "The target is resolved now: devices registered later are not added. Devices already running the version are left out."
        )
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Firmware version (uploaded with `ecowatt firmware upload`).") var version: String
        @Option(name: .customLong("device"), help: "A target device (repeatable).") var devices: [String] = []
        @Flag(help: "Every admitted device.") var all = false
        @Option(help: "Target the devices running this version.") var fromVersion: String?
        @Option(help: "Target the devices whose id starts with this.") var idPrefix: String?
        @Option(help: "Cumulative wave percentages, e.g. 1,10,50,100.") var waves: String?
        @Option(help: "Halt when failures reach this share of finished devices (default 10).") var haltPercent: Int?
        @Option(help: "Finished devices needed before halting or advancing (default 5).") var minFinished: Int?
        @Option(help: "Decoded uploads on the new version that make a device healthy (default 3).") var healthUploads: Int?
        @Option(help: "Downloads in progress at once at most (default 50).") var maxDownloads: Int?
        @Option(help: "A note kept with the rollout.") var notes: String?

        func run() async throws {
            let percents = try waves.map { text in
                try text.split(separator: ",").map { part in
                    guard let value = Int(part.trimmingCharacters(in: .whitespaces)) else {
                        throw ValidationError("--waves: \(part) is not a number")
                    }
                    return value
                }
            }
            let settings = Components.Schemas.RolloutSettings(
                waves: percents,
                haltFailurePercent: haltPercent,
                minFinished: minFinished,
                healthUploads: healthUploads,
                maxConcurrentDownloads: maxDownloads
            )
            let body = Components.Schemas.RolloutCreate(
                version: version,
                deviceIds: devices.isEmpty ? nil : devices,
                all: all ? true : nil,
                firmwareVersion: fromVersion,
                idPrefix: idPrefix,
                settings: settings,
                notes: notes
            )
            let rollout = try await server.withClient { try await $0.createRollout(body: .json(body)).created.body.json }
            print(RolloutCommand.summary(rollout))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Rollouts, newest first.")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var paging: PageOptions

        func run() async throws {
            let rollouts = try await server.withClient { client in
                try await paging.pages { cursor in
                    let page = try await client.listRollouts(query: .init(limit: paging.limit ?? 50, cursor: cursor)).ok.body.json
                    return (page.items, page.nextCursor)
                }
            }
            if output.output == .json { return try output.printJSON(rollouts) }
            printTable(
                ["ID", "VERSION", "STATUS", "WAVE", "DEVICES", "HEALTHY", "FAILED", "CREATED"],
                rollouts.map { rollout in
                    let counts = rollout.counts?.additionalProperties ?? [:]
                    return [
                        String(rollout.id), rollout.version, rollout.status.rawValue, "\(rollout.currentWave)/\(rollout.waveCount)",
                        String(counts.values.reduce(0, +)), String(counts["healthy"] ?? 0), String(counts["failed"] ?? 0),
                        rollout.createdAt.iso,
                    ]
                }
            )
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A rollout's waves, and with --devices each device's state.")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "Rollout id.") var id: Int64
        @Flag(help: "List the devices with their state and reason.") var devices = false

        func run() async throws {
            let (rollout, members) = try await server.withClient { client in
                let rollout = try await client.getRollout(path: .init(rolloutId: id)).ok.body.json
                guard devices else { return (rollout, [Components.Schemas.RolloutDevice]()) }
                var members: [Components.Schemas.RolloutDevice] = []
                var cursor: String?
                repeat {
                    let page = try await client.listRolloutDevices(path: .init(rolloutId: id), query: .init(limit: 1000, cursor: cursor)).ok.body.json
                    members += page.items
                    cursor = page.nextCursor
                } while cursor != nil
                return (rollout, members)
            }
            if output.output == .json { return try output.printJSON(rollout) }
            print(RolloutCommand.summary(rollout))
            if devices {
                printTable(
                    ["DEVICE", "WAVE", "STATE", "REASON", "FROM", "STARTED", "FINISHED"],
                    members.map {
                        [
                            $0.deviceId, String($0.wave), $0.state.rawValue, $0.reason ?? "", $0.fromVersion ?? "", $0.startedAt?.iso ?? "",
                            $0.finishedAt?.iso ?? "",
                        ]
                    }
                )
            }
        }
    }

    struct Pause: RolloutAction {
        static let configuration = CommandConfiguration(abstract: "Stop new offers; downloads in flight finish.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Rollout id.") var id: Int64
        static func call(_ client: Client, _ id: Int64) async throws -> Rollout {
            try await client.pauseRollout(path: .init(rolloutId: id)).ok.body.json
        }
    }

    struct Resume: RolloutAction {
        static let configuration = CommandConfiguration(abstract: "Resume a paused or halted rollout.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Rollout id.") var id: Int64
        static func call(_ client: Client, _ id: Int64) async throws -> Rollout {
            try await client.resumeRollout(path: .init(rolloutId: id)).ok.body.json
        }
    }

    struct Cancel: RolloutAction {
        static let configuration = CommandConfiguration(abstract: "End a rollout for good.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Rollout id.") var id: Int64
        static func call(_ client: Client, _ id: Int64) async throws -> Rollout {
            try await client.cancelRollout(path: .init(rolloutId: id)).ok.body.json
        }
    }

    struct Advance: RolloutAction {
        static let configuration = CommandConfiguration(abstract: "Open the next wave now, whatever the evidence.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Rollout id.") var id: Int64
        static func call(_ client: Client, _ id: Int64) async throws -> Rollout {
            try await client.advanceRollout(path: .init(rolloutId: id)).ok.body.json
        }
    }

    struct Retry: RolloutAction {
        static let configuration = CommandConfiguration(abstract: "Offer the image again to the failed devices.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Rollout id.") var id: Int64
        static func call(_ client: Client, _ id: Int64) async throws -> Rollout {
            try await client.retryRollout(path: .init(rolloutId: id)).ok.body.json
        }
    }

    struct Rollback: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a rollout and roll its devices that installed the image back to their previous version."
        )
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Rollout id.") var id: Int64
        @Option(help: "The version to return to (default: the one the devices ran before).") var to: String?
        func run() async throws {
            let rollout = try await server.withClient {
                try await $0.rollbackRollout(path: .init(rolloutId: id), body: .json(.init(version: to))).created.body.json
            }
            print(RolloutCommand.summary(rollout))
        }
    }
}

/// A rollout action: one rollout id, one API call, the rollout after it printed.
protocol RolloutAction: AsyncParsableCommand {
    var server: OperatorOptions { get }
    var id: Int64 { get }
    static func call(_ client: Client, _ id: Int64) async throws -> RolloutCommand.Rollout
}

extension RolloutAction {
    func run() async throws {
        let id = id
        print(RolloutCommand.summary(try await server.withClient { try await Self.call($0, id) }))
    }
}
