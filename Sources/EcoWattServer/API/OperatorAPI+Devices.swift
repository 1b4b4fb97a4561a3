import EcoWattAPI
import EcoWattProtocol
import EcoWattStorage
import Foundation
import OpenAPIRuntime

// Devices, their telemetry and packets, and the anti-replay reset.
extension OperatorAPI {
    func listDevices(_ input: Operations.ListDevices.Input) async throws -> Operations.ListDevices.Output {
        let query = input.query
        let limit = try Self.limit(query.limit, default: 100, maximum: 1000)
        let after = try PageCursor.decode(query.cursor, count: 1)?.first
        let filter = DeviceService.Query(
            stored: DeviceFilter(firmwareVersion: query.firmwareVersion, idPrefix: query.idPrefix, admission: query.admission?.rawValue),
            status: query.status.flatMap { DeviceService.Status(rawValue: $0.rawValue) },
            lastSeenAfterMs: query.lastSeenAfter.map(MillisecondDates.milliseconds),
            lastSeenBeforeMs: query.lastSeenBefore.map(MillisecondDates.milliseconds)
        )
        let page = try await devices.devices(after: after, limit: limit, query: filter)
        let now = clock()
        let problems = eventLog.problemCounts(sinceMs: now - DeviceEventLog.dayMs)
        let items = page.items.map { listing in
            var device = Schemas.Device(listing)
            device.recentProblems = problems[listing.row.deviceID].map(Int64.init)
            if let vitals = vitals.vitals(listing.row.deviceID, nowMs: now) {
                device.latestPowerW = vitals.powerW
                device.latestPowerAt = vitals.powerAtMs.map(date)
                device.uploadsPerHour = vitals.uploadsPerHour
            }
            return device
        }
        return .ok(.init(body: .json(.init(items: items, nextCursor: page.next.map { PageCursor.encode([$0]) }))))
    }

    func getFleetSummary(_ input: Operations.GetFleetSummary.Input) async throws -> Operations.GetFleetSummary.Output {
        .ok(.init(body: .json(.now(devices: devices, ota: ota, ingest: ingest, problems: eventLog, nowMs: clock()))))
    }

    func createDevice(_ input: Operations.CreateDevice.Input) async throws -> Operations.CreateDevice.Output {
        guard case .json(let body) = input.body else { throw APIError(.unsupportedMediaType, "application/json expected") }
        let id = try Self.deviceID(body.deviceId)
        let created = try await devices.create(
            id,
            fields: DeviceFields(deviceName: body.deviceName, location: body.location, description: body.description)
        )
        return .created(.init(body: .json(.init(created))))
    }

    func getDevice(_ input: Operations.GetDevice.Input) async throws -> Operations.GetDevice.Output {
        .ok(.init(body: .json(.init(try await devices.device(input.path.deviceId)))))
    }

    func updateDevice(_ input: Operations.UpdateDevice.Input) async throws -> Operations.UpdateDevice.Output {
        guard case .json(let body) = input.body else { throw APIError(.unsupportedMediaType, "application/json expected") }
        let fields = DeviceFields(deviceName: body.deviceName, location: body.location, description: body.description)
        return .ok(.init(body: .json(.init(try await devices.update(input.path.deviceId, fields: fields)))))
    }

    func deleteDevice(_ input: Operations.DeleteDevice.Input) async throws -> Operations.DeleteDevice.Output {
        try await devices.delete(input.path.deviceId)
        return .noContent(.init())
    }

    func resetDeviceNonce(_ input: Operations.ResetDeviceNonce.Input) async throws -> Operations.ResetDeviceNonce.Output {
        let id = try Self.deviceID(input.path.deviceId)
        let existed = try await ingest.resetNonce(deviceID: id)
        return .ok(.init(body: .json(.init(deviceId: id, hadNonceState: existed))))
    }

    func getLatestTelemetry(_ input: Operations.GetLatestTelemetry.Input) async throws -> Operations.GetLatestTelemetry.Output {
        let id = input.path.deviceId
        let sample = try await telemetry.latest(id)
        let registers = sample.registerLayout.compactMap(Register.init(rawValue:)).map { register in
            Schemas.RegisterInfo(name: register.name, unit: register.unit, gain: register.gain, decimals: register.decimals)
        }
        return .ok(.init(body: .json(.init(deviceId: id, sample: .init(sample), registers: registers))))
    }

    /// Oldest first. The cursor is the time of the page's last item and how many items of that time were returned, so
    /// that items of one millisecond split across pages come exactly once.
    func getTelemetry(_ input: Operations.GetTelemetry.Input) async throws -> Operations.GetTelemetry.Output {
        let query = input.query
        let id = input.path.deviceId
        let limit = try Self.limit(query.limit, default: 1000, maximum: 10_000)
        let end = query.end.map(MillisecondDates.milliseconds) ?? clock()
        let start = query.start.map(MillisecondDates.milliseconds) ?? end.subtractingReportingOverflow(86_400_000).partialValue
        var from = start
        var skip = 0
        if let fields = try PageCursor.decode(query.cursor, count: 2) {
            guard let time = Int64(fields[0]), let count = Int(fields[1]), time >= start, (1...100_000).contains(count) else {
                throw PageCursor.invalid
            }
            (from, skip) = (time, count)
        }
        // The resolution follows the whole window, not the rest of it.
        let resolution = try TelemetryQueries.resolution(query.resolution?.rawValue, fromMs: start, toMs: end)
        let history = try await telemetry.history(
            deviceID: id,
            fromMs: from,
            toMs: end,
            resolution: resolution?.rawValue ?? "raw",
            limit: limit + skip
        )
        let times = resolution == nil ? history.samples.map(\.timestampMs) : history.rollups.map(\.bucketMs)
        let kept = max(0, times.count - skip)
        var next: String?
        if times.count == limit + skip, let last = times.last {
            // Items of one time are contiguous: those of `last` (including skipped ones when `last == from`).
            let trailing = times.reversed().prefix { $0 == last }.count
            next = PageCursor.encode([String(last), String(trailing)])
        }
        var page = Schemas.TelemetryPage(
            deviceId: id,
            resolution: Schemas.Resolution(rawValue: resolution?.rawValue ?? "raw")!,
            start: date(start),
            end: date(end),
            nextCursor: next
        )
        if resolution == nil {
            page.samples = history.samples.suffix(kept).map(Schemas.Sample.init)
        } else {
            page.rollups = history.rollups.suffix(kept).map(Schemas.Rollup.init)
        }
        return .ok(.init(body: .json(page)))
    }

    func listPackets(_ input: Operations.ListPackets.Input) async throws -> Operations.ListPackets.Output {
        let limit = try Self.limit(input.query.limit, default: 100, maximum: 1000)
        let rows = try await telemetry.packets(deviceID: input.path.deviceId, before: try PageCursor.integer(input.query.cursor), limit: limit)
        let next = rows.count == limit ? rows.last.map { PageCursor.encode($0.id) } : nil
        return .ok(.init(body: .json(.init(items: rows.map(Schemas.Packet.init), nextCursor: next))))
    }
}
