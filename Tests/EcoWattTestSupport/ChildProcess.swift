import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A child process started with `posix_spawn`, for tests (servers, brokers, proxies, the CLI, compilers).
///
/// Not `Foundation.Process`: on Linux its `run()` copies each `/proc/self/fd` entry's whole 256-byte `d_name`, reading
/// past glibc's buffer, and crashes the test process now and then (swiftlang/swift-corelibs-foundation#5472; here once
/// in about ten full runs of this suite, which starts ~80 children). The child gets standard input from /dev/null,
/// standard output and error appended to `outputPath` (or /dev/null), no other inherited descriptor, and the default
/// signal dispositions (so SIGTERM stops it).
public final class ChildProcess: Sendable {
    public let processIdentifier: pid_t
    private let exit = Mutex<Int32?>(nil)

    public enum Failure: Error, CustomStringConvertible {
        case spawn(String, Int32)
        public var description: String {
            switch self {
            case .spawn(let path, let code): "posix_spawn \(path): \(String(cString: strerror(code)))"
            }
        }
    }

    /// Starts `executable` (an absolute path, or a name looked up in `PATH`).
    /// - Parameter environment: the whole environment of the child; `nil` inherits this process's.
    public init(
        executable: String,
        arguments: [String],
        environment: [String: String]? = nil,
        outputPath: String? = nil,
        errorPath: String? = nil,
        inputPath: String? = nil
    ) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, inputPath ?? "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, errorPath ?? outputPath ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o600)
        // glibc ≥ 2.34 has addclosefrom_np, but Swift's Glibc module does not export it (it is a GNU extension).
        if let closeFrom = Self.addCloseFrom { _ = closeFrom(&actions, 3) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let variables = environment ?? ProcessInfo.processInfo.environment
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in envp { free(pointer) } }
        var pid: pid_t = 0
        let code =
            executable.hasPrefix("/")
            ? posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
            : posix_spawnp(&pid, executable, &actions, &attributes, argv, envp)
        guard code == 0 else { throw Failure.spawn(executable, code) }
        processIdentifier = pid
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()

    /// Runs `executable` to completion and returns its status with what it wrote to standard output and error. Blocks:
    /// call it from a Dispatch thread (or use ``run(_:_:environment:timeout:)``).
    public static func runBlocking(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        timeout: Duration? = nil,
        input: String? = nil
    ) throws -> (status: Int32, output: String, error: String) {
        let directory = FileManager.default.temporaryDirectory
        let out = directory.appendingPathComponent("child-\(UUID().uuidString).out").path
        let err = directory.appendingPathComponent("child-\(UUID().uuidString).err").path
        let inputPath = input.map { _ in directory.appendingPathComponent("child-\(UUID().uuidString).in").path }
        if let input, let inputPath { try Data(input.utf8).write(to: URL(fileURLWithPath: inputPath)) }
        defer {
            unlink(out)
            unlink(err)
            if let inputPath { unlink(inputPath) }
        }
        let child = try ChildProcess(
            executable: executable,
            arguments: arguments,
            environment: environment,
            outputPath: out,
            errorPath: err,
            inputPath: inputPath
        )
        if let timeout {
            let deadline = ContinuousClock.now + timeout
            while child.isRunning, ContinuousClock.now < deadline { usleep(20_000) }
            if child.isRunning { child.signal(SIGKILL) }
        }
        child.waitUntilExit()
        let output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        let error = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
        return (child.terminationStatus, output, error)
    }

    /// ``runBlocking(_:_:environment:timeout:)`` on a thread of its own (``blockingCall(_:)``): a CLI run against a
    /// server in the test process must not take the threads that server's database queues need.
    public static func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        timeout: Duration? = nil,
        input: String? = nil
    ) async throws -> (status: Int32, output: String, error: String) {
        try await blockingCall { try runBlocking(executable, arguments, environment: environment, timeout: timeout, input: input) }
    }

    /// True until the child exited (and was reaped).
    public var isRunning: Bool {
        exit.withLock { status in
            guard status == nil else { return false }
            var raw: Int32 = 0
            let reaped = waitpid(processIdentifier, &raw, WNOHANG)
            if reaped == processIdentifier { status = Self.decode(raw) }
            return reaped == 0
        }
    }

    /// Waits for the child to exit.
    public func waitUntilExit() {
        guard exit.withLock({ $0 }) == nil else { return }
        var raw: Int32 = 0
        while waitpid(processIdentifier, &raw, 0) < 0, errno == EINTR {}
        exit.withLock { if $0 == nil { $0 = Self.decode(raw) } }
    }

    /// The exit status, or 128 + the signal that ended it; -1 while it runs.
    public var terminationStatus: Int32 { exit.withLock { $0 } ?? -1 }

    public func signal(_ signal: Int32) {
        guard exit.withLock({ $0 }) == nil else { return }
        kill(processIdentifier, signal)
    }

    public func terminate() { signal(SIGTERM) }

    private static func decode(_ raw: Int32) -> Int32 {
        let signal = raw & 0x7f
        return signal == 0 ? (raw >> 8) & 0xff : 128 + signal
    }
}
