import EcoWattStorage
import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle

/// ``ChangeFeed`` through PostgreSQL's LISTEN/NOTIFY (issue 22): a notice is `NOTIFY ecowatt_changes, '<instance>
/// <kind> <device>'`, sent after the change committed; each instance listens on one connection of its own and skips
/// its own notices. When the listening connection breaks it reconnects and reports ``InstanceChange/everything``:
/// notices sent meanwhile are lost, so consumers reload everything they cache.
public final class PostgresChangeFeed: ChangeFeed, Service, Sendable {
    public static let channel = "ecowatt_changes"

    private let database: EcoWattPostgresDatabase
    private let instance = UUID().uuidString.prefix(8).lowercased()
    private let stream: AsyncStream<InstanceChange>
    private let continuation: AsyncStream<InstanceChange>.Continuation

    public init(database: EcoWattPostgresDatabase) {
        self.database = database
        (stream, continuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(10_000))
    }

    public var changes: AsyncStream<InstanceChange> { stream }

    public func announce(_ change: InstanceChange) async {
        do {
            try await database.client.execute("SELECT pg_notify(\(Self.channel), \("\(instance) \(change.payload)"))", logger: database.logger)
        } catch {
            // The others then serve from what they cached until their next reload; logged, never fatal to the request.
            database.logger.warning("change notice not sent", metadata: ["change": "\(change.payload)", "error": "\(error.logDescription)"])
        }
    }

    /// Listens until shutdown, reconnecting after a second when the connection breaks.
    public func run() async throws {
        let prefix = "\(instance) "
        await cancelWhenGracefulShutdown {
            var first = true
            while !Task.isCancelled {
                do {
                    try await self.database.client.withConnection { connection in
                        try await connection.listen(on: Self.channel) { notifications in
                            if !first { self.continuation.yield(.everything) }
                            first = false
                            for try await notification in notifications {
                                guard !notification.payload.hasPrefix(prefix), let space = notification.payload.firstIndex(of: " "),
                                    let change = InstanceChange(payload: String(notification.payload[notification.payload.index(after: space)...]))
                                else { continue }
                                self.continuation.yield(change)
                            }
                        }
                    }
                } catch {
                    if Task.isCancelled { break }
                    self.database.logger.warning("change notices interrupted; listening again", metadata: ["error": "\(error.logDescription)"])
                    try? await Task.sleep(for: .seconds(1))
                }
            }
        }
        continuation.finish()
    }
}
