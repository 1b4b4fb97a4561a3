import ArgumentParser
import EcoWattAPI
import Foundation

/// `ecowatt config show|set|withdraw|history`: remote configuration through the operator API.
struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Show, change and withdraw a device's configuration.",
        subcommands: [Show.self, Set.self, Withdraw.self, History.self]
    )

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The running configuration and the pending change.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Device id.") var deviceID: String

        func run() async throws {
            let config = try await server.withClient { try await $0.getDeviceConfig(path: .init(deviceId: deviceID)).ok.body.json }
            print(try OutputOptions.json(config))
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Request a change, e.g. '{\"sampling_interval\":10}'; accepted fields are delivered at the next poll."
        )
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Device id.") var deviceID: String
        @Argument(help: "The config_update object (JSON).") var update: String
        @Flag(help: "Allow a device the server has never seen (pre-provisioning).") var create = false

        func run() async throws {
            let object: Components.Schemas.JSONObject
            do {
                object = try JSONDecoder().decode(Components.Schemas.JSONObject.self, from: Data(update.utf8))
            } catch {
                throw ValidationError("the update must be a JSON object, e.g. '{\"sampling_interval\":10}'")
            }
            let change = try await server.withClient { client in
                try await client.setDeviceConfig(
                    path: .init(deviceId: deviceID),
                    body: .json(.init(configUpdate: object, create: create ? true : nil))
                ).ok.body.json
            }
            print(try OutputOptions.json(change))
        }
    }

    struct Withdraw: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Withdraw the pending change before the device takes it.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Device id.") var deviceID: String

        func run() async throws {
            _ = try await server.withClient { try await $0.withdrawDeviceConfig(path: .init(deviceId: deviceID)).noContent }
            print("withdrawn")
        }
    }

    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Configuration events, newest first.")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var paging: PageOptions
        @Argument(help: "Device id.") var deviceID: String

        func run() async throws {
            let events = try await server.withClient { client in
                try await paging.pages { cursor in
                    let page = try await client.listDeviceConfigHistory(
                        path: .init(deviceId: deviceID),
                        query: .init(limit: paging.limit ?? 20, cursor: cursor)
                    ).ok.body.json
                    return (page.items, page.nextCursor)
                }
            }
            if output.output == .json { return try output.printJSON(events) }
            printTable(
                ["AT", "EVENT", "CONFIG"],
                try events.map { [$0.at.iso, $0.event.rawValue, try $0.config.map(OutputOptions.json) ?? "-"] }
            )
        }
    }
}

/// `ecowatt deployment list|show|cancel` and `ecowatt stats`.
struct DeploymentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deployment",
        abstract: "List, show and cancel firmware deployments (create one with `ecowatt firmware deploy`).",
        subcommands: [List.self, Show.self, Cancel.self]
    )

    static func rows(_ deployments: [Components.Schemas.Deployment]) -> [[String]] {
        deployments.map { deployment in
            [
                String(deployment.id), deployment.version, deployment.status.rawValue,
                deployment.deviceIds.map { "\($0.count) devices" } ?? "all", deployment.createdAt.iso,
            ]
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deployments, newest first.")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var paging: PageOptions
        @Flag(help: "Only active deployments.") var active = false

        func run() async throws {
            let deployments = try await server.withClient { client in
                try await paging.pages { cursor in
                    let page = try await client.listDeployments(
                        query: .init(limit: paging.limit ?? 100, cursor: cursor, status: active ? .active : nil)
                    ).ok.body.json
                    return (page.items, page.nextCursor)
                }
            }
            if output.output == .json { return try output.printJSON(deployments) }
            printTable(["ID", "VERSION", "STATUS", "TARGETS", "CREATED"], DeploymentCommand.rows(deployments))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a deployment as JSON.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Deployment id.") var id: Int64

        func run() async throws {
            let deployment = try await server.withClient { try await $0.getDeployment(path: .init(deploymentId: id)).ok.body.json }
            print(try OutputOptions.json(deployment))
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop offering a deployment's version.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Deployment id.") var id: Int64

        func run() async throws {
            let deployment = try await server.withClient { try await $0.cancelDeployment(path: .init(deploymentId: id)).ok.body.json }
            print("deployment \(deployment.id): \(deployment.status.rawValue)")
        }
    }
}

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "The server's statistics.")
    @OptionGroup var server: OperatorOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let stats = try await server.withClient { try await $0.getStats().ok.body.json }
        if output.output == .json { return try output.printJSON(stats) }
        printTable(
            ["FIGURE", "VALUE"],
            [
                ["packets", String(stats.compression.totalPackets)], ["decoded", String(stats.compression.decodedPackets)],
                ["validations", String(stats.security.totalValidations)],
                ["replays blocked", String(stats.security.replayAttacksBlocked)],
                ["commands", String(stats.commands.total)], ["active OTA sessions", String(stats.ota.activeSessions)],
                ["active deployments", String(stats.ota.activeDeployments)],
            ]
        )
    }
}
