import EcoWattProtocol
import Foundation

/// Security self-tests (spec §1.3 `POST /fault/security/inject`): each builds envelopes with the device's real key and
/// runs them through the same envelope checks as ingest, against a **sandboxed** nonce store that starts empty. The
/// original server ran them against the live nonce state and locked real devices out (a test envelope with
/// `nonce = time()` made every later upload a replay); here no real device state is read or written.
public enum SecuritySelfTest: String, Sendable, CaseIterable {
    case replay
    case invalidHMAC = "invalid_hmac"
    case tamperedPayload = "tampered_payload"
    case oldNonce = "old_nonce"
    case missingNonce = "missing_nonce"
    case invalidFormat = "invalid_format"

    /// The error category the checks must report.
    var expectedCategory: String {
        switch self {
        case .replay, .oldNonce: "replay"
        case .invalidHMAC, .tamperedPayload: "mac"
        case .missingNonce: "missing_field"
        case .invalidFormat: "malformed"
        }
    }

    /// A nonce store holding only what this test accepted.
    struct Sandbox {
        var lastNonce: UInt32?

        /// The ingest checks in order: envelope shape, MAC, then the nonce against the sandbox.
        mutating func validate(_ body: [UInt8], key: EnvelopeKey) -> SecurityError? {
            do {
                let envelope = try SecuredEnvelope(parsing: body)
                try envelope.verify(key: key)
                if let last = lastNonce, envelope.nonce <= last {
                    return .replay(nonce: envelope.nonce, lastAccepted: last)
                }
                lastNonce = envelope.nonce
                return nil
            } catch {
                return error
            }
        }
    }

    /// Runs the test for `deviceID` with its key; the JSON result of spec §1.3.
    public func run(deviceID: String, key: EnvelopeKey, now: String) -> JSONValue {
        var sandbox = Sandbox()
        let payload = Array(#"{"device_id":"\#(deviceID)","self_test":"\#(rawValue)"}"#.utf8)
        let nonce: UInt32 = 1000
        let valid = SecuredEnvelope.sign(payload: payload, nonce: nonce, key: key)
        var sent: String
        var outcome: SecurityError?
        switch self {
        case .replay:
            _ = sandbox.validate(Array(valid.jsonBody.utf8), key: key)
            sent = valid.jsonBody
            outcome = sandbox.validate(Array(sent.utf8), key: key)
        case .oldNonce:
            _ = sandbox.validate(Array(valid.jsonBody.utf8), key: key)
            sent = SecuredEnvelope.sign(payload: payload, nonce: nonce - 1, key: key).jsonBody
            outcome = sandbox.validate(Array(sent.utf8), key: key)
        case .invalidHMAC:
            var forged = valid
            forged.mac = forged.mac.map { $0 ^ 0x5A }
            sent = forged.jsonBody
            outcome = sandbox.validate(Array(sent.utf8), key: key)
        case .tamperedPayload:
            var tampered = valid
            tampered.payload = Array(#"{"device_id":"\#(deviceID)","self_test":"tampered"}"#.utf8)
            sent = tampered.jsonBody
            outcome = sandbox.validate(Array(sent.utf8), key: key)
        case .missingNonce:
            sent = #"{"payload":"\#(Data(payload).base64EncodedString())","mac":"\#(HexCoding.encode(valid.mac))"}"#
            outcome = sandbox.validate(Array(sent.utf8), key: key)
        case .invalidFormat:
            sent = "nonce=1000&payload=not-json"
            outcome = sandbox.validate(Array(sent.utf8), key: key)
        }
        let passed = outcome?.category == expectedCategory
        return .object([
            ("success", true), ("test_type", .string(rawValue)), ("device_id", .string(deviceID)),
            ("test_passed", .bool(passed)), ("validation_succeeded", .bool(outcome == nil)),
            ("expected_error", .string(expectedCategory)), ("actual_error", outcome.map { .string($0.category) } ?? .null),
            ("actual_reason", outcome.map { .string($0.reason) } ?? .null), ("payload_sent", .string(sent)),
            ("sandboxed", true), ("timestamp", .string(now)),
        ])
    }
}
