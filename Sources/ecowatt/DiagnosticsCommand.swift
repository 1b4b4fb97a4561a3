import ArgumentParser
import EcoWattAPI
import Foundation

/// `ecowatt diagnostics …`: what devices and test rigs posted to `POST /diagnostics/{id}`, from any backend (files on
/// SQLite, rows on PostgreSQL) through the operator API.
struct DiagnosticsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diagnostics",
        abstract: "Export a device's diagnostics as JSON Lines, or summarise who sent how much.",
        subcommands: [Export.self, Summary.self]
    )

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A device's diagnostics oldest first, one JSON object per line (the JSONL of the diagnostics files)."
        )
        @OptionGroup var server: OperatorOptions
        @Argument(help: "The device id.") var deviceID: String

        func run() async throws {
            try await server.withClient { client in
                // The API pages newest first; the budget per device bounds what is collected before printing.
                var entries: [Components.Schemas.JSONObject] = []
                var cursor: String?
                repeat {
                    let page = try await client.listDeviceDiagnostics(
                        path: .init(deviceId: deviceID),
                        query: .init(limit: 10_000, cursor: cursor)
                    ).ok.body.json
                    entries += page.items
                    cursor = page.nextCursor
                    if cursor != nil { FileHandle.standardError.write(Data("… \(entries.count) entries\n".utf8)) }
                } while cursor != nil
                for entry in entries.reversed() { print(try OutputOptions.json(entry)) }
                FileHandle.standardError.write(Data("exported \(entries.count) entries of \(deviceID)\n".utf8))
            }
        }
    }

    struct Summary: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Devices with diagnostics: entries, bytes, the newest entry's time.")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            let summary = try await server.withClient { try await $0.getDiagnosticsSummary().ok.body.json }
            if output.output == .json { return try output.printJSON(summary) }
            print("device".padding(toLength: 24, withPad: " ", startingAt: 0) + "entries     bytes  files  last received")
            for device in summary.devices {
                print(
                    device.deviceId.padding(toLength: 24, withPad: " ", startingAt: 0)
                        + String(device.entries).leftPadded(7) + String(device.bytes).leftPadded(10) + String(device.files).leftPadded(7)
                        + "  " + (device.lastReceivedAt ?? "-")
                )
            }
            print("\(summary.deviceCount) devices")
        }
    }
}

extension String {
    /// Right-aligned in `width` columns.
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
