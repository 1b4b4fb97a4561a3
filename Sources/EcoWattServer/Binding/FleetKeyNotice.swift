import Crypto
import EcoWattProtocol
import EcoWattStorage
import Logging

/// The fleet key is loud (issue 14): the firmware's default key is published, so with it anyone can sign an upload for
/// any device. Every start says so; a change of key says which devices it locks out.
public struct FleetKeyNotice: Sendable, Equatable {
    /// Uploads are verified with the firmware's published default key.
    public let isPublic: Bool
    /// The first 8 bytes of the key's SHA-256, hex: names a key in logs without revealing it.
    public let fingerprint: String

    public init(keyHex: String) {
        isPublic = keyHex.lowercased() == FleetKey.firmwareDefaultHex
        let digest = SHA256.hash(data: HexCoding.decode(keyHex) ?? [])
        fingerprint = HexCoding.encode(Array(digest.prefix(8)))
    }

    /// The `/ready` detail.
    public var readiness: String {
        isPublic
            ? "public: the firmware's published default key, anyone can sign uploads (set fleet_key, see the README)"
            : "private (fingerprint \(fingerprint))"
    }

    /// Logs the warnings of this start, and records the key so that the next start sees a change.
    public func announce(state: any ServerStateStore, logger: Logger) async throws {
        if isPublic {
            logger.warning(
                "the fleet key is the firmware's published default: anyone can sign uploads for any device (forged telemetry, burnt nonces); set fleet_key (ECOWATT_FLEET_KEY) to a private key built into your firmware"
            )
        }
        guard let change = try await state.adoptFleetKey(fingerprint: fingerprint), change.devicesOnPreviousKey > 0 else {
            return
        }
        logger.warning(
            "the fleet key changed since the last start: every device still running firmware built with the previous key is locked out (its uploads fail HMAC) until it runs firmware with the new key; to keep one working meanwhile, give it the previous key as its own: ecowatt device set-key <id> <previous key>",
            metadata: [
                "devices_on_previous_key": "\(change.devicesOnPreviousKey)",
                "previous_fingerprint": "\(change.previousFingerprint)", "fingerprint": "\(fingerprint)",
            ]
        )
    }
}
