// swift-tools-version: 6.1
import PackageDescription

/// `scripts/fuzz.sh` builds only the fuzzer (in `.build-fuzz`), and SwiftPM builds the tool of every build-tool plugin
/// of the package when it plans a build, even for a product that does not use it: in CI the OpenAPI generator's tool
/// took 4 of the fuzz build's 7 minutes (release). With `ECOWATT_FUZZ_BUILD=1` the generator is left out; EcoWattAPI
/// is not in the fuzzer's dependencies, so nothing built there needs it.
let openAPIGenerator: [Target.PluginUsage] =
    Context.environment["ECOWATT_FUZZ_BUILD"] == "1" ? [] : [.plugin(name: "OpenAPIGenerator", package: "swift-openapi-generator")]

let package = Package(
    name: "EcoWattCloud",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ecowatt", targets: ["ecowatt"]),
        .library(name: "EcoWattProtocol", targets: ["EcoWattProtocol"]),
        .library(name: "FirmwareImage", targets: ["FirmwareImage"]),
        .library(name: "EcoWattStorage", targets: ["EcoWattStorage"]),
        .library(name: "EcoWattSQLite", targets: ["EcoWattSQLite"]),
        .library(name: "EcoWattPostgres", targets: ["EcoWattPostgres"]),
        .library(name: "EcoWattAPI", targets: ["EcoWattAPI"]),
        .library(name: "EcoWattServer", targets: ["EcoWattServer"]),
        .library(name: "EcoWattSimulator", targets: ["EcoWattSimulator"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", exact: "2.28.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", exact: "4.5.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", exact: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-openapi-generator.git", from: "1.14.3"),
        .package(url: "https://github.com/apple/swift-openapi-runtime.git", from: "1.13.4"),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird.git", from: "2.1.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-openapi-async-http-client.git", from: "1.1.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        // gzip of the dashboard's assets (what hummingbird-compression uses; zlib from zlib1g-dev).
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
    ],
    targets: [
        /// Pure wire protocol: envelope verification, upload models, codecs, register table. No I/O.
        .target(
            name: "EcoWattProtocol",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto")
            ]
        ),
        /// FOTA keys and firmware preparation: AES-256-CBC, RSA signatures, manifests, chunks, the device-side checks.
        .target(
            name: "FirmwareImage",
            dependencies: [
                "EcoWattProtocol",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        /// The operator API v1: types, server protocol and client generated from `openapi.json` (issue 18).
        .target(
            name: "EcoWattAPI",
            dependencies: [
                "EcoWattProtocol",
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            resources: [.embedInCode("openapi.json")],
            plugins: openAPIGenerator
        ),
        /// libmosquitto from Debian (`libmosquitto-dev`).
        .systemLibrary(
            name: "CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"])]
        ),
        /// The MQTT northbound feed: a libmosquitto client, the telemetry payloads, and the outbox publisher.
        .target(
            name: "MQTTBridge",
            dependencies: [
                "CMosquitto",
                "EcoWattProtocol",
                "EcoWattStorage",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        /// The storage seam: store protocols, record types, write tickets and in-memory stores. No GRDB.
        .target(
            name: "EcoWattStorage",
            dependencies: [
                "EcoWattProtocol",
                "FirmwareImage",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        /// SQLite (GRDB, WAL) storage: migrations, the stores, the single group-commit writer, backups. The only
        /// module that imports GRDB.
        .target(
            name: "EcoWattSQLite",
            dependencies: [
                "EcoWattProtocol",
                "EcoWattStorage",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        /// The stores on PostgreSQL through postgres-nio's `PostgresClient` (issue 22), for several server instances on
        /// one shared database.
        .target(
            name: "EcoWattPostgres",
            dependencies: [
                "EcoWattProtocol",
                "EcoWattStorage",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        /// Hummingbird application: routes and actor services.
        .target(
            name: "EcoWattServer",
            dependencies: [
                "EcoWattProtocol",
                "EcoWattSQLite",
                "EcoWattPostgres",
                "EcoWattStorage",
                "FirmwareImage",
                "MQTTBridge",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                "EcoWattAPI",
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ],
            resources: [
                .embedInCode("Dashboard/Assets/index.html"), .embedInCode("Dashboard/Assets/app.js"),
                .embedInCode("Dashboard/Assets/style.css"), .embedInCode("Dashboard/Assets/device-chart.js"),
                .embedInCode("Dashboard/Assets/pages.js"), .embedInCode("Dashboard/Assets/device-sections.js"),
                .embedInCode("Dashboard/Assets/fleet-pages.js"), .embedInCode("Dashboard/Assets/rollouts.js"),
            ]
        ),
        /// `ecowatt simulate`: a fleet of simulated devices speaking the firmware protocol.
        .target(
            name: "EcoWattSimulator",
            dependencies: [
                "EcoWattProtocol",
                "FirmwareImage",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        /// The fuzzing harness over the device-input path (envelope, inner JSON, codecs, temporal model, time) and its
        /// seeds from the conformance corpora.
        .target(
            name: "EcoWattFuzzing",
            dependencies: [
                "EcoWattProtocol",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        /// `EcoWattFuzz`: libFuzzer driver (`scripts/fuzz.sh` builds it with `-sanitize=fuzzer` in `.build-fuzz`), or in a
        /// normal build the seed writer and corpus replayer.
        .executableTarget(
            name: "EcoWattFuzz",
            dependencies: ["EcoWattFuzzing"]
        ),
        /// The `ecowatt` command-line tool (thin).
        .executableTarget(
            name: "ecowatt",
            dependencies: [
                "EcoWattServer",
                "EcoWattProtocol",
                "EcoWattSimulator",
                "EcoWattSQLite",
                "EcoWattStorage",
                "FirmwareImage",
                "MQTTBridge",
                .product(name: "Configuration", package: "swift-configuration"),
                "EcoWattAPI",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIAsyncHTTPClient", package: "swift-openapi-async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        /// Helpers shared by the test targets (conformance corpus, mosquitto broker, ports, simulator progress).
        .target(
            name: "EcoWattTestSupport",
            dependencies: [
                "EcoWattProtocol", "EcoWattStorage", "EcoWattPostgres", "MQTTBridge", "EcoWattSimulator",
                .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/EcoWattTestSupport"
        ),
        .testTarget(
            name: "EcoWattProtocolTests",
            dependencies: [
                "EcoWattProtocol", "EcoWattTestSupport", .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "EcoWattFuzzingTests",
            dependencies: ["EcoWattFuzzing", "EcoWattProtocol", "EcoWattTestSupport"],
            resources: [.copy("Corpus"), .copy("Regressions")]
        ),
        .testTarget(
            name: "FirmwareImageTests",
            dependencies: ["FirmwareImage", "EcoWattTestSupport", .product(name: "_CryptoExtras", package: "swift-crypto")]
        ),
        .testTarget(
            name: "MQTTBridgeTests",
            dependencies: ["MQTTBridge", "EcoWattSQLite", "EcoWattStorage", "EcoWattProtocol", "EcoWattTestSupport"]
        ),
        .testTarget(
            name: "EcoWattStorageTests",
            dependencies: ["EcoWattStorage", "EcoWattSQLite", "EcoWattPostgres", "EcoWattProtocol", "EcoWattTestSupport", "FirmwareImage"]
        ),
        .testTarget(
            name: "EcoWattPostgresTests",
            dependencies: [
                "EcoWattPostgres", "EcoWattStorage", "EcoWattTestSupport", .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        .testTarget(
            name: "EcoWattSQLiteTests",
            dependencies: ["EcoWattSQLite", "EcoWattStorage", "EcoWattTestSupport", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .testTarget(
            name: "EcoWattSimulatorTests",
            dependencies: [
                "EcoWattSimulator",
                "EcoWattProtocol",
                "EcoWattTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(
            name: "EcoWattServerTests",
            dependencies: [
                "EcoWattServer",
                "EcoWattSimulator",
                "EcoWattTestSupport",
                "FirmwareImage",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                "EcoWattSQLite",
                "EcoWattStorage",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Configuration", package: "swift-configuration"),
                "EcoWattAPI",
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "OpenAPIAsyncHTTPClient", package: "swift-openapi-async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
    ]
)
