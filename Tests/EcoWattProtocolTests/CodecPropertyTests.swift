import EcoWattProtocol
import PropertyBased
import Testing

/// Properties of every decoder over generated inputs: arbitrary bytes and counts never trap, and the lossless codecs
/// give back exactly what their encoders were given.
@Suite struct CodecPropertyTests {
    static let bytes = Gen<UInt8>.value().array(of: 0...400)
    static let counts = Gen.int(in: -8...600)
    static let registerIDs = Gen.int(in: -2...12)

    @Test func arbitraryBytesAndCountsNeverTrapAnyDecoder() async {
        await propertyCheck(count: 2000, input: Self.bytes, Self.counts, Self.registerIDs.array(of: 0...40)) {
            blob,
            count,
            selection in
            _ = try? BitPackDecoder.decode(blob, count: count)
            _ = try? DictionaryDecoder.decode(blob, count: count)
            _ = try? SemanticRLEDecoder.decode(blob, count: count)
            _ = try? TemporalDecoder.decodeBase(blob, selection: selection)
            _ = try? TemporalDecoder.decodeDelta(blob, selection: selection, context: TemporalContext())
        }
    }

    @Test func arbitraryInnerJSONNeverTrapsTheStreamDecoder() async {
        await propertyCheck(count: 1000, input: Gen<UInt8>.value(in: 0x20...0x7E).array(of: 0...300)) { text in
            guard let upload = try? UploadPayload(parsing: Array(#"{"device_id":"X","compressed_data":["#.utf8) + text) else {
                return
            }
            var state = DeviceStreamState()
            _ = DeviceStreamDecoder.decode(upload, arrivalMs: 1_764_300_000_000, state: &state)
        }
    }

    @Test func bitPackDecodesExactlyWhatItEncoded() async {
        await propertyCheck(count: 500, input: Gen<UInt16>.value().array(of: 1...500)) { values in
            #expect((try? BitPackDecoder.decode(BitPackEncoder.encode(values), count: values.count)) == values)
        }
    }

    @Test func dictionaryDecodesExactlyWhatItEncoded() async {
        // Few distinct values, so that the dictionary form is chosen as often as the bit-pack fallback.
        let values = Gen<UInt16>.value(in: 2290...2296).array(of: 1...500)
        await propertyCheck(count: 500, input: values) { values in
            let blob = DictionaryEncoder.encode(values)
            let decoded =
                blob.first == CompressionMarker.dictionary.rawValue
                ? try? DictionaryDecoder.decode(blob, count: values.count) : try? BitPackDecoder.decode(blob, count: values.count)
            #expect(decoded == values)
        }
    }

    @Test func temporalDecodesExactlyWhatItEncodedAcrossABoot() async {
        // One boot: batches of one sample on a fixed layout; the decoder's model follows the encoder's.
        let layouts = [[0, 1, 9], [0, 1, 5, 6, 7, 9], [3, 4]]
        let layout = Gen.int(in: 0...2).map { layouts[$0] }
        let batches = Gen<UInt16>.value(in: 0...4000).array(of: 6).array(of: 1...30)
        await propertyCheck(count: 200, input: layout, batches) { layout, batches in
            var encoder = TemporalContext()
            var decoder = TemporalContext()
            for batch in batches {
                let values = Array(batch.prefix(layout.count))
                let blob = TemporalEncoder.encode(values, selection: layout, context: &encoder)
                let decoded =
                    blob.first == CompressionMarker.temporalDelta.rawValue
                    ? try? TemporalDecoder.decodeDelta(blob, selection: layout, context: decoder)
                    : try? TemporalDecoder.decodeBase(blob, selection: layout)
                #expect(decoded == values)
                decoder.update(values: decoded ?? [], selection: layout)
                #expect(decoder == encoder)
            }
        }
    }

    @Test func semanticRLEKeepsEveryValueWithinItsTypeTolerance() async {
        let layout = [0, 3, 4, 7, 9]
        let values = Gen<UInt16>.value(in: 0...3000).array(of: 5).array(of: 1...40)
        await propertyCheck(count: 300, input: values) { samples in
            let flat = samples.flatMap { $0 }
            let selection = (0..<flat.count).map { layout[$0 % layout.count] }
            let decoded = (try? SemanticRLEDecoder.decode(SemanticRLEEncoder.encode(flat, selection: selection), count: flat.count)) ?? []
            #expect(decoded.count == flat.count)
            for (index, register) in selection.enumerated() {
                let tolerance = SemanticRLEEncoder.tolerance(ofType: SemanticRLEEncoder.typeID(of: register))
                if index < decoded.count { #expect(abs(Int(decoded[index]) - Int(flat[index])) <= tolerance) }
            }
        }
    }
}
