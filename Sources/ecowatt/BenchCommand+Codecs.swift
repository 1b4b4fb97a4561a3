import ArgumentParser
import EcoWattProtocol
import Foundation

extension BenchCommand {
    /// `ecowatt bench codecs`: CPU cost of every encoder and decoder on the firmware's own batches.
    struct CodecCost: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "codecs",
            abstract: "Time each codec (encode and decode) per batch and per value on the blobs.jsonl batches.",
            discussion: """
                Every batch of the conformance corpus is encoded with each of the firmware's four encoders and with the
                smart selection (all four plus the choice, as the device does), and every blob is decoded with the
                decoder of its marker (0x71 against the exact temporal state of its boot sequence).
                """
        )

        @Option(help: "blobs.jsonl of the conformance corpus.") var blobs = "../shared/conformance/blobs.jsonl"
        @Option(help: "Passes over the corpus.") var iterations = 200

        struct Batch {
            var sequence: String
            var values: [UInt16]
            var selection: [Int]
            var blob: [UInt8]
            var marker: UInt8
            /// The temporal state before this batch (for decoding 0x71).
            var context: TemporalContext
        }

        func run() throws {
            guard let text = FileManager.default.contents(atPath: blobs) else {
                throw ValidationError("cannot read \(blobs)")
            }
            var batches: [Batch] = []
            var contexts: [String: TemporalContext] = [:]
            let lines = try String(decoding: text, as: UTF8.self).split(separator: "\n").map {
                try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
            }.sorted {
                ($0["sequence"] as! String, $0["index"] as! Int) < ($1["sequence"] as! String, $1["index"] as! Int)
            }
            for line in lines {
                let sequence = line["sequence"] as! String
                let layout = line["register_layout"] as! [Int]
                let samples = line["sample_count"] as! Int
                let selection = (0..<layout.count * samples).map { layout[$0 % layout.count] }
                let rows = (line["true_values"] as? [[Int]]) ?? (line["values"] as! [[Int]])
                let values = rows.flatMap { $0.map { UInt16($0) } }
                let blob = HexCoding.decode(line["blob_hex"] as! String) ?? []
                let context = contexts[sequence, default: TemporalContext()]
                batches.append(.init(sequence: sequence, values: values, selection: selection, blob: blob, marker: blob[0], context: context))
                contexts[sequence, default: TemporalContext()].update(values: values, selection: selection)
            }
            let totalValues = batches.reduce(0) { $0 + $1.values.count }
            print("corpus: \(batches.count) batches, \(totalValues) values, \(iterations) passes")
            print("| Codec | Batches | Values/batch | ns/batch | ns/value |")
            print("|---|---|---|---|---|")

            func measure(_ label: String, _ subset: [Batch], _ body: (Batch) -> Int) {
                guard !subset.isEmpty else { return }
                var sink = 0
                let clock = ContinuousClock()
                let elapsed = clock.measure {
                    for _ in 0..<iterations {
                        for batch in subset { sink &+= body(batch) }
                    }
                }
                let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
                let count = Double(iterations * subset.count)
                let values = Double(subset.reduce(0) { $0 + $1.values.count })
                let row = String(
                    format: "| %@ | %d | %.1f | %.0f | %.1f |",
                    label,
                    subset.count,
                    values / Double(subset.count),
                    ns / count,
                    ns / (count * values / Double(subset.count))
                )
                print(row + (sink == -1 ? " " : ""))
            }

            measure("encode 0x01 bit-pack", batches) { BitPackEncoder.encode($0.values).count }
            measure("encode 0xD0 dictionary", batches) { DictionaryEncoder.encode($0.values).count }
            measure("encode 0x50 semantic RLE", batches) { SemanticRLEEncoder.encode($0.values, selection: $0.selection).count }
            measure("encode 0x70/0x71 temporal", batches) { batch in
                var context = batch.context
                return TemporalEncoder.encode(batch.values, selection: batch.selection, context: &context).count
            }
            measure("encode: smart selection (all four, as the device)", batches) { batch in
                // The device's compressor at this point of its boot: the temporal state is what it held before.
                var compressor = SmartCompressor(context: batch.context)
                return compressor.compress(batch.values, selection: batch.selection).count
            }
            func subset(_ marker: UInt8) -> [Batch] { batches.filter { $0.marker == marker } }
            measure("decode 0x01 bit-pack", subset(0x01)) {
                (try? BitPackDecoder.decode($0.blob, count: $0.selection.count))?.count ?? 0
            }
            measure("decode 0xD0 dictionary", subset(0xD0)) {
                (try? DictionaryDecoder.decode($0.blob, count: $0.selection.count))?.count ?? 0
            }
            measure("decode 0x50 semantic RLE", subset(0x50)) {
                (try? SemanticRLEDecoder.decode($0.blob, count: $0.selection.count))?.count ?? 0
            }
            measure("decode 0x71 temporal delta", subset(0x71)) {
                (try? TemporalDecoder.decodeDelta($0.blob, selection: $0.selection, context: $0.context))?.count ?? 0
            }
        }
    }
}
