import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The standard Prometheus process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_start_time_seconds`) read from
/// `/proc/self` at each scrape. swift-prometheus has no process collector and the package list has no
/// swift-metrics-extras, so these few lines read the kernel's figures directly (Linux only; elsewhere they are left out).
enum ProcessMetrics {
    static func exposition() -> String {
        #if os(Linux)
        var lines: [String] = []
        func metric(_ name: String, _ type: String, _ help: String, _ value: Double?) {
            guard let value else { return }
            lines += ["# HELP \(name) \(help)", "# TYPE \(name) \(type)", "\(name) \(value)"]
        }
        let stat = (try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8)) ?? ""
        // Fields after the command name (which may contain spaces) start at the state, field 3.
        let fields = stat.split(separator: ")").last.map { $0.split(separator: " ").map(String.init) } ?? []
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        func field(_ number: Int) -> Double? { fields.count > number - 3 ? Double(fields[number - 3]) : nil }
        if let user = field(14), let system = field(15) {
            metric("process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds", (user + system) / ticks)
        }
        let statm = Self.statm()
        metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes", statm.resident.map(Double.init))
        metric("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes", statm.virtual.map(Double.init))
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.count
        metric("process_open_fds", "gauge", "Number of open file descriptors", descriptors.map(Double.init))
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            metric("process_max_fds", "gauge", "Maximum number of open file descriptors", Double(limit.rlim_cur))
        }
        let boot = ((try? String(contentsOfFile: "/proc/stat", encoding: .utf8)) ?? "").split(separator: "\n")
            .first { $0.hasPrefix("btime ") }.flatMap { Double($0.dropFirst(6)) }
        if let boot, let start = field(22) {
            metric(
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds",
                boot + start / ticks
            )
        }
        return lines.joined(separator: "\n") + "\n"
        #else
        return ""
        #endif
    }

    /// The process's virtual and resident sizes in bytes, from `/proc/self/statm` (`nil` off Linux or unreadable).
    static func statm() -> (virtual: Int?, resident: Int?) {
        #if os(Linux)
        let fields = ((try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "").split(separator: " ")
        let page = sysconf(Int32(_SC_PAGESIZE))
        func pages(_ index: Int) -> Int? { fields.count > index ? Int(fields[index]).map { $0 * page } : nil }
        return (pages(0), pages(1))
        #else
        return (nil, nil)
        #endif
    }

    /// The resident set in bytes (`nil` off Linux).
    static func residentBytes() -> Int? { statm().resident }
}
