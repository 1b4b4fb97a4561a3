import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import ServiceLifecycle

/// The server's HTTP listeners (issue 16): the device port (plain HTTP, as the firmware requires) and, with
/// `operator_port`, a separate operator listener for the operator API, optionally over TLS. Without `operator_port` one
/// listener serves both, over TLS when certificate files are given.
struct Listeners: Sendable {
    let configuration: ServerConfiguration
    let logger: Logger
    /// The certificate and key of the TLS listener, reloaded on SIGHUP.
    let tls: TLSCertificates?
    var separateOperator: Bool { configuration.http.operatorPort != nil }

    init(configuration: ServerConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        switch (configuration.http.tlsCertFile, configuration.http.tlsKeyFile) {
        case (let cert?, let key?):
            do {
                tls = try TLSCertificates(certificatePath: cert, keyPath: key)
            } catch {
                throw ConfigurationError.invalid("TLS certificate or key unusable (\(cert), \(key)): \(error)")
            }
        case (nil, nil): tls = nil
        default: throw ConfigurationError.invalid("tls_cert_file and tls_key_file go together")
        }
        let operatorHost = separateOperator ? configuration.http.operatorHost : configuration.http.host
        if tls == nil, !Self.isLoopback(operatorHost) {
            logger.warning(
                "operator routes are served over plain HTTP on a non-loopback address: the operator token crosses the network in clear",
                metadata: [
                    "address": "\(operatorHost):\(configuration.http.operatorPort ?? configuration.http.port)",
                    "advice": "set operator_port with operator_host 127.0.0.1 (reach it over SSH or a TLS proxy), or tls_cert_file and tls_key_file",
                ]
            )
        }
        if tls != nil, !separateOperator {
            logger.warning(
                "the only listener speaks TLS: firmware 1.3.4 speaks plain HTTP, so devices must reach this server through a TLS-terminating proxy; set operator_port to keep a plain device port"
            )
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// A router with the request log, JSON errors, HSTS when `tls` applies to its listener, and the health routes.
    func makeRouter(
        metrics: ServerMetrics,
        clientErrors: RateLimitedLog,
        serverErrors: RateLimitedLog,
        health: HealthRoutes,
        tls listenerTLS: Bool
    ) -> Router<EcoWattRequestContext> {
        let router = Router(context: EcoWattRequestContext.self)
        router.add(middleware: RequestLogMiddleware(metrics: metrics, clientErrors: clientErrors, serverErrors: serverErrors))
        router.add(middleware: JSONErrorMiddleware(serverErrors: serverErrors))
        if listenerTLS, tls != nil { router.add(middleware: StrictTransportSecurityMiddleware()) }
        health.register(on: router)
        return router
    }

    /// The device listener (the only one without `operator_port`), with the connection guard.
    func deviceApplication(
        router: Router<EcoWattRequestContext>,
        metrics: ServerMetrics,
        onListening: @escaping @Sendable () -> Void
    ) throws -> Application<RouterResponder<EcoWattRequestContext>> {
        let address = "\(configuration.http.host):\(configuration.http.port)"
        let logger = logger
        return Application(
            router: router,
            server: try server(metrics: metrics, tls: separateOperator ? nil : tls, name: "device"),
            configuration: .init(
                address: .hostname(configuration.http.host, port: configuration.http.port),
                serverName: "EcoWattCloud",
                backlog: 1024
            ),
            onServerRunning: { _ in
                logger.notice("listening", metadata: ["listener": "devices", "address": "\(address)"])
                onListening()
            },
            logger: logger
        )
    }

    /// The operator listener (`operator_host`:`operator_port`), a service of the device application. A bind failure
    /// names its address.
    func operatorApplication(router: Router<EcoWattRequestContext>, metrics: ServerMetrics) throws -> some Service {
        let port = configuration.http.operatorPort ?? 0
        let address = "\(configuration.http.operatorHost):\(port)"
        let logger = logger
        let application = Application(
            router: router,
            server: try server(metrics: metrics, tls: tls, name: "operator"),
            configuration: .init(address: .hostname(configuration.http.operatorHost, port: port), serverName: "EcoWattCloud"),
            onServerRunning: { _ in
                logger.notice(
                    "listening",
                    metadata: ["listener": "operators", "address": "\(address)", "tls": "\(tls != nil)"]
                )
            },
            logger: logger
        )
        return NamedListener(address: address, application: application)
    }

    /// Every connection counted against a total and a per-address cap, with header, body and idle timeouts.
    private func server(metrics: ServerMetrics, tls: TLSCertificates?, name: String) throws -> HTTPServerBuilder {
        let limits = configuration.limits
        let descriptors = FileDescriptorLimit.current
        let maxConnections = min(limits.maxConnections, max(16, descriptors - FileDescriptorLimit.reserved))
        if maxConnections < limits.maxConnections {
            logger.warning(
                "max_connections lowered to fit the descriptor limit",
                metadata: [
                    "listener": "\(name)", "configured": "\(limits.maxConnections)", "effective": "\(maxConnections)",
                    "descriptors": "\(descriptors)",
                ]
            )
        }
        let limiter = ConnectionLimiter(maxTotal: maxConnections, maxPerAddress: limits.maxConnectionsPerAddress)
        let metric = name == "device" ? "ecowatt_connections_open" : "ecowatt_\(name)_connections_open"
        metrics.sample(metric) { Double(limiter.openConnections) }
        let guarded = GuardedHTTP1Channel.server(limits: limits, limiter: limiter, metrics: metrics)
        guard let tls else { return guarded }
        return try .tls(guarded, tlsConfiguration: tls.serverConfiguration())
    }
}

/// A listener whose failure to start names its address ("cannot listen on 127.0.0.1:5002: Address already in use").
struct NamedListener<Wrapped: Service>: Service {
    let address: String
    let application: Wrapped

    func run() async throws {
        do {
            try await application.run()
        } catch {
            throw ListenerError(address: address, underlying: "\(error)")
        }
    }
}

/// A listener that could not start.
public struct ListenerError: Error, CustomStringConvertible {
    public let address: String
    public let underlying: String
    public var description: String { "cannot listen on \(address): \(underlying)" }

    public init(address: String, underlying: String) {
        self.address = address
        self.underlying = underlying
    }
}

/// `Strict-Transport-Security` on every response of a TLS listener: browsers then never fall back to plain HTTP for
/// this host (and so never send the operator's token or cookie in clear).
struct StrictTransportSecurityMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.strictTransportSecurity] = "max-age=31536000"
        return response
    }
}
