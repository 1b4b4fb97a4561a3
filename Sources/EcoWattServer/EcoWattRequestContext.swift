import Hummingbird

/// The request context of every route.
public struct EcoWattRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage

    public init(source: Source) {
        coreContext = .init(source: source)
    }

    /// Bodies decoded with `request.decode` are limited like uploads (spec: 64 KiB).
    public var maxUploadSize: Int { 64 * 1024 }
}
