import Crypto
import EcoWattProtocol
import Foundation
import Testing

@Suite struct SecuredEnvelopeTests {
    let payload = Array(#"{"device_id":"ESP32_001","timestamp":1732300000}"#.utf8)

    @Test func specVectorWithMadeUpKey() {
        let key = SymmetricKey(data: HexCoding.decode("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")!)
        let envelope = SecuredEnvelope.sign(payload: payload, nonce: 11001, key: key)
        #expect(HexCoding.encode(envelope.mac) == "12829601962956ebb085fffb8237fe97f9158b1f5e189968764fa90f587e941f")
        #expect(HexCoding.encode(envelope.signedBytes.prefix(4)) == "00002af9")
    }

    @Test func specVectorWithFirmwareKeyParsesAndVerifies() throws {
        let body =
            #"{"nonce":11001,"payload":"eyJkZXZpY2VfaWQiOiJFU1AzMl8wMDEiLCJ0aW1lc3RhbXAiOjE3MzIzMDAwMDB9","mac":"3d6ccc3e46f36a43649aecc9eef9eac1715edc055cc5e3c2647d8a900052f9aa","encrypted":false,"compressed":false}"#
        let envelope = try SecuredEnvelope(parsing: Array(body.utf8))
        #expect(envelope.nonce == 11001)
        #expect(envelope.payload == payload)
        try envelope.verify(key: FleetKey.firmwareDefault)
        #expect(envelope.jsonBody == body)
    }

    @Test func macOverBase64TextIsRejected() throws {
        let body =
            #"{"nonce":11001,"payload":"eyJkZXZpY2VfaWQiOiJFU1AzMl8wMDEiLCJ0aW1lc3RhbXAiOjE3MzIzMDAwMDB9","mac":"6844ea1599a87fb13902a5ef73affa6c9d2300289546cf97e30b49ba3784ca82"}"#
        let envelope = try SecuredEnvelope(parsing: Array(body.utf8))
        #expect(throws: SecurityError.macMismatch) { try envelope.verify(key: FleetKey.firmwareDefault) }
    }

    @Test func fieldProblemsAreClassified() {
        #expect(throws: SecurityError.missingField("nonce")) {
            try SecuredEnvelope(parsing: Array(#"{"payload":"e30=","mac":"00"}"#.utf8))
        }
        #expect(throws: SecurityError.invalidField("nonce")) {
            try SecuredEnvelope(parsing: Array(#"{"nonce":"11001","payload":"e30=","mac":"00"}"#.utf8))
        }
        #expect(throws: SecurityError.invalidField("nonce")) {
            try SecuredEnvelope(parsing: Array(#"{"nonce":-1,"payload":"e30=","mac":"00"}"#.utf8))
        }
        #expect(throws: SecurityError.invalidBase64) {
            try SecuredEnvelope(parsing: Array(#"{"nonce":1,"payload":"!!","mac":"00"}"#.utf8))
        }
        #expect(throws: SecurityError.malformedBody("body is not a JSON object")) {
            try SecuredEnvelope(parsing: Array("nonce=1&payload=x".utf8))
        }
        #expect(throws: SecurityError.malformedBody("body is not a JSON object")) {
            try SecuredEnvelope(parsing: Array("[1,2]".utf8))
        }
    }

    @Test func upperCaseMacIsRejected() throws {
        let envelope = SecuredEnvelope.sign(payload: payload, nonce: 5, key: FleetKey.firmwareDefault)
        let upper = envelope.jsonBody.replacingOccurrences(
            of: HexCoding.encode(envelope.mac),
            with: HexCoding.encode(envelope.mac).uppercased()
        )
        #expect(throws: SecurityError.macMismatch) { try SecuredEnvelope(parsing: Array(upper.utf8)) }
    }
}
