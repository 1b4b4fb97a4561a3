import ArgumentParser
import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import Foundation

/// `ecowatt device …`: the registry through the operator API; `set-key` writes straight to the database.
struct DeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device",
        abstract: "List, show, create, edit and delete devices; provision, rotate and revoke their keys; accept pending ones.",
        subcommands: [
            List.self, Show.self, Create.self, Edit.self, Delete.self, Provision.self, RotateKey.self, Revoke.self, Accept.self,
            Credentials.self, SetKey.self,
        ]
    )

    struct SetKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-key",
            abstract: "Set (or --remove) a device's own HMAC key, overriding the fleet key.",
            discussion: "A running server picks the change up within 5 seconds."
        )

        @Argument(help: "Device id, as in the upload URL.") var deviceID: String
        @Argument(help: "Key as hex (at least 16 bytes). Omit with --remove.") var key: String?
        @Flag(help: "Remove the device's key (the fleet key applies again).") var remove = false
        @Option(help: "Database directory (env ECOWATT_DATA_DIR, default ./data).") var dataDir: String?

        func validate() throws {
            if remove == (key != nil) { throw ValidationError("give either a key or --remove") }
            if let key, HexCoding.decode(key).map({ $0.count >= 16 }) != true {
                throw ValidationError("the key must be at least 16 bytes of hex")
            }
        }

        func run() async throws {
            let directory = dataDir ?? ProcessInfo.processInfo.environment["ECOWATT_DATA_DIR"] ?? "./data"
            let database = try EcoWattDatabase(path: EcoWattDatabase.path(inDirectory: directory))
            let bytes = key.flatMap { HexCoding.decode($0) }
            try await database.setDeviceKey(deviceID: deviceID, key: bytes)
            try database.close(checkpoint: false)  // a running server checkpoints
            print(remove ? "removed the key of \(deviceID)" : "set the key of \(deviceID)")
        }
    }
}
