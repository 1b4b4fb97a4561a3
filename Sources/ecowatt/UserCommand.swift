import ArgumentParser
import EcoWattAPI
import Foundation

/// A password from the terminal (asked twice, not echoed) or the first line of stdin; never from a flag.
enum PasswordInput {
    static func read(_ prompt: String, confirm: Bool) throws -> String {
        if isatty(STDIN_FILENO) != 0 {
            guard let first = getpass(prompt).map({ String(cString: $0) }) else { throw ValidationError("no password given") }
            if confirm {
                guard let second = getpass("Again: ").map({ String(cString: $0) }), second == first else {
                    throw ValidationError("the passwords differ")
                }
            }
            return first
        }
        guard let line = Swift.readLine(strippingNewline: true), !line.isEmpty else {
            throw ValidationError("no password on stdin (the first line is the password)")
        }
        return line
    }
}

/// `ecowatt user …`: operator accounts through the API (admin).
struct UserCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user",
        abstract: "Add, list, change and remove operator accounts (admin; the first admin with the bootstrap token).",
        discussion: "Passwords come from a prompt, or from the first line of stdin; never from a flag.",
        subcommands: [Add.self, List.self, Passwd.self, SetRole.self, Disable.self, Enable.self, Remove.self]
    )

    typealias User = Components.Schemas.User

    static func show(_ users: [User], _ output: OutputOptions) throws {
        if output.output == .json { return try output.printJSON(users) }
        printTable(
            ["USER", "ROLE", "STATE", "CREATED"],
            users.map { [$0.name, $0.role.rawValue, $0.disabled ? "disabled" : "active", $0.createdAt.iso] }
        )
    }

    static func role(_ name: String) throws -> Components.Schemas.Role {
        guard let role = Components.Schemas.Role(rawValue: name) else { throw ValidationError("role is viewer, operator or admin") }
        return role
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a user (password from a prompt or stdin).")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "User name (a-z, 0-9, '.', '_', '-').") var name: String
        @Option(help: "viewer, operator or admin.") var role: String

        func run() async throws {
            let role = try UserCommand.role(role)
            let password = try PasswordInput.read("Password for \(name): ", confirm: true)
            let user = try await server.withClient {
                try await $0.createUser(body: .json(.init(name: name, role: role, password: password))).created.body.json
            }
            try UserCommand.show([user], output)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List users.")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try UserCommand.show(try await server.withClient { try await $0.listUsers().ok.body.json.items }, output)
        }
    }

    /// One change to a user.
    static func change(_ server: OperatorOptions, _ output: OutputOptions, _ name: String, _ update: Components.Schemas.UserUpdate) async throws {
        let user = try await server.withClient {
            try await $0.updateUser(path: .init(name: name), body: .json(update)).ok.body.json
        }
        try show([user], output)
    }

    struct Passwd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set a user's password (ends their sessions).")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "User name.") var name: String

        func run() async throws {
            let password = try PasswordInput.read("New password for \(name): ", confirm: true)
            try await UserCommand.change(server, output, name, .init(password: password))
        }
    }

    struct SetRole: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-role", abstract: "Change a user's role.")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "User name.") var name: String
        @Argument(help: "viewer, operator or admin.") var role: String

        func run() async throws { try await UserCommand.change(server, output, name, .init(role: try UserCommand.role(role))) }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable a user (sessions end, tokens stop working).")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "User name.") var name: String

        func run() async throws { try await UserCommand.change(server, output, name, .init(disabled: true)) }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a disabled user.")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "User name.") var name: String

        func run() async throws { try await UserCommand.change(server, output, name, .init(disabled: false)) }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a user with their sessions and tokens.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "User name.") var name: String

        func run() async throws {
            _ = try await server.withClient { try await $0.deleteUser(path: .init(name: name)).noContent }
            print("removed \(name)")
        }
    }
}

/// `ecowatt token …`: API tokens.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Create, list and revoke API tokens; revoke the bootstrap token.",
        discussion: """
            `token create NAME --user alice` logs in as alice (password from a prompt or stdin) and prints the new token
            once on stdout, e.g. `ecowatt token create laptop --user alice > ~/.config/ecowatt/token`.
            """,
        subcommands: [Create.self, List.self, Revoke.self, RevokeBootstrap.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a token; the secret is printed once.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "A name for the token (what uses it).") var name: String
        @Option(help: "Log in as this user (password from a prompt or stdin) instead of using the current token.") var user: String?
        @Option(help: "viewer, operator or admin (at most your role; default yours).") var role: String?
        @Option(help: "Days until it expires (default: never).") var expiresInDays: Int?

        func run() async throws {
            let body = Components.Schemas.TokenCreate(name: name, role: try role.map(UserCommand.role), expiresInDays: expiresInDays)
            let create: (Client) async throws -> Components.Schemas.NewToken = { try await $0.createToken(body: .json(body)).created.body.json }
            let token: Components.Schemas.NewToken
            if let user {
                let password = try PasswordInput.read("Password for \(user): ", confirm: false)
                token = try await server.withSession(user: user, password: password, create)
            } else {
                token = try await server.withClient(create)
            }
            FileHandle.standardError.write(
                Data("token \(token.token.id) \"\(token.token.name)\" (\(token.token.role.rawValue)) created; it is shown only now:\n".utf8)
            )
            print(token.secret)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List your tokens (prefix only), or everyone's with --all (admin).")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @Flag(help: "Every user's tokens (admin).") var all = false

        func run() async throws {
            let tokens = try await server.withClient { try await $0.listTokens(query: .init(all: all)).ok.body.json.items }
            if output.output == .json { return try output.printJSON(tokens) }
            printTable(
                ["ID", "NAME", "USER", "ROLE", "PREFIX", "CREATED", "EXPIRES", "LAST USED", "REVOKED"],
                tokens.map {
                    [
                        "\($0.id)", $0.name, $0.user, $0.role.rawValue, $0.prefix + "…", $0.createdAt.iso, $0.expiresAt?.iso ?? "-",
                        $0.lastUsedAt?.iso ?? "-", $0.revokedAt?.iso ?? "-",
                    ]
                }
            )
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token (yours; an admin: anyone's).")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Token id (from `token list`).") var id: Int64

        func run() async throws {
            let token = try await server.withClient { try await $0.revokeToken(path: .init(tokenId: id)).ok.body.json }
            print("revoked token \(token.id) \"\(token.name)\" of \(token.user)")
        }
    }

    struct RevokeBootstrap: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "revoke-bootstrap",
            abstract: "Revoke keys/operator_token for good (create an admin user and a token first)."
        )
        @OptionGroup var server: OperatorOptions

        func run() async throws {
            _ = try await server.withClient { try await $0.revokeBootstrapToken().noContent }
            print("the bootstrap token is revoked")
        }
    }
}
