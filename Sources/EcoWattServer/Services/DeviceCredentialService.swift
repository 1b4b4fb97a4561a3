import Crypto
import EcoWattProtocol
import EcoWattStorage
import Foundation

/// Device keys (issue 19): provisioning, rotation without an outage, revocation. The ingest path reads the keys;
/// every change here reloads them at once.
public struct DeviceCredentialService: Sendable {
    let store: any DeviceCredentialStore
    let ingest: IngestService
    let clock: @Sendable () -> Int64
    /// Other instances reload their keys at once too.
    var notices = InstanceNotices(feed: nil)

    public enum Failure: Error, Equatable {
        /// The device already has its own key (pass `replace`).
        case hasKey(String)
        /// The device has no credentials record.
        case unknown(String)
    }

    /// What an issued key comes with: the key (shown once), the firmware snippet, the new state.
    public struct Issued: Sendable {
        public var key: [UInt8]
        public var state: DeviceCredential
        public var securityCpp: String
    }

    public func credential(_ deviceID: String) async throws -> DeviceCredential? {
        try await store.deviceCredential(deviceID)
    }

    /// Gives a device its own random 256-bit key (creating it, admitted, if needed).
    public func provision(_ deviceID: String, replace: Bool) async throws -> Issued {
        let key = Self.randomKey()
        guard try await store.provisionDevice(deviceID, key: key, replace: replace, nowMs: clock()) else { throw Failure.hasKey(deviceID) }
        return try await issued(deviceID, key: key)
    }

    /// Issues the next key: both are accepted until the device's first upload under the next one.
    public func rotate(_ deviceID: String) async throws -> Issued {
        let key = Self.randomKey()
        try await store.setNextDeviceKey(deviceID: deviceID, key: key, nowMs: clock())
        return try await issued(deviceID, key: key)
    }

    public func withdrawRotation(_ deviceID: String) async throws -> DeviceCredential {
        guard try await store.deviceCredential(deviceID) != nil else { throw Failure.unknown(deviceID) }
        try await store.setNextDeviceKey(deviceID: deviceID, key: nil, nowMs: clock())
        await keysChanged(deviceID)
        guard let state = try await store.deviceCredential(deviceID) else { throw Failure.unknown(deviceID) }
        return state
    }

    /// Refuses the device's uploads from now on.
    public func revoke(_ deviceID: String) async throws -> DeviceCredential {
        _ = try await store.revokeDevice(deviceID: deviceID, nowMs: clock())
        await keysChanged(deviceID)
        guard let state = try await store.deviceCredential(deviceID) else { throw Failure.unknown(deviceID) }
        return state
    }

    /// Reloads the keys here and on the other instances.
    private func keysChanged(_ deviceID: String) async {
        await ingest.refreshKeys()
        await notices.announce(.keys, deviceID)
    }

    private func issued(_ deviceID: String, key: [UInt8]) async throws -> Issued {
        await keysChanged(deviceID)
        guard let state = try await store.deviceCredential(deviceID) else { throw Failure.unknown(deviceID) }
        return Issued(key: key, state: state, securityCpp: Self.securityCpp(deviceID: deviceID, key: key))
    }

    static func randomKey() -> [UInt8] {
        SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    }

    /// The first 16 hex digits of the key's SHA-256 (to tell keys apart without showing them).
    public static func fingerprint(_ key: [UInt8]) -> String {
        String(HexCoding.encode(Array(SHA256.hash(data: key))).prefix(16))
    }

    /// The definition of `SecurityLayer::PSK_HMAC` (spec §2.1) for the device's `security.cpp`.
    public static func securityCpp(deviceID: String, key: [UInt8]) -> String {
        let bytes = key.map { "0x" + HexCoding.encode([$0]) }
        let rows = stride(from: 0, to: bytes.count, by: 8).map { "    " + bytes[$0..<min($0 + 8, bytes.count)].joined(separator: ", ") }
        let safeID = String(deviceID.unicodeScalars.filter { $0.isASCII && $0.value >= 0x20 && $0 != "*" && $0 != "/" }.map(Character.init))
        return """
            // Upload HMAC key of device \(safeID) (ecowatt device provision; fingerprint \(fingerprint(key))).
            // Replaces the fleet key in src/application/security.cpp of this device's build; keep it secret.
            const uint8_t SecurityLayer::PSK_HMAC[32] = {
            \(rows.joined(separator: ",\n"))
            };

            """
    }
}
