import EcoWattProtocol
import Foundation

/// An energy / power-management report (spec §6.1). Non-finite numbers the device printed are `nil`.
public struct PowerReport: Sendable, Equatable {
    /// Set when stored; increases with every report (the listing's cursor).
    public var id: Int64 = 0
    public var deviceID: String
    public var deviceTimeMs: Int64?
    public var receivedAtMs: Int64
    public var enabled: Bool?
    public var techniques: Int?
    public var avgCurrentMA: Double?
    public var energySavedMAh: Double?
    public var peripheralSavingsMAh: Double?
    public var uptimeMs: Int64?
    public var highPerfMs: Int64?
    public var normalMs: Int64?
    public var lowPowerMs: Int64?
    public var sleepMs: Int64?
    /// The device sent a time outside the plausible range (not stored; see ``DeviceTime``).
    public var deviceTimeInvalid = false

    public init(deviceID: String, receivedAtMs: Int64) {
        self.deviceID = deviceID
        self.receivedAtMs = receivedAtMs
    }
}

/// A fault-recovery event (spec §6.2).
public struct FaultEvent: Sendable, Equatable {
    public var id: Int64 = 0
    public var deviceID: String
    public var deviceTimeS: Int64?
    public var receivedAtMs: Int64
    public var faultType: String
    public var recoveryAction: String?
    public var success: Bool
    public var details: String?
    public var retryCount: Int?
    /// The device sent a time outside the plausible range (not stored).
    public var deviceTimeInvalid = false

    public init(
        deviceID: String,
        deviceTimeS: Int64?,
        receivedAtMs: Int64,
        faultType: String,
        recoveryAction: String?,
        success: Bool,
        details: String?,
        retryCount: Int?
    ) {
        self.deviceID = deviceID
        self.deviceTimeS = deviceTimeS
        self.receivedAtMs = receivedAtMs
        self.faultType = faultType
        self.recoveryAction = recoveryAction
        self.success = success
        self.details = details
        self.retryCount = retryCount
    }
}

/// Device reports: energy and fault recovery.
public protocol ReportStore: Sendable {
    func addPowerReport(_ report: PowerReport) async throws
    /// Reports received at or after `sinceMs`, newest first, those with an id below `before` when it is given.
    func powerReports(deviceID: String, sinceMs: Int64, before: Int64?, limit: Int) async throws -> [PowerReport]
    /// Stores an event and returns its id.
    func addFaultEvent(_ event: FaultEvent) async throws -> Int64
    /// Events of a device, newest first (those with an id below `before` when it is given), and the total/successful
    /// counts over all of them.
    func faultEvents(deviceID: String, before: Int64?, limit: Int) async throws -> (events: [FaultEvent], total: Int, successful: Int)
}

extension ReportStore {
    public func powerReports(deviceID: String, sinceMs: Int64, limit: Int) async throws -> [PowerReport] {
        try await powerReports(deviceID: deviceID, sinceMs: sinceMs, before: nil, limit: limit)
    }

    public func faultEvents(deviceID: String, limit: Int) async throws -> (events: [FaultEvent], total: Int, successful: Int) {
        try await faultEvents(deviceID: deviceID, before: nil, limit: limit)
    }
}
