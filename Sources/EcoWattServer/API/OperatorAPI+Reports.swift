import EcoWattAPI
import EcoWattProtocol
import EcoWattStorage
import Foundation
import OpenAPIRuntime

// Device reports: energy, fault recovery and diagnostics.
extension OperatorAPI {
    func listEnergyReports(_ input: Operations.ListEnergyReports.Input) async throws -> Operations.ListEnergyReports.Output {
        let limit = try Self.limit(input.query.limit, default: 100, maximum: 1000)
        let rows = try await reports.powerReports(
            deviceID: input.path.deviceId,
            sinceMs: input.query.since.map(MillisecondDates.milliseconds) ?? .min,
            before: try PageCursor.integer(input.query.cursor),
            limit: limit
        )
        let next = rows.count == limit ? rows.last.map { PageCursor.encode($0.id) } : nil
        return .ok(.init(body: .json(.init(items: rows.map(Schemas.EnergyReport.init), nextCursor: next))))
    }

    func listFaultReports(_ input: Operations.ListFaultReports.Input) async throws -> Operations.ListFaultReports.Output {
        let limit = try Self.limit(input.query.limit, default: 100, maximum: 1000)
        let (events, total, successful) = try await reports.faultEvents(
            deviceID: input.path.deviceId,
            before: try PageCursor.integer(input.query.cursor),
            limit: limit
        )
        let next = events.count == limit ? events.last.map { PageCursor.encode($0.id) } : nil
        let page = Schemas.FaultReportPage(
            items: events.map(Schemas.FaultReport.init),
            total: Int64(total),
            successful: Int64(successful),
            nextCursor: next
        )
        return .ok(.init(body: .json(page)))
    }

    /// Diagnostics ids are also file names: 1-64 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`.
    static func diagnosticsID(_ id: String) throws -> String {
        guard SafeIdentifier.isValid(id) else {
            throw APIError(.badRequest, "Diagnostics are kept for ids of 1-64 characters of A-Z a-z 0-9 . _ - only", code: "invalid")
        }
        return id
    }

    /// Newest first. The cursor counts the entries already returned (diagnostics are lines of files, not rows).
    func listDeviceDiagnostics(_ input: Operations.ListDeviceDiagnostics.Input) async throws -> Operations.ListDeviceDiagnostics.Output {
        let id = try Self.diagnosticsID(input.path.deviceId)
        let limit = try Self.limit(input.query.limit, default: 10, maximum: 10_000)
        let offset = Int(try PageCursor.integer(input.query.cursor) ?? 0)
        guard (0...1_000_000).contains(offset) else { throw PageCursor.invalid }
        let entries = try await diagnostics.entries(deviceID: id, limit: offset + limit).dropFirst(offset)
        let next = entries.count == limit ? PageCursor.encode(Int64(offset + limit)) : nil
        return .ok(.init(body: .json(.init(deviceId: id, items: entries.map(Schemas.JSONObject.init), nextCursor: next))))
    }

    func deleteDeviceDiagnostics(_ input: Operations.DeleteDeviceDiagnostics.Input) async throws -> Operations.DeleteDeviceDiagnostics.Output {
        let id = try Self.diagnosticsID(input.path.deviceId)
        let removed = try await diagnostics.delete(deviceID: id)
        guard removed > 0 else { throw APIError(.notFound, "No diagnostics for \(id)") }
        return .ok(.init(body: .json(.init(deviceId: id, filesRemoved: removed))))
    }

    func getDiagnosticsSummary(_ input: Operations.GetDiagnosticsSummary.Input) async throws -> Operations.GetDiagnosticsSummary.Output {
        let ids = try await diagnostics.devices()
        var entries: [Schemas.DiagnosticsSummaryEntry] = []
        for id in ids.prefix(1000) {
            let summary = try await diagnostics.summary(deviceID: id)
            entries.append(
                Schemas.DiagnosticsSummaryEntry(
                    deviceId: id,
                    entries: Int64(summary.entries),
                    files: summary.files,
                    bytes: Int64(summary.bytes),
                    lastReceivedAt: summary.lastReceivedAt
                )
            )
        }
        return .ok(.init(body: .json(.init(deviceCount: ids.count, devices: entries))))
    }
}
