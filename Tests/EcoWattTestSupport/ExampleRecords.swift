import EcoWattProtocol
import EcoWattStorage

extension IngestRecord {
    /// An accepted upload for store tests: one decoded 0x01 packet of `values` (one row per sample, registers 0 and 1),
    /// its last sample at `nonce` seconds and the others 100 ms apart before it, received then.
    public static func example(_ device: String, nonce: UInt32, values: [[UInt16]] = [[2300, 50], [2301, 51]]) -> IngestRecord {
        var state = DeviceStreamState()
        state.hypotheses[0].frontierTimeMs = Int64(nonce) * 1000
        let last = Int64(nonce) * 1000
        let packet = DecodedPacket(
            index: 0,
            marker: 0x01,
            method: "bitpack",
            registerLayout: [0, 1],
            sampleCount: values.count,
            samples: values,
            sampleTimesMs: values.indices.map { last - Int64(values.count - 1 - $0) * 100 },
            lastSampleEpochMs: last,
            approximate: false,
            truncated: false,
            reason: nil,
            detail: nil,
            blob: [0x01],
            compressedSize: 10,
            originalSize: 4 * values.count
        )
        return IngestRecord(deviceID: device, nonce: nonce, receivedAtMs: last, packets: [packet], streamState: state)
    }
}
