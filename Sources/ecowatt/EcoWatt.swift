import ArgumentParser
import EcoWattServer

/// `ecowatt`: the EcoWatt Cloud server and operator tools.
@main
struct EcoWatt: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ecowatt",
        abstract: "EcoWatt Cloud: the server for EcoWatt ESP32 energy monitors, and its operator tools.",
        version: BuildInfo.description,
        subcommands: [
            ServeCommand.self, KeysCommand.self, FirmwareCommand.self, DecodeCommand.self, DeviceCommand.self,
            CommandCommand.self, ConfigCommand.self, DeploymentCommand.self, RolloutCommand.self, StatsCommand.self, SimulateCommand.self,
            BenchCommand.self, DatabaseCommand.self, UserCommand.self, TokenCommand.self, AuditCommand.self, DiagnosticsCommand.self,
        ]
    )
}
