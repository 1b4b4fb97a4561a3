import Crypto
import EcoWattProtocol
import FirmwareImage
import Foundation

/// The firmware's task periods (spec §0.7), in device seconds.
public struct DeviceIntervals: Sendable, Equatable {
    /// Sensor poll (`sampling_interval`).
    public var poll: Double = 5
    /// Upload (`upload_interval`).
    public var upload: Double = 15
    /// Config poll (`config_poll_interval`).
    public var config: Double = 5
    /// Command poll (`command_poll_interval`).
    public var command: Double = 10
    /// OTA check (`firmware_check_interval`).
    public var ota: Double = 6000
    /// Energy report (`energy_poll_interval`).
    public var energy: Double = 300

    public init() {}
}

/// Everything a simulation run needs.
public struct SimulationOptions: Sendable {
    /// Server base URL, e.g. `http://127.0.0.1:5001`.
    public var baseURL: String
    /// Number of simulated devices.
    public var devices: Int = 10
    /// Length of the run in real (wall-clock) seconds.
    public var duration: Double = 60
    /// Device seconds per real second: 10 runs every period ten times faster, and device clocks advance ten times
    /// faster than the wall clock (timestamps stay consistent with the intervals the devices report).
    public var speed: Double = 1
    /// Device ids are `<prefix><n>` with n zero-padded to three digits (`ESP32_SIM_001`).
    public var idPrefix = "ESP32_SIM_"
    /// Periods at boot (the server can change them through remote configuration).
    public var intervals = DeviceIntervals()
    /// Registers read at boot, in any order (the firmware keeps them in ascending id order).
    public var registers: [Register] = [.vac1, .iac1, .ipv1, .ipv2, .temp, .pac]
    /// Upload HMAC key (the firmware's fleet key by default).
    public var uploadKey = FleetKey.firmwareDefault
    /// Version the devices run at their first boot.
    public var firmwareVersion = "1.3.4"
    /// FOTA keys the devices trust (AES key and RSA public key); `nil` disables OTA checks.
    public var firmwareKeys: FirmwareKeys?
    /// NVS emulation: last nonce per device, kept across runs so that a rerun is not a replay. `nil`: start at 11001.
    public var nonceFile: URL?
    /// Real seconds over which device boots are spread; `nil`: one upload period.
    public var rampUp: Double?
    /// Probability that a sensor read hits a Modbus fault (the device then retries and posts `POST /fault/recovery`).
    public var modbusFaultRate = 0.0
    /// Seed of the inverter models (runs with the same seed read the same values).
    public var seed: UInt64 = 1
    /// Device seconds after a boot until NTP syncs: before it the device stamps its samples with `millis()` and
    /// reports its uptime (spec §0.6). 0: synced at boot.
    public var ntpDelay: Double = 0
    /// Device seconds each Modbus read takes (the sensor period is the poll interval plus this).
    public var modbusReadTime: Double = 0.15
    /// The operator token: with it, the run ends by reading back every device's samples and counting how many of
    /// the readings the server stored exactly.
    public var operatorToken: String?
    /// Shares of the devices whose firmware updates go wrong (for rollouts).
    public var updateFaults = UpdateFaults()

    public init(baseURL: String) {
        self.baseURL = baseURL
    }

    /// The id of device `index` (0-based).
    public func deviceID(_ index: Int) -> String {
        let number = String(index + 1)
        return idPrefix + String(repeating: "0", count: max(0, 3 - number.count)) + number
    }
}

/// Shares (0–1) of the devices whose firmware updates go wrong, each way; a device's way is drawn from a hash of its
/// id, so it is the same in every run, and the shares do not overlap (their sum must be at most 1).
public struct UpdateFaults: Sendable, Equatable {
    public enum Way: String, Sendable, CaseIterable {
        /// The downloaded image fails verification: `verification_failed`, then a boot report `rolled_back`.
        case verificationFailure = "verification_failure"
        /// Installs, then boots back into the previous image: a boot report `rolled_back` with the old version.
        case rollback
        /// Boots the new image and reboots again three times within seconds, then stays silent (a crash loop).
        case bootLoop = "boot_loop"
        /// Boots the new image, reports it, and never uploads again.
        case silentAfterInstall = "silent_after_install"
    }

    public var verificationFailure = 0.0
    public var rollback = 0.0
    public var bootLoop = 0.0
    public var silentAfterInstall = 0.0

    public init() {}

    public var total: Double { verificationFailure + rollback + bootLoop + silentAfterInstall }

    /// How the update of `deviceID` goes wrong, if it does.
    public func way(for deviceID: String) -> Way? {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a: stable across runs and platforms
        for byte in deviceID.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0100_0000_01B3 }
        // SplitMix64's finaliser: ids that differ only in their last digit land far apart.
        hash = (hash ^ (hash >> 30)) &* 0xBF58_476D_1CE4_E5B9
        hash = (hash ^ (hash >> 27)) &* 0x94D0_49BB_1331_11EB
        hash ^= hash >> 31
        let draw = Double(hash >> 11) / Double(UInt64(1) << 53)
        var upper = 0.0
        for (way, share) in [
            (Way.verificationFailure, verificationFailure), (.rollback, rollback), (.bootLoop, bootLoop), (.silentAfterInstall, silentAfterInstall),
        ] {
            upper += share
            if draw < upper { return way }
        }
        return nil
    }
}
