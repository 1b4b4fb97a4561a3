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

    func registerOperatorRoutes(on router: some RouterMethods<EcoWattRequestContext>) {
        router.get("/power/energy/:id", use: energy)
        router.get("/fault/recovery/:id", use: faults)
    }

    /// Largest report body: the firmware's are about 300 bytes (spec §6).
    static let maxBodyBytes = 4096

    /// `POST /power/energy/{id}`: lenient, because the firmware prints `nan`/`inf` and sends `techniques` as `"0x08"`.
    @Sendable func addEnergy(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        let now = clock()
        try Self.refuseElsewhere(deviceID, access.standing(deviceID, request, context))
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

    @Sendable func energy(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        let period = request.uri.queryParameters["period"].map(String.init) ?? "24h"
        let spans: [String: Int64] = ["1h": 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000, "30d": 30 * 86_400_000, "all": .max]
        guard let span = spans[period] else { throw APIError(.badRequest, "period must be one of 1h, 24h, 7d, 30d, all") }
        let limit = try request.limitParameter(default: 100, maximum: 10_000)
        let since = span == .max ? Int64.min : clock() - span
        let reports = try await reports.powerReports(deviceID: deviceID, sinceMs: since, limit: limit)
        func number(_ value: Double?) -> JSONValue { value.map(JSONValue.double) ?? .null }
        func integer(_ value: Int64?) -> JSONValue { value.map(JSONValue.int) ?? .null }
        return JSONBody.response([
            "success": true, "device_id": .string(deviceID), "period": .string(period), "count": .int(Int64(reports.count)),
            "reports": .array(
                reports.map { report in
                    // A device time above 1e12 ms is a synced epoch time; otherwise it is millis() since boot.
                    let time = report.deviceTimeMs.flatMap { $0 > 1_000_000_000_000 ? $0 : nil } ?? report.receivedAtMs
                    return .object([
                        ("timestamp", .string(QueryRoutes.iso(time))), ("received_at", .string(QueryRoutes.iso(report.receivedAtMs))),
                        ("device_time_invalid", .bool(report.deviceTimeInvalid)),
                        ("enabled", report.enabled.map(JSONValue.bool) ?? .null),
                        ("techniques", report.techniques.map { .string("0x" + String($0, radix: 16, uppercase: true).leftPadded(2)) } ?? .null),
                        ("techniques_list", .array(report.techniques.map { $0 & 0x08 != 0 ? [.string("peripheral_gating")] : [] } ?? [])),
                        ("avg_current_ma", number(report.avgCurrentMA)), ("energy_saved_mah", number(report.energySavedMAh)),
                        ("peripheral_savings_mah", number(report.peripheralSavingsMAh)), ("uptime_ms", integer(report.uptimeMs)),
                        (
                            "time_distribution",
                            .object([
                                ("high_perf_ms", integer(report.highPerfMs)), ("normal_ms", integer(report.normalMs)),
                                ("low_power_ms", integer(report.lowPowerMs)), ("sleep_ms", integer(report.sleepMs)),
                            ])
                        ),
                    ])
                }
            ),
        ])
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
        try Self.refuseElsewhere(deviceID, access.standing(deviceID, request, context))
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

    @Sendable func faults(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        let limit = try request.limitParameter(default: 50, maximum: 10_000)
        let (events, total, successful) = try await reports.faultEvents(deviceID: deviceID, limit: limit)
        return JSONBody.response([
            "success": true, "device_id": .string(deviceID), "total_events": .int(Int64(total)),
            "events": .array(
                events.map { event in
                    .object([
                        ("event_id", .int(event.id)), ("received_at", .string(QueryRoutes.iso(event.receivedAtMs))),
                        ("device_timestamp", event.deviceTimeS.map(JSONValue.int) ?? .null),
                        ("device_time_invalid", .bool(event.deviceTimeInvalid)),
                        ("fault_type", .string(event.faultType)),
                        ("recovery_action", event.recoveryAction.map(JSONValue.string) ?? .null),
                        ("success", .bool(event.success)), ("details", event.details.map(JSONValue.string) ?? .null),
                        ("retry_count", event.retryCount.map { .int(Int64($0)) } ?? .null),
                    ])
                }
            ),
            "statistics": .object([
                ("total", .int(Int64(total))), ("successful", .int(Int64(successful))),
                ("failed", .int(Int64(total - successful))),
                ("success_rate", .double(total > 0 ? Double(successful) / Double(total) : 0)),
            ]),
        ])
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
