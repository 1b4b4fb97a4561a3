import Foundation

/// `ecowatt --version` and the dashboard's System page: the release and the git commit it was built from.
///
/// The commit is not compiled in: a flag or generated source that changes with every commit would rebuild the whole
/// package each time. The scripts that build (`scripts/serve.sh`, `scripts/install.sh`) write it into a file beside
/// the binary (`ecowatt.commit`) or, once installed, into `../share/ecowatt/commit`.
public enum BuildInfo {
    public static let version = "0.16.0"

    public static var commit: String? {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let directory = executable.deletingLastPathComponent()
        let candidates = [
            directory.appendingPathComponent("ecowatt.commit"),
            directory.deletingLastPathComponent().appendingPathComponent("share/ecowatt/commit"),
        ]
        for file in candidates {
            if let text = try? String(contentsOf: file, encoding: .utf8) {
                let commit = text.trimmingCharacters(in: .whitespacesAndNewlines)
                if !commit.isEmpty, commit.count <= 64 { return commit }
            }
        }
        return nil
    }

    public static var description: String { "\(version) (commit \(commit ?? "unknown"))" }
}
