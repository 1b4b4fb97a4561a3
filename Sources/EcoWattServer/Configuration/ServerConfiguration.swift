import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import Foundation
import MQTTBridge

/// Every setting of `ecowatt serve`, nested by concern. The keys, environment variables, ranges and help of the
/// settings are declared once, in ``settings``; ``load(configFile:environment:flags:)`` reads them through
/// swift-configuration: defaults < config file < `ECOWATT_*` environment < command-line flags.
public struct ServerConfiguration: Sendable, Equatable {
    /// The listeners.
    public struct HTTP: Sendable, Equatable {
        public var host = "0.0.0.0"
        /// The firmware's 5001 by default.
        public var port = 5001
        public var operatorHost = "127.0.0.1"
        /// `nil`: operator routes on the device port.
        public var operatorPort: Int? = nil
        public var tlsCertFile: String? = nil
        public var tlsKeyFile: String? = nil
        public var maxBodyBytes = 64 * 1024
        public var trustedProxies: [String] = []
        public var forwardedHeader = "X-Forwarded-For"
    }

    /// The database.
    public struct Storage: Sendable, Equatable {
        public var dataDirectory = "./data"
        public var durability = Durability.normal
        /// PostgreSQL instead of SQLite (`postgres://user:password@host:port/database`), shared by several instances.
        public var databaseURL: String?
        /// Connections each instance keeps to PostgreSQL at most.
        public var databaseConnections = 20
        /// The audit chain's external head (``Accounts/auditHeadFile`` or `audit_head.log` beside the database).
        public func auditHeadPath(_ accounts: Accounts) -> String {
            accounts.auditHeadFile ?? (dataDirectory as NSString).appendingPathComponent("audit_head.log")
        }
        /// The SQLite file inside ``dataDirectory``.
        public var databasePath: String { EcoWattDatabase.path(inDirectory: dataDirectory) }
    }

    /// Keys and what an unsigned device request may do.
    public struct Security: Sendable, Equatable {
        public var keysDirectory = "./keys"
        public var fleetKeyHex = FleetKey.firmwareDefaultHex
        public var deviceBinding = DeviceBinding.Policy.address
        /// Which ids uploads are accepted from: `open` (any, registered on the way) or `known` (provisioned or accepted).
        public var deviceAdmission = DeviceAdmission.open
        /// The operator bearer token file inside ``keysDirectory``.
        public var operatorTokenPath: String { (keysDirectory as NSString).appendingPathComponent("operator_token") }
    }

    /// Operator accounts, sessions, tokens and the audit trail (issue 19).
    public struct Accounts: Sendable, Equatable {
        /// bcrypt cost (log2 rounds): 12 takes about 0.25 s of one core.
        public var passwordCost = 12
        /// Logins waiting for the hashing thread beyond the one hashing; more are answered 429.
        public var maxQueuedHashes = 8
        public var hashSharePercent = 50
        /// A refused login (throttled, or the hashing queue full) is answered this late, never later than its
        /// `Retry-After`: a client that sends the next try as soon as it has the answer then tries once a second per
        /// connection instead of as fast as the server answers.
        public var loginRefusalDelayMs = 1000
        public var sessionIdleMinutes = 60
        public var sessionMaxHours = 12
        public var maxSessionsPerUser = 10
        public var maxTokensPerUser = 20
        /// The file the audit chain's head is appended to, outside the database; `nil`: `audit_head.log` in the
        /// data directory.
        public var auditHeadFile: String? = nil
    }

    /// The web dashboard (issue 20).
    public struct Dashboard: Sendable, Equatable {
        /// Chart.js 3 (Debian's `libjs-chart.js`), served at `/assets/vendor/chart.min.js`; without it the pages show
        /// tables.
        public var chartJSFile = "/usr/share/javascript/chart.js/chart.min.js"
        /// Live event streams open at once (one per dashboard tab); more are refused with 429.
        public var maxEventStreams = 100
        /// Device ids whose latest refused uploads, undecodable packets and failed updates are kept in memory.
        public var eventLogDevices = 4096
    }

    /// The device registry.
    public struct Devices: Sendable, Equatable {
        public var offlineAfterSeconds = 120
    }

    /// Command queues.
    public struct Commands: Sendable, Equatable {
        public var resultTimeoutSeconds = 60
        public var maxPending = 100
        public var defaultTTLSeconds = 86_400
    }

    /// Firmware images.
    public struct OTA: Sendable, Equatable {
        public var firmwareDirectory = "./firmware"
        public var maxFirmwareBytes = 8 * 1024 * 1024
    }

    /// Diagnostics JSONL files.
    public struct Diagnostics: Sendable, Equatable {
        public var directory = "./diagnostics_data"
        public var maxFileBytes = 4 * 1024 * 1024
        public var retainedFiles = 5
    }

    public var http = HTTP()
    public var storage = Storage()
    public var security = Security()
    public var accounts = Accounts()
    public var dashboard = Dashboard()
    public var devices = Devices()
    public var commands = Commands()
    public var ota = OTA()
    public var diagnostics = Diagnostics()
    /// The MQTT feed.
    public var mqtt = MQTTPublisher.Configuration()
    /// Caps on stored rows, memory, connections and logging.
    public var limits = ServerLimits()
    public var logLevel = "info"
    public var faultInjection = false

    public init() {}

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
}

/// A configuration value that cannot be used.
public enum ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalid(String)

    public var message: String {
        switch self {
        case .invalid(let message): message
        }
    }
    public var description: String { message }
}
