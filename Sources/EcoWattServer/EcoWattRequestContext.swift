import Hummingbird
import NIOCore

/// The request context of every route.
public struct EcoWattRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The peer of the connection (a device, or a trusted proxy in front of the devices).
    public let remoteAddress: SocketAddress?

    public init(source: Source) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// Bodies decoded with `request.decode` are limited like uploads (spec: 64 KiB).
    public var maxUploadSize: Int { 64 * 1024 }
}
