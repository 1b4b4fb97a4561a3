import ArgumentParser
import EcoWattAPI
import Foundation

/// `ecowatt device provision|rotate-key|revoke|accept|credentials` (admin).
extension DeviceCommand {
    /// Writes an issued key's `security.cpp` snippet to `out` (0600) or stdout; the summary goes to stderr.
    static func deliver(_ issued: Components.Schemas.DeviceKeyIssued, out: String?, what: String) throws {
        let note = "\(what) for \(issued.deviceId) (fingerprint \(issued.credentials.keyFingerprint ?? issued.credentials.nextKeyFingerprint ?? "-"))"
        if let out {
            guard FileManager.default.createFile(atPath: out, contents: Data(issued.securityCpp.utf8), attributes: [.posixPermissions: 0o600])
            else { throw ValidationError("cannot write \(out)") }
            FileHandle.standardError.write(Data("\(note): security.cpp key written to \(out)\n".utf8))
        } else {
            FileHandle.standardError.write(Data("\(note); put this in the device's security.cpp:\n".utf8))
            print(issued.securityCpp, terminator: "")
        }
    }

    struct Provision: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a device with its own random 256-bit key and print its security.cpp key snippet."
        )
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Device id.") var deviceID: String
        @Flag(help: "Replace an existing key (and lift a revocation).") var replace = false
        @Option(help: "Write the snippet to this file (mode 0600) instead of stdout.") var out: String?

        func run() async throws {
            let issued = try await server.withClient {
                try await $0.provisionDevice(path: .init(deviceId: deviceID), body: .json(.init(replace: replace))).created.body.json
            }
            try DeviceCommand.deliver(issued, out: out, what: "provisioned")
        }
    }

    struct RotateKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-key",
            abstract: "Issue a device's next key: both keys work until its first upload under the new one."
        )
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Device id.") var deviceID: String
        @Option(help: "Write the snippet to this file (mode 0600) instead of stdout.") var out: String?

        func run() async throws {
            let issued = try await server.withClient { try await $0.rotateDeviceKey(path: .init(deviceId: deviceID)).created.body.json }
            try DeviceCommand.deliver(issued, out: out, what: "next key issued")
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Refuse a device's uploads from now on (provision --replace to undo).")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Device id.") var deviceID: String

        func run() async throws {
            let state = try await server.withClient { try await $0.revokeDevice(path: .init(deviceId: deviceID)).ok.body.json }
            print("revoked \(state.deviceId) at \(state.revokedAt?.iso ?? "-")")
        }
    }

    struct Accept: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Admit a pending device (device_admission = known).")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "Device id.") var deviceID: String

        func run() async throws {
            let device = try await server.withClient { try await $0.acceptDevice(path: .init(deviceId: deviceID)).ok.body.json }
            try DeviceCommand.show(device, output)
        }
    }

    struct Credentials: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A device's key state (fingerprints, never the key).")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "Device id.") var deviceID: String

        func run() async throws {
            let state = try await server.withClient { try await $0.getDeviceCredentials(path: .init(deviceId: deviceID)).ok.body.json }
            if output.output == .json { return try output.printJSON(state) }
            printTable(
                ["DEVICE", "KEY", "NEXT KEY", "REVOKED"],
                [
                    [
                        state.deviceId, state.ownKey ? state.keyFingerprint ?? "own" : "fleet key",
                        state.nextKeyPending ? state.nextKeyFingerprint ?? "pending" : "-", state.revokedAt?.iso ?? "-",
                    ]
                ]
            )
        }
    }
}
