import ArgumentParser
import EcoWattAPI
import Foundation

/// `ecowatt command queue|list|cancel|status`: device commands through the operator API.
struct CommandCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "command",
        abstract: "Queue, list and cancel device commands on a running server.",
        subcommands: [Queue.self, List.self, Cancel.self, Status.self]
    )

    typealias Action = Components.Schemas.CommandCreate.ActionPayload

    struct Queue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Queue a command for a device.",
            discussion: """
                Actions: write_register (needs --register and --value), set_power (--value watts 0-10000),
                set_power_percentage (--value 0-100), get_power_stats, get_peripheral_stats, reset_power_stats,
                reset_peripheral_stats. Prints the command id.
                """
        )
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Device id.") var deviceID: String
        @Argument(help: "Action.") var action: String
        @Option(help: "Target register: a name (export_power, Pow, …) or an address.") var register: String?
        @Option(help: "Integer value.") var value: Int?
        @Option(help: "Expire if not delivered within this many seconds (default: the server's command_default_ttl_seconds).")
        var ttl: Int?
        @Option(help: "Idempotency key: queuing again with the same key returns the first command.") var idempotencyKey: String?
        @Flag(help: "Queue for a device the server has never seen (pre-provisioning).") var create = false

        func validate() throws {
            guard Action(rawValue: action) != nil else {
                throw ValidationError("unknown action '\(action)'; one of \(Action.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }

        func run() async throws {
            let body = Components.Schemas.CommandCreate(
                action: Action(rawValue: action)!,
                targetRegister: register,
                value: value,
                ttlSeconds: ttl,
                idempotencyKey: idempotencyKey,
                create: create ? true : nil
            )
            let command = try await server.withClient { client in
                let output = try await client.queueCommand(path: .init(deviceId: deviceID), body: .json(body))
                return try output.created.body.json
            }
            print(command.commandId)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a device's commands, newest first.")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var paging: PageOptions
        @Argument(help: "Device id.") var deviceID: String
        @Option(help: "Only commands in this state (pending, dispatched, completed, failed, timed_out, cancelled, expired).")
        var status: String?

        func run() async throws {
            let state = try status.map { name in
                guard let state = Components.Schemas.CommandStatus(rawValue: name) else { throw ValidationError("unknown status '\(name)'") }
                return state
            }
            let commands = try await server.withClient { client in
                try await paging.pages { cursor in
                    let page = try await client.listDeviceCommands(
                        path: .init(deviceId: deviceID),
                        query: .init(limit: paging.limit ?? 20, cursor: cursor, status: state)
                    ).ok.body.json
                    return (page.items, page.nextCursor)
                }
            }
            if output.output == .json { return try output.printJSON(commands) }
            printTable(
                ["COMMAND", "STATUS", "ACTION", "VALUE", "CREATED", "RESULT"],
                commands.map {
                    [$0.commandId, $0.status.rawValue, $0.action, $0.value.map(String.init) ?? "-", $0.createdAt.iso, $0.resultStatus ?? "-"]
                }
            )
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a pending command.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Command id.") var commandID: String

        func run() async throws {
            let command = try await server.withClient { try await $0.cancelCommand(path: .init(commandId: commandID)).ok.body.json }
            print(command.status.rawValue)
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one command as JSON.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Command id.") var commandID: String

        func run() async throws {
            let command = try await server.withClient { try await $0.getCommand(path: .init(commandId: commandID)).ok.body.json }
            print(try OutputOptions.json(command))
        }
    }
}
