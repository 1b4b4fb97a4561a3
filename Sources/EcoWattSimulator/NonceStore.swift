import Foundation
import Synchronization

/// The devices' NVS nonce counters: the last nonce each device used, loaded from and saved to a JSON file so that a
/// later run continues above it (the server rejects any nonce not above the last one it accepted).
final class NonceStore: Sendable {
    /// Where the firmware's counter starts on a fresh device.
    static let firmwareStart: UInt32 = 11001

    private let file: URL?
    private let values: Mutex<[String: UInt32]>

    init(file: URL?) throws {
        self.file = file
        var loaded: [String: UInt32] = [:]
        if let file, FileManager.default.fileExists(atPath: file.path) {
            let data = try Data(contentsOf: file)
            loaded = try JSONDecoder().decode([String: UInt32].self, from: data)
        }
        values = Mutex(loaded)
    }

    /// The next nonce of `deviceID` (strictly above every earlier one).
    func next(for deviceID: String) -> UInt32 {
        values.withLock { values in
            let next = values[deviceID].map { $0 &+ 1 } ?? Self.firmwareStart
            values[deviceID] = next
            return next
        }
    }

    /// Writes the counters (atomically) when a file was given.
    ///
    /// - Parameter headroom: added to every counter; periodic checkpoints pass a margin so that a run killed between
    ///   two checkpoints never reuses a nonce in the next run (gaps are harmless, the firmware makes them too).
    func save(headroom: UInt32 = 0) throws {
        guard let file else { return }
        let snapshot = values.withLock { $0.mapValues { $0 &+ headroom } }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try encoder.encode(snapshot).write(to: file, options: .atomic)
    }
}
