import EcoWattProtocol
import EcoWattStorage
import Hummingbird

/// Device reports (spec §6): energy / power management and fault recovery.
struct ReportRoutes {
    let reports: ReportService
    let access: DeviceAccess
    let clock: @Sendable () -> Int64

    func registerDeviceRoutes(on router: some RouterMethods<EcoWattRequestContext>) {
        router.post("/power/energy/:id", use: addEnergy)
        router.post("/fault/recovery", use: addFault)
    }

    /// Largest report body: the firmware's are about 300 bytes (spec §6).
    static let maxBodyBytes = 4096

    /// `POST /power/energy/{id}`: lenient, because the firmware prints `nan`/`inf` and sends `techniques` as `"0x08"`.
    @Sendable func addEnergy(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        let now = clock()
        try Self.refuseElsewhere(deviceID, await access.standing(deviceID, request, context))
        var request = request
        let bytes = try await request.collectLimitedBody(limit: Self.maxBodyBytes)
        let body: JSONValue
        do {
            body = try JSONParser.parse(bytes, allowNonFinite: true)
        } catch {
            throw APIError(.badRequest, "Malformed JSON body: \(error.description)")
        }
        guard let power = body["power_management"], power.isObject else {
            throw APIError(.badRequest, "power_management object is required")
        }
        var report = PowerReport(deviceID: deviceID, receivedAtMs: now)
        (report.deviceTimeMs, report.deviceTimeInvalid) = DeviceTime.milliseconds(body["timestamp"]?.intValue, arrivalMs: now)
        report.enabled = power["enabled"]?.boolValue
        report.techniques = Self.techniques(power["techniques"])
        report.avgCurrentMA = power["avg_current_ma"]?.doubleValue
        report.energySavedMAh = power["energy_saved_mah"]?.doubleValue
        report.peripheralSavingsMAh = power["peripheral_savings_mah"]?.doubleValue
        report.uptimeMs = power["uptime_ms"]?.intValue
        report.highPerfMs = power["high_perf_ms"]?.intValue
        report.normalMs = power["normal_ms"]?.intValue
        report.lowPowerMs = power["low_power_ms"]?.intValue
        report.sleepMs = power["sleep_ms"]?.intValue
        try await reports.record(report)
        return JSONBody.response(status: .created, ["success": true, "device_id": .string(deviceID)])
    }

    /// Reports of a device bound to an address are taken from that address only (403 from elsewhere); a device with no
    /// verified upload keeps them under the pending caps (issue 13).
    static func refuseElsewhere(_ deviceID: String, _ standing: DeviceBinding.Standing) throws(BindingError) {
        if standing == .elsewhere { throw .elsewhere(deviceID) }
    }

    /// `"0x08"`, `"8"` or `8` → 8.
    static func techniques(_ value: JSONValue?) -> Int? {
        switch value {
        case .int(let number): return Int(exactly: number)
        case .string(let text):
            let lower = text.lowercased()
            return lower.hasPrefix("0x") ? Int(lower.dropFirst(2), radix: 16) : Int(lower)
        default: return nil
        }
    }

    /// `POST /fault/recovery`: the device id is in the body (spec §6.2).
    @Sendable func addFault(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        var request = request
        let body = try await request.jsonBody(limit: Self.maxBodyBytes)
        guard let deviceID = body["device_id"]?.stringValue, EcoWattRequestContext.isValidDeviceID(deviceID) else {
            throw APIError(.badRequest, "device_id must be 1-128 printable ASCII characters")
        }
        guard let faultType = body["fault_type"]?.stringValue, !faultType.isEmpty, faultType.count <= 64 else {
            throw APIError(.badRequest, "fault_type must be a short string")
        }
        guard let success = body["success"]?.boolValue else { throw APIError(.badRequest, "success must be a JSON boolean") }
        let now = clock()
        try Self.refuseElsewhere(deviceID, await access.standing(deviceID, request, context))
        let time = DeviceTime.seconds(body["timestamp"]?.intValue, arrivalMs: now)
        var event = FaultEvent(
            deviceID: deviceID,
            deviceTimeS: time.value,
            receivedAtMs: now,
            faultType: faultType,
            recoveryAction: body["recovery_action"]?.stringValue.map { String($0.prefix(64)) },
            success: success,
            details: body["details"]?.stringValue.map { String($0.prefix(512)) },
            retryCount: body["retry_count"]?.intValue.flatMap { Int(exactly: $0) }.map { min(max($0, 0), 1000) }
        )
        event.deviceTimeInvalid = time.invalid
        let id = try await reports.record(event)
        return JSONBody.response(["success": true, "message": "Recovery event recorded", "event_id": .int(id)])
    }

}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
