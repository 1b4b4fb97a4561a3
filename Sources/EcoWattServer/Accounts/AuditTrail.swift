import EcoWattProtocol
import EcoWattStorage
import Foundation
import Logging
import Synchronization

/// The tamper-evident audit trail (issue 19): entries chained by SHA-256 in the database, and every new head appended
/// to a file outside it (and logged), so that editing, deleting, truncating or recomputing the chain is detectable.
public final class AuditTrail: Sendable {
    private let store: any AccountStore
    private let headPath: String
    private let logger: Logger
    /// Serialises head-file appends (the store orders the entries; the file gets them in sequence order).
    private let headFile = Mutex<Int64>(0)

    public init(store: any AccountStore, headPath: String, logger: Logger) {
        self.store = store
        self.headPath = headPath
        self.logger = logger
    }

    /// Appends an entry. Failures are logged, never thrown: the action it records has happened.
    @discardableResult
    public func record(_ draft: AuditDraft) async -> AuditEntry? {
        do {
            let entry = try await store.appendAudit(draft)
            appendHead(entry)
            logger.info(
                "audit",
                metadata: [
                    "sequence": "\(entry.sequence)", "actor": LogText.value(draft.actor), "action": "\(draft.action)",
                    "target": LogText.value(draft.target), "outcome": "\(draft.outcome)", "hash": "\(entry.hash)",
                ]
            )
            return entry
        } catch {
            logger.error("audit entry not stored", metadata: ["action": "\(draft.action)", "error": "\(error.logDescription)"])
            return nil
        }
    }

    private func appendHead(_ entry: AuditEntry) {
        headFile.withLock { written in
            guard entry.sequence > written else { return }
            let line = Array("\(entry.sequence) \(entry.hash)\n".utf8)
            let descriptor = open(headPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else {
                logger.error("audit head not written", metadata: ["path": "\(headPath)", "errno": "\(errno)"])
                return
            }
            defer { close(descriptor) }
            guard line.withUnsafeBytes({ write(descriptor, $0.baseAddress, $0.count) }) == line.count else {
                logger.error("audit head not written", metadata: ["path": "\(headPath)", "errno": "\(errno)"])
                return
            }
            written = entry.sequence
        }
    }

    public func entries(filter: AuditFilter, before: Int64?, limit: Int) async throws -> [AuditEntry] {
        try await store.auditEntries(filter: filter, before: before, limit: limit)
    }

    /// Every entry oldest first, a page at a time (export).
    public func export(after: Int64, limit: Int) async throws -> [AuditEntry] {
        try await store.auditEntries(after: after, limit: limit)
    }

    /// The outcome of ``verify()``.
    public struct Verification: Sendable, Equatable {
        public var entries: Int64
        public var headSequence: Int64
        public var headHash: String?
        /// The last head the external file recorded.
        public var externalSequence: Int64?
        /// The first broken link and why, or `nil` when the chain is intact and matches the file.
        public var firstBroken: (sequence: Int64, reason: String)?

        public var intact: Bool { firstBroken == nil }

        public static func == (lhs: Verification, rhs: Verification) -> Bool {
            lhs.entries == rhs.entries && lhs.headSequence == rhs.headSequence && lhs.externalSequence == rhs.externalSequence
                && lhs.firstBroken?.sequence == rhs.firstBroken?.sequence && lhs.firstBroken?.reason == rhs.firstBroken?.reason
        }
    }

    /// Walks the chain from the first entry: sequences without gaps, each entry's hash over its fields, each previous
    /// hash the entry before's; then the external head: the chain must reach its last line with the same hash.
    public func verify() async throws -> Verification {
        let external = Self.lastHead(path: headPath)
        var result = Verification(entries: 0, headSequence: 0, externalSequence: external?.sequence)
        var previous = AuditEntry.genesis
        var after: Int64 = 0
        var hashAtExternal: String?
        walk: while true {
            let page = try await store.auditEntries(after: after, limit: 1000)
            for entry in page {
                result.entries += 1
                if entry.sequence != after + 1 {
                    result.firstBroken = (after + 1, "entry \(after + 1) is missing (next is \(entry.sequence))")
                    break walk
                }
                if entry.previousHash != previous {
                    result.firstBroken = (entry.sequence, "previous hash does not match entry \(entry.sequence - 1)")
                    break walk
                }
                if !entry.isIntact {
                    result.firstBroken = (entry.sequence, "hash does not match the entry's fields (edited)")
                    break walk
                }
                previous = entry.hash
                after = entry.sequence
                if entry.sequence == external?.sequence { hashAtExternal = entry.hash }
            }
            if page.count < 1000 { break }
        }
        result.headSequence = after
        result.headHash = after > 0 ? previous : nil
        if result.firstBroken == nil, let external {
            if after < external.sequence {
                result.firstBroken = (after + 1, "the chain ends at \(after) but the external head file recorded \(external.sequence) (truncated)")
            } else if hashAtExternal != external.hash {
                result.firstBroken = (external.sequence, "entry \(external.sequence) differs from the external head file (chain recomputed)")
            }
        }
        return result
    }

    /// The last well-formed line of the head file.
    static func lastHead(path: String) -> (sequence: Int64, hash: String)? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        var last: (Int64, String)?
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let sequence = Int64(parts[0]), parts[1].count == 64, sequence > (last?.0 ?? 0) {
                last = (sequence, String(parts[1]))
            }
        }
        return last
    }
}
