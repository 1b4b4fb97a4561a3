import ArgumentParser
import EcoWattAPI
import Foundation

extension DeviceCommand {
    typealias Device = Components.Schemas.Device

    static func rows(_ devices: [Device]) -> [[String]] {
        devices.map { device in
            [
                device.deviceId, device.status.rawValue, device.firmwareVersion ?? "-", device.lastSeen.iso, device.admission.rawValue,
                device.deviceName ?? "-",
            ]
        }
    }

    static func show(_ device: Device, _ output: OutputOptions) throws {
        if output.output == .json { return try output.printJSON(device) }
        printTable(["DEVICE", "STATUS", "FIRMWARE", "LAST SEEN", "ADMISSION", "NAME"], rows([device]))
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List devices by id, filtered.")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var paging: PageOptions
        @Option(help: "online, offline or updating.") var status: String?
        @Option(help: "Only devices reporting this firmware version.") var firmware: String?
        @Option(help: "Only ids starting with this.") var prefix: String?
        @Option(help: "pending (ids waiting to be accepted), verified or operator.") var admission: String?

        func run() async throws {
            let admitted = try admission.map { name in
                guard let value = Operations.ListDevices.Input.Query.AdmissionPayload(rawValue: name) else {
                    throw ValidationError("admission is pending, verified or operator")
                }
                return value
            }
            let state = try status.map { name in
                guard let state = Components.Schemas.DeviceStatus(rawValue: name) else {
                    throw ValidationError("status is online, offline or updating")
                }
                return state
            }
            let devices = try await server.withClient { client in
                try await paging.pages { cursor in
                    let query = Operations.ListDevices.Input.Query(
                        limit: paging.limit ?? 100,
                        cursor: cursor,
                        status: state,
                        firmwareVersion: firmware,
                        idPrefix: prefix,
                        admission: admitted
                    )
                    let page = try await client.listDevices(query: query).ok.body.json
                    return (page.items, page.nextCursor)
                }
            }
            if output.output == .json { return try output.printJSON(devices) }
            printTable(["DEVICE", "STATUS", "FIRMWARE", "LAST SEEN", "ADMISSION", "NAME"], DeviceCommand.rows(devices))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a device.")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "Device id.") var deviceID: String

        func run() async throws {
            let device = try await server.withClient { try await $0.getDevice(path: .init(deviceId: deviceID)).ok.body.json }
            try DeviceCommand.show(device, output)
        }
    }

    struct Fields: ParsableArguments {
        @Option(help: "Name.") var name: String?
        @Option(help: "Location.") var location: String?
        @Option(help: "Description.") var description: String?
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pre-provision a device before it first connects.")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var fields: Fields
        @Argument(help: "Device id.") var deviceID: String

        func run() async throws {
            let body = Components.Schemas.DeviceCreate(
                deviceId: deviceID,
                deviceName: fields.name,
                location: fields.location,
                description: fields.description
            )
            let device = try await server.withClient { try await $0.createDevice(body: .json(body)).created.body.json }
            try DeviceCommand.show(device, output)
        }
    }

    struct Edit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set a device's name, location or description.")
        @OptionGroup var server: OperatorOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var fields: Fields
        @Argument(help: "Device id.") var deviceID: String

        func run() async throws {
            let body = Components.Schemas.DeviceUpdate(deviceName: fields.name, location: fields.location, description: fields.description)
            let device = try await server.withClient {
                try await $0.updateDevice(path: .init(deviceId: deviceID), body: .json(body)).ok.body.json
            }
            try DeviceCommand.show(device, output)
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forget a device: registry row, nonce and decoder state, binding, pending commands. Telemetry stays."
        )
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Device id.") var deviceID: String

        func run() async throws {
            _ = try await server.withClient { try await $0.deleteDevice(path: .init(deviceId: deviceID)).noContent }
            print("deleted \(deviceID)")
        }
    }
}
