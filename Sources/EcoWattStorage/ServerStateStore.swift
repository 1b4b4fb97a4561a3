/// What the server records about itself in its database (every backend).
public protocol ServerStateStore: Sendable {
    /// Records the fingerprint of the fleet key uploads are verified with; a change since the last start is returned
    /// (nothing on the first start, and no write while the key stays the same).
    func adoptFleetKey(fingerprint: String) async throws -> FleetKeyChange?
}

/// What changed when the server starts with another fleet key than at its last start.
public struct FleetKeyChange: Sendable, Equatable {
    /// The fingerprint recorded at the last start.
    public var previousFingerprint: String
    /// Devices with a verified upload and no per-device key: their firmware signs with the previous key, so every
    /// upload of theirs is now refused.
    public var devicesOnPreviousKey: Int

    public init(previousFingerprint: String, devicesOnPreviousKey: Int) {
        self.previousFingerprint = previousFingerprint
        self.devicesOnPreviousKey = devicesOnPreviousKey
    }
}
