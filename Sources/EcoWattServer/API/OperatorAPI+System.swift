import EcoWattAPI
import EcoWattProtocol

/// What `GET /api/v1/system` reports beside the services' own counters.
struct SystemFacts: Sendable {
    let startedAtMs: Int64
    let databaseSize: DatabaseSizeReading
    let live: LiveEvents
    let maxEventStreams: Int
}

/// `GET /api/v1/system`: the dashboard's System page.
extension OperatorAPI {
    func getSystem(_ input: Operations.GetSystem.Input) async throws -> Operations.GetSystem.Output {
        let now = clock()
        let counters = ingest.statistics
        let database = system.databaseSize.reading.map { reading in
            Schemas.SystemStatus.DatabasePayload(
                totalBytes: reading.files.values.reduce(0, +),
                files: .init(additionalProperties: reading.files),
                tables: .init(additionalProperties: reading.tables),
                measuredAt: date(reading.measuredAtMs)
            )
        }
        return .ok(
            .init(
                body: .json(
                    .init(
                        version: BuildInfo.version,
                        commit: BuildInfo.commit,
                        startedAt: date(system.startedAtMs),
                        uptimeSeconds: max(0, now - system.startedAtMs) / 1000,
                        database: database,
                        uploadsLastMinute: Int64(vitals.fleetUploadsLastMinute(nowMs: now)),
                        uploadsAccepted: Int64(counters.accepted),
                        samplesStored: Int64(counters.samples),
                        eventStreamsOpen: system.live.subscriberCount,
                        eventStreamsMax: system.maxEventStreams
                    )
                )
            )
        )
    }
}
