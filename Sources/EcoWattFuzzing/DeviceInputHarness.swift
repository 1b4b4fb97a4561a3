import Crypto
import EcoWattProtocol

/// The fuzzing harness over the whole device-input path (issue 13): envelope parsing, the inner JSON, every codec,
/// the per-device temporal model with its persistence, and time reconstruction.
///
/// It calls the same parsing and decoding entry points the server calls; to reach the decoder without forging MACs it
/// parses an envelope's payload whether or not its MAC verifies (the server never does), so production code needs no
/// hook. The first input byte chooses a mode (``Mode``). Invariants are checked with `precondition`, so a violation is
/// a crash the fuzzer reports, like a trap in the code under test.
public enum DeviceInputHarness {
    public enum Mode: UInt8, CaseIterable, Sendable {
        /// The rest is a request body of `POST /aggregated/{id}`.
        case envelope = 0
        /// The rest is up to ``maxUploads`` inner JSON documents separated by `\n`, decoded in order against one
        /// device's model (so the temporal model and the time reconstruction see whole boot sequences); a line `BOOT`
        /// is a boot signal (the reboot hypothesis beside the model).
        case uploads = 1
        /// `[registers][samples][blob…]`: the blob given to every decoder, with encode∘decode checks.
        case codecs = 2
        /// The rest is JSON text: parse, write, parse again.
        case json = 3
    }

    /// The line of a ``Mode/uploads`` input that stands for a boot signal.
    public static let bootLine = Array("BOOT".utf8)
    /// Most uploads of one ``Mode/uploads`` input.
    public static let maxUploads = 16
    /// Arrival time of the first unsynced upload of a sequence (synced uploads arrive just after their timestamp).
    static let baseArrivalMs: Int64 = 1_764_300_000_000

    /// What the inputs run so far reached.
    public static let coverage = HarnessCoverage()

    static let fleetKey = EnvelopeKey(FleetKey.firmwareDefault)

    /// Runs one input.
    public static func run(_ input: [UInt8]) {
        guard let first = input.first else { return }
        let body = Array(input.dropFirst())
        switch Mode(rawValue: first % UInt8(Mode.allCases.count))! {
        case .envelope: runEnvelope(body)
        case .uploads: runUploads(body.split(separator: 0x0A, omittingEmptySubsequences: false).prefix(maxUploads).map(Array.init))
        case .codecs: runCodecs(body)
        case .json: runJSON(body)
        }
    }

    /// Builds an input of `mode` from its body.
    public static func input(_ mode: Mode, _ body: [UInt8]) -> [UInt8] {
        [mode.rawValue] + body
    }

    static func runEnvelope(_ body: [UInt8]) {
        do {
            let envelope = try SecuredEnvelope(parsing: body)
            coverage.hit(.envelopeParsed)
            if (try? envelope.verify(key: fleetKey)) != nil { coverage.hit(.macVerified) }
            runUploads([envelope.payload])
        } catch {
            coverage.hit(.envelopeRejected)
        }
    }

    static func runUploads(_ documents: [[UInt8]]) {
        var state = DeviceStreamState()
        var arrivalMs = baseArrivalMs
        for (index, document) in documents.enumerated() {
            if document == Self.bootLine {
                state.bootSignal(atMs: arrivalMs + 1000)
                coverage.hit(.bootSignal)
                continue
            }
            guard let upload = try? UploadPayload(parsing: document) else {
                coverage.hit(.payloadRejected)
                continue
            }
            coverage.hit(.payloadParsed)
            if upload.clockSynced, let seconds = upload.timestamp {
                arrivalMs = seconds * 1000 + 200
                coverage.hit(.timeSynced)
            } else {
                arrivalMs += 15_000
                coverage.hit(.timeUnsynced)
            }
            // Failed attempts before the upload vary with the input, so that backlogs out of order are exercised too.
            let failed: UInt32? = index == 0 ? nil : UInt32(document.count % 4)
            let result = DeviceStreamDecoder.decode(upload, arrivalMs: arrivalMs, failedAttempts: failed, state: &state)
            precondition(result.packets.count == upload.packets.count, "one decoded packet per packet")
            for packet in result.packets { check(packet) }
            for update in result.updates {
                if let samples = update.samples {
                    precondition(samples.count == update.sampleTimesMs.count, "one time per decoded row")
                    coverage.hit(.packetRedecoded)
                }
                precondition(zip(update.sampleTimesMs, update.sampleTimesMs.dropFirst()).allSatisfy { $0 < $1 }, "times increase")
            }
            // The model is persisted after every upload; a restart must resume it exactly.
            precondition(DeviceStreamState(serialized: state.serialized) == state, "stream state survives persistence")
        }
    }

    static func check(_ packet: DecodedPacket) {
        guard !packet.resend else {
            coverage.hit(.resend)
            return
        }
        guard let samples = packet.samples else {
            precondition(packet.reason != nil, "an undecoded packet has a reason")
            coverage.hit(packet.reason == .temporalStateUnknown ? .temporalStateUnknown : .packetUndecodable)
            return
        }
        precondition(packet.reason == nil, "a decoded packet has no reason")
        precondition(samples.count <= packet.sampleCount, "no more rows than samples")
        precondition(samples.count == packet.sampleTimesMs.count, "one time per row")
        precondition(samples.allSatisfy { $0.count == packet.registerLayout.count }, "one value per register")
        precondition(zip(packet.sampleTimesMs, packet.sampleTimesMs.dropFirst()).allSatisfy { $0 < $1 }, "times increase")
        switch packet.marker.flatMap(CompressionMarker.init(rawValue:)) {
        case .bitPack: coverage.hit(packet.truncated ? .packetBitPackTruncated : .packetBitPack)
        case .dictionary: coverage.hit(packet.truncated ? .packetDictionaryTruncated : .packetDictionary)
        case .semanticRLE: coverage.hit(.packetSemantic)
        case .temporalBase: coverage.hit(.packetTemporalBase)
        case .temporalDelta: coverage.hit(.packetTemporalDelta)
        case nil: preconditionFailure("decoded a packet without a known marker")
        }
    }

    static func runCodecs(_ body: [UInt8]) {
        guard body.count >= 3 else { return }
        let registers = 1 + Int(body[0]) % 10
        let samples = 1 + Int(body[1]) % 50
        let layout = Array(0..<registers)
        let selection = (0..<registers * samples).map { layout[$0 % registers] }
        let count = selection.count
        let blob = Array(body.dropFirst(2))

        if let values = try? BitPackDecoder.decode(blob, count: count) {
            coverage.hit(.codecBitPack)
            precondition(try! BitPackDecoder.decode(BitPackEncoder.encode(values), count: count) == values, "bit-pack round trip")
        }
        if let values = try? DictionaryDecoder.decode(blob, count: count) {
            coverage.hit(.codecDictionary)
            let encoded = DictionaryEncoder.encode(values)
            let decoded =
                encoded.first == CompressionMarker.dictionary.rawValue
                ? try! DictionaryDecoder.decode(encoded, count: count) : try! BitPackDecoder.decode(encoded, count: count)
            precondition(decoded == values, "dictionary round trip")
        }
        if let values = try? SemanticRLEDecoder.decode(blob, count: count) {
            coverage.hit(.codecSemantic)
            // Lossy within the type's tolerance of a run head; one-byte types keep the head's low byte only.
            let approximate = try! SemanticRLEDecoder.decode(SemanticRLEEncoder.encode(values, selection: selection), count: count)
            for (index, register) in selection.enumerated() {
                let type = SemanticRLEEncoder.typeID(of: register)
                let tolerance = SemanticRLEEncoder.tolerance(ofType: type)
                let difference = Int(values[index]) - Int(approximate[index])
                if (SemanticRLEDecoder.typeBits(type) ?? 16) <= 8 {
                    precondition(difference & 0xFF <= tolerance || difference & 0xFF >= 256 - tolerance, "low byte within tolerance")
                } else {
                    precondition(abs(difference) <= tolerance, "semantic value within tolerance")
                }
            }
        }
        if let values = try? TemporalDecoder.decodeBase(blob, selection: selection) {
            coverage.hit(.codecTemporalBase)
            precondition(values.count == count, "0x70 decodes every value")
        }
        // 0x71 against a model that has seen the same layout for eight batches (compatible, as on the device).
        var context = TemporalContext()
        for batch in 0..<8 {
            context.update(values: selection.map { UInt16(truncatingIfNeeded: $0 * 97 + batch * 13) }, selection: selection)
        }
        if let values = try? TemporalDecoder.decodeDelta(blob, selection: selection, context: context) {
            coverage.hit(.codecTemporalDelta)
            if count <= 10 {
                var encoder = context
                let encoded = TemporalEncoder.encode(values, selection: selection, context: &encoder)
                precondition(encoded.first == CompressionMarker.temporalDelta.rawValue, "a compatible model emits 0x71")
                precondition(
                    try! TemporalDecoder.decodeDelta(encoded, selection: selection, context: context) == values,
                    "temporal round trip"
                )
            }
        }
    }

    static func runJSON(_ body: [UInt8]) {
        guard let value = try? JSONParser.parse(body) else { return }
        coverage.hit(.jsonParsed)
        let text = value.serialized
        guard let again = try? JSONParser.parse(Array(text.utf8)) else { preconditionFailure("written JSON parses") }
        precondition(again.serialized == text, "JSON round trip is stable")
    }
}
