import EcoWattProtocol
import Foundation
import Hummingbird

/// Device-facing telemetry upload route (spec §1.2 E).
struct TelemetryRoutes {
    let ingest: IngestService
    let activity: DeviceActivity
    let boot: BootMessages
    let access: DeviceAccess
    let watch: UploadWatch
    let maxBodyBytes: Int
    let clock: @Sendable () -> Int64

    func register(on router: some RouterMethods<EcoWattRequestContext>) {
        router.post("/aggregated/:id", use: upload)
    }

    /// `POST /aggregated/{id}`: 200 only once the upload is durably stored. A verified upload binds the device to its
    /// client address, and confirms the boot messages held from that address.
    @Sendable func upload(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        var request = request
        let body = try await request.collectLimitedBody(limit: maxBodyBytes)
        let arrivalMs = clock()
        let address = access.address(request, context)
        let outcome: IngestOutcome
        do {
            outcome = try await ingest.ingest(
                deviceID: deviceID,
                body: body,
                arrivalMs: arrivalMs,
                clientAddress: address,
                bootSignalAtMs: await boot.bootSignal(deviceID: deviceID, address: address, nowMs: arrivalMs)
            )
        } catch {
            watch.refused(deviceID, error, address: address, atMs: arrivalMs)
            throw error
        }
        await watch.accepted(deviceID, outcome, atMs: arrivalMs)
        if access.binding.bind(deviceID, address: address, atMs: arrivalMs) { await boot.notices.announce(.binding, deviceID) }
        // Tracked from its first verified upload on (refused uploads never add an id).
        activity.admit(deviceID, at: arrivalMs)
        await boot.confirm(deviceID: deviceID, address: address, nowMs: arrivalMs)
        return JSONBody.response([
            "success": true, "device_id": .string(deviceID), "packets_processed": .int(Int64(outcome.packets.count)),
            "samples_stored": .int(Int64(outcome.samplesStored)), "undecodable_packets": .int(Int64(outcome.undecodable)),
            "resent_packets": .int(Int64(outcome.resent)),
        ])
    }
}
