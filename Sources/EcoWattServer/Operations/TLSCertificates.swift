import Foundation
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// The TLS certificate chain and key of a listener, read from PEM files and reloaded on SIGHUP (issue 16).
///
/// NIOSSL fixes a context's certificate when it is created; the context's `sslContextCallback` runs at every TLS hello
/// and hands the handshake the chain and key loaded last, so a renewed certificate (e.g. by certbot) is served from the
/// next connection on, without a restart and without dropping open ones.
public final class TLSCertificates: Sendable {
    public let certificatePath: String
    public let keyPath: String
    private let current: Mutex<(chain: [NIOSSLCertificate], key: NIOSSLPrivateKey)>

    public init(certificatePath: String, keyPath: String) throws {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        current = Mutex(try Self.load(certificatePath: certificatePath, keyPath: keyPath))
    }

    static func load(certificatePath: String, keyPath: String) throws -> (chain: [NIOSSLCertificate], key: NIOSSLPrivateKey) {
        let chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
        guard !chain.isEmpty else { throw TLSFileError(path: certificatePath, reason: "no certificate in the file") }
        return (chain, try NIOSSLPrivateKey(file: keyPath, format: .pem))
    }

    /// Reads the files again; on failure the previous chain and key stay in use.
    public func reload(logger: Logger) {
        do {
            let loaded = try Self.load(certificatePath: certificatePath, keyPath: keyPath)
            current.withLock { $0 = loaded }
            logger.notice("TLS certificate reloaded", metadata: ["cert": "\(certificatePath)"])
        } catch {
            logger.error(
                "TLS certificate not reloaded; the previous one stays in use",
                metadata: ["cert": "\(certificatePath)", "error": "\(error.logDescription)"]
            )
        }
    }

    /// A server configuration (TLS 1.2+) that serves the chain and key loaded last.
    public func serverConfiguration() -> TLSConfiguration {
        let (chain, key) = current.withLock { $0 }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv12
        configuration.sslContextCallback = { [self] _, promise in
            let (chain, key) = current.withLock { $0 }
            var override = NIOSSLContextConfigurationOverride()
            override.certificateChain = chain.map { .certificate($0) }
            override.privateKey = .privateKey(key)
            promise.succeed(override)
        }
        return configuration
    }
}

struct TLSFileError: Error, CustomStringConvertible {
    let path: String
    let reason: String
    var description: String { "\(path): \(reason)" }
}
