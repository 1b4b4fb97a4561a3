import Crypto
import Foundation

/// The signed wrapper around every upload (spec §2.1):
/// `{"nonce":<uint32>,"payload":"<base64>","mac":"<64 lowercase hex>","encrypted":false,"compressed":false}`.
public struct SecuredEnvelope: Sendable, Equatable {
    /// Strictly increasing per device; signed as 4 big-endian bytes.
    public var nonce: UInt32
    /// The raw inner JSON bytes (base64-decoded `payload`).
    public var payload: [UInt8]
    /// The 32-byte MAC sent by the device.
    public var mac: [UInt8]

    public init(nonce: UInt32, payload: [UInt8], mac: [UInt8]) {
        self.nonce = nonce
        self.payload = payload
        self.mac = mac
    }

    /// Parses an envelope body. Throws ``SecurityError``: ``SecurityError/malformedBody(_:)`` when the body is not a
    /// JSON object, the other cases when a security field is missing or malformed.
    public init(parsing body: [UInt8]) throws(SecurityError) {
        guard let document = try? JSONParser.parse(body), document.isObject else {
            throw .malformedBody("body is not a JSON object")
        }
        guard let nonceValue = document["nonce"] else { throw .missingField("nonce") }
        guard let nonce = nonceValue.intValue.flatMap(UInt32.init(exactly:)) else { throw .invalidField("nonce") }
        guard let payloadValue = document["payload"] else { throw .missingField("payload") }
        guard let payloadText = payloadValue.stringValue else { throw .invalidField("payload") }
        guard let macValue = document["mac"] else { throw .missingField("mac") }
        guard let macText = macValue.stringValue else { throw .invalidField("mac") }
        guard let payload = Data(base64Encoded: payloadText) else { throw .invalidBase64 }
        guard let mac = HexCoding.decode(macText, lowercaseOnly: true), mac.count == 32 else { throw .macMismatch }
        // The firmware never encrypts (spec §2.1). The flag is outside the MAC, so an upload that claims it would be
        // misread as plain JSON: refused before anything else.
        if document["encrypted"]?.boolValue == true { throw .encrypted }
        self.init(nonce: nonce, payload: Array(payload), mac: mac)
    }

    /// The bytes the MAC covers: `BE32(nonce) ‖ payload`.
    public var signedBytes: [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(4 + payload.count)
        withUnsafeBytes(of: nonce.bigEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: payload)
        return bytes
    }

    /// Constant-time check of the MAC with `key`.
    public func verify(key: SymmetricKey) throws(SecurityError) {
        try verify(key: EnvelopeKey(key))
    }

    /// Constant-time check of the MAC with a prepared key (the per-upload hot path).
    public func verify(key: EnvelopeKey) throws(SecurityError) {
        var hmac = key.prepared
        withUnsafeBytes(of: nonce.bigEndian) { hmac.update(data: $0) }
        payload.withUnsafeBytes { hmac.update(data: $0) }
        // `==` between a MAC and bytes is a constant-time comparison in swift-crypto.
        guard hmac.finalize() == mac else { throw .macMismatch }
    }

    /// Builds and signs an envelope the way the firmware does (used by the simulator and tests).
    public static func sign(payload: [UInt8], nonce: UInt32, key: SymmetricKey) -> SecuredEnvelope {
        sign(payload: payload, nonce: nonce, key: EnvelopeKey(key))
    }

    /// Builds and signs an envelope with a prepared key.
    public static func sign(payload: [UInt8], nonce: UInt32, key: EnvelopeKey) -> SecuredEnvelope {
        var envelope = SecuredEnvelope(nonce: nonce, payload: payload, mac: [])
        var hmac = key.prepared
        envelope.signedBytes.withUnsafeBytes { hmac.update(data: $0) }
        envelope.mac = Array(hmac.finalize())
        return envelope
    }

    /// The compact JSON body the firmware sends, byte for byte in its key order.
    public var jsonBody: String {
        let payload = Data(self.payload).base64EncodedString()
        return #"{"nonce":\#(nonce),"payload":"\#(payload)","mac":"\#(HexCoding.encode(mac))","encrypted":false,"compressed":false}"#
    }
}

/// An HMAC-SHA256 key with its key schedule computed once; copying it per upload avoids redoing that work.
public struct EnvelopeKey: Sendable {
    let prepared: HMAC<SHA256>

    public init(_ key: SymmetricKey) {
        prepared = HMAC<SHA256>(key: key)
    }
}

/// The firmware's hard-coded fleet key `SecurityLayer::PSK_HMAC` (spec §2.1).
public enum FleetKey {
    /// `2b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfe`.
    public static let firmwareDefaultHex = "2b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfe"
    /// The default key as a `SymmetricKey`.
    public static var firmwareDefault: SymmetricKey { SymmetricKey(data: HexCoding.decode(firmwareDefaultHex)!) }

    /// The definition in the firmware's `src/application/security.cpp` that signs uploads with `key` (32 raw bytes,
    /// spec §2.1, §2.5). The key is compiled in: a device uses a new fleet key only once it runs firmware built with it.
    public static func firmwareDefinition(_ key: [UInt8]) -> String {
        let rows = stride(from: 0, to: key.count, by: 8).map { row in
            "    " + key[row..<min(row + 8, key.count)].map { "0x" + HexCoding.encode([$0]) }.joined(separator: ", ")
        }
        return """
            // Replace the definition of SecurityLayer::PSK_HMAC in src/application/security.cpp with this one; the server
            // verifies uploads with the same key (ECOWATT_FLEET_KEY=\(HexCoding.encode(key.prefix(4)))…, see keys/fleet_key).
            const uint8_t SecurityLayer::PSK_HMAC[\(key.count)] = {
            \(rows.joined(separator: ",\n"))
            };

            """
    }
}
