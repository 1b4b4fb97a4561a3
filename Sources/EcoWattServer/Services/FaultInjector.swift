import EcoWattProtocol
import Foundation
import Synchronization

/// Operator fault injection (spec §1.3, §7.8), off unless `fault_injection` is enabled: network faults on device
/// routes, OTA faults for one device, and the record of security self-tests.
public final class FaultInjector: Sendable {
    /// A network fault on device routes whose path starts with `prefix`.
    public struct NetworkFault: Sendable, Equatable {
        public enum Kind: String, Sendable, CaseIterable {
            /// Waits `delayMs`, then answers 504.
            case timeout
            /// Answers 503 at once.
            case disconnect
            /// Waits `delayMs`, then handles the request normally.
            case slow
        }
        public var id: String
        public var kind: Kind
        public var prefix: String
        public var probability: Double
        public var delayMs: Int
        public var injected = 0
    }

    /// An OTA fault for one device (spec §7.8).
    public struct OTAFault: Sendable, Equatable {
        public enum Kind: String, Sendable, CaseIterable {
            /// XORs 5–10 bytes of the served ciphertext of `chunk` (every chunk when `nil`).
            case corruptChunk = "corrupt_chunk"
            /// `update_info.sha256_hash` becomes 64 random hex characters.
            case badHash = "bad_hash"
            /// `update_info.signature` becomes `INVALID_SIG_` + 32 hex characters.
            case badSignature = "bad_signature"
        }
        public var id: String
        public var kind: Kind
        public var deviceID: String
        public var chunk: Int?
        public var injected = 0
    }

    /// Device route prefixes network faults may target.
    public static let devicePrefixes = [
        "/aggregated", "/commands", "/config", "/devices", "/diagnostics", "/fault/recovery", "/ota", "/power",
    ]

    public let enabled: Bool
    private let state = Mutex<(network: [NetworkFault], ota: [OTAFault], selfTests: [JSONValue])>(([], [], []))

    public init(enabled: Bool) {
        self.enabled = enabled
    }

    public func add(_ fault: NetworkFault) { state.withLock { $0.network.append(fault) } }
    public func add(_ fault: OTAFault) { state.withLock { $0.ota.append(fault) } }

    /// Removes one fault by id, or all of them; returns how many were removed.
    public func clear(id: String? = nil) -> Int {
        state.withLock { state in
            let before = state.network.count + state.ota.count
            if let id {
                state.network.removeAll { $0.id == id }
                state.ota.removeAll { $0.id == id }
            } else {
                state.network = []
                state.ota = []
                state.selfTests = []
            }
            return before - state.network.count - state.ota.count
        }
    }

    public var snapshot: (network: [NetworkFault], ota: [OTAFault], selfTests: [JSONValue]) { state.withLock { $0 } }

    /// The network fault to apply to a request on `path`, if one fires (by its probability).
    func networkFault(path: String) -> NetworkFault? {
        guard enabled else { return nil }
        return state.withLock { state in
            guard let index = state.network.firstIndex(where: { path.hasPrefix($0.prefix) && Double.random(in: 0..<1) < $0.probability })
            else { return nil }
            state.network[index].injected += 1
            return state.network[index]
        }
    }

    /// The OTA fault of `kind` for the device (and chunk), counting it as injected.
    func otaFault(_ kind: OTAFault.Kind, deviceID: String, chunk: Int? = nil) -> OTAFault? {
        guard enabled else { return nil }
        return state.withLock { state in
            guard
                let index = state.ota.firstIndex(where: { fault in
                    fault.kind == kind && fault.deviceID == deviceID && (fault.chunk == nil || chunk == nil || fault.chunk == chunk)
                })
            else { return nil }
            state.ota[index].injected += 1
            return state.ota[index]
        }
    }

    /// Keeps the last 50 self-test results.
    func recordSelfTest(_ result: JSONValue) {
        state.withLock { state in
            state.selfTests.append(result)
            if state.selfTests.count > 50 { state.selfTests.removeFirst(state.selfTests.count - 50) }
        }
    }

    /// `count` random lower-case hex characters (`count` even).
    /// A new fault's id.
    static func newID() -> String { "fault-" + randomHex(8) }

    static func randomHex(_ count: Int) -> String {
        HexCoding.encode((0..<count / 2).map { _ in UInt8.random(in: 0...255) })
    }
}
