import EcoWattProtocol
import EcoWattServer
import EcoWattStorage
import HTTPTypes
import Testing

/// The route layer's answer to each service error (`ServiceErrors+HTTP.swift`): the status a device acts on and the
/// fixed code the request log and metrics count.
@Suite struct ServiceErrorsHTTPTests {
    static func answer(_ error: some APIErrorConvertible) -> (HTTPResponse.Status, String) {
        (error.apiError.status, error.apiError.code)
    }

    @Test func aRefusedUploadIs400WhenNotAnEnvelopeAnd401WhenNotAuthentic() {
        #expect(Self.answer(IngestError.security(.malformedBody("x"))) == (.badRequest, "malformed"))
        #expect(Self.answer(IngestError.security(.macMismatch)) == (.unauthorized, "mac"))
        // A replay and a nonce jump look alike from outside (``SecurityError/clientCategory``).
        #expect(Self.answer(IngestError.security(.replay(nonce: 5, lastAccepted: 9))) == (.unauthorized, "nonce"))
        #expect(IngestError.security(.macMismatch).apiError.reason.hasPrefix("Security validation failed: "))
        #expect(Self.answer(IngestError.revoked) == (.unauthorized, "revoked"))
    }

    @Test func anUploadNotStoredIs503SoTheDeviceKeepsItsPacketsAndRetries() {
        #expect(Self.answer(IngestError.storage("disk full")) == (.serviceUnavailable, "storage"))
        #expect(Self.answer(IngestError.invalidPayload("no packets")) == (.badRequest, "invalid_payload"))
        #expect(Self.answer(IngestError.notAdmitted) == (.forbidden, "not_admitted"))
    }

    @Test func aDownloadTheRolloutHoldsIsA429NotAServerError() {
        #expect(Self.answer(OTAError.held("wave 2 is not open yet")) == (.tooManyRequests, "rollout_held"))
        #expect(Self.answer(OTAError.busy(50)) == (.serviceUnavailable, "busy"))
        #expect(Self.answer(OTAError.chunkOutOfRange(index: "-1", total: 33)) == (.badRequest, "chunk_out_of_range"))
        #expect(Self.answer(OTAError.noActiveSession("D1")) == (.conflict, "no_session"))
        #expect(Self.answer(OTAError.noFirmware("9.9.9")) == (.notFound, "no_firmware"))
        #expect(Self.answer(RolloutService.Failure.held("paused")) == (.tooManyRequests, "rollout_held"))
    }

    @Test func unboundDeviceRoutesAre403WithTheirReason() {
        #expect(Self.answer(BindingError.unbound("D1")) == (.forbidden, "not_bound"))
        #expect(Self.answer(BindingError.elsewhere("D1")) == (.forbidden, "address_mismatch"))
    }

    @Test func commandAndRolloutErrorsNameTheirConflict() {
        #expect(Self.answer(CommandStoreError.queueFull(deviceID: "D1", limit: 100)) == (.tooManyRequests, "rate_limited"))
        #expect(Self.answer(CommandStoreError.wrongState(commandID: "C1", status: .completed)) == (.conflict, "conflict"))
        #expect(Self.answer(CommandStoreError.notFound("C1")) == (.notFound, "not_found"))
        #expect(Self.answer(RolloutService.Failure.busyDevices(rolloutID: 3, deviceIDs: ["A", "B"])) == (.conflict, "devices_in_rollout"))
        #expect(Self.answer(RolloutService.Failure.noDevices) == (.unprocessableContent, "no_devices"))
        #expect(Self.answer(RolloutService.Failure.unknownRollout(7)) == (.notFound, "not_found"))
    }
}
