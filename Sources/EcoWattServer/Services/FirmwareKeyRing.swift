import FirmwareImage
import Foundation
import Logging
import Synchronization

/// The FOTA keys the server signs and encrypts with, reloaded from the keys directory on SIGHUP (issue 16).
///
/// Devices in the field trust the public key and AES key they were built with, so keys are never replaced casually
/// (`ecowatt keys generate --force` refuses while images or devices exist, unless told `--rotate`); when they are, the
/// running server picks them up on SIGHUP instead of signing with the old ones until a restart.
public final class FirmwareKeyRing: Sendable {
    public let directory: String
    private let state: Mutex<(keys: FirmwareKeys?, error: String?, fingerprint: String?)>
    private let observers = Mutex<[@Sendable () -> Void]>([])

    /// Loads the keys, generating development keys when none exist (never over existing ones). Unusable keys are
    /// logged and leave firmware preparation disabled; the rest of the server runs.
    public init(directory: String, logger: Logger) {
        self.directory = directory
        state = Mutex((nil, nil, nil))
        do {
            if !FirmwareKeys.anyExist(in: directory) {
                let keys = try FirmwareKeys.generate()
                try keys.write(to: directory)
                logger.notice(
                    "generated development FOTA keys: field devices only accept firmware signed with the keys built into them",
                    metadata: ["keys_dir": "\(directory)"]
                )
                state.withLock { $0 = (keys, nil, keys.fingerprint) }
                return
            }
        } catch {
            logger.error("FOTA keys not generated", metadata: ["keys_dir": "\(directory)", "error": "\(error.logDescription)"])
            state.withLock { $0 = (nil, "\(error)", nil) }
            return
        }
        reload(logger: logger)
    }

    public var keys: FirmwareKeys? { state.withLock { $0.keys } }
    public var error: String? { state.withLock { $0.error } }
    /// A short fingerprint of the public key, to tell key sets apart in logs and errors.
    public var fingerprint: String? { state.withLock { $0.fingerprint } }

    /// Called after every reload that changed the keys.
    public func onChange(_ observer: @escaping @Sendable () -> Void) {
        observers.withLock { $0.append(observer) }
    }

    /// Reads the keys directory again. Unreadable keys leave the previous ones in use (and say so).
    public func reload(logger: Logger) {
        do {
            let keys = try FirmwareKeys(directory: directory)
            let previous = state.withLock { state in
                defer { state = (keys, nil, keys.fingerprint) }
                return state.fingerprint
            }
            if previous == nil {
                logger.info("FOTA keys loaded", metadata: ["keys_dir": "\(directory)", "public_key": "\(keys.fingerprint)"])
            } else if previous != keys.fingerprint {
                logger.warning(
                    "FOTA keys changed: devices built with the previous public key reject images prepared from now on",
                    metadata: ["keys_dir": "\(directory)", "previous": "\(previous ?? "")", "public_key": "\(keys.fingerprint)"]
                )
            }
            if previous != keys.fingerprint { for observer in observers.withLock({ $0 }) { observer() } }
        } catch {
            let kept = state.withLock { state in
                if state.keys == nil { state.error = "\(error)" }
                return state.keys != nil
            }
            logger.error(
                kept
                    ? "FOTA keys not reloaded; the previous keys stay in use"
                    : "FOTA keys not loaded: firmware upload is disabled until they are fixed",
                metadata: ["keys_dir": "\(directory)", "error": "\(error.logDescription)"]
            )
        }
    }
}
