import EcoWattStorage
import Synchronization

/// Who is making an operator request.
public struct Principal: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// `keys/operator_token`: an admin until an admin revokes it.
        case bootstrap
        /// A browser session (cookie); state-changing requests must echo its CSRF token.
        case session(idHash: String, csrfToken: String)
        /// An API token.
        case token(id: Int64, name: String)
    }

    public var kind: Kind
    public var user: UserRecord?
    /// The role that applies: the user's, or the lower of the token's and its user's.
    public var role: Role

    /// How the audit trail names the principal.
    public var actor: String {
        switch kind {
        case .bootstrap: "bootstrap"
        case .session: "user:\(user?.name ?? "?")"
        case .token(let id, let name): "token:\(id):\(user?.name ?? "?")/\(name)"
        }
    }
}

/// What the access middleware knows about the request in flight, for the handlers of the generated API (which see no
/// request context): the principal, the client address, the request id, and what a handler adds for the audit trail.
public final class RequestIdentity: Sendable {
    @TaskLocal public static var current: RequestIdentity?

    public let principal: Principal?
    public let clientAddress: String
    public let requestID: String
    /// A login names its actor itself (the claimed user), a handler may name its target and set the session cookie
    /// (the generated code would percent-encode a `Set-Cookie` header, so the middleware writes it).
    private let notes = Mutex((actor: String?.none, target: String?.none, cookie: String?.none))

    init(principal: Principal?, clientAddress: String, requestID: String) {
        self.principal = principal
        self.clientAddress = clientAddress
        self.requestID = requestID
    }

    public func note(actor: String? = nil, target: String? = nil, cookie: String? = nil) {
        notes.withLock { notes in
            if let actor { notes.actor = actor }
            if let target { notes.target = target }
            if let cookie { notes.cookie = cookie }
        }
    }

    var notedActor: String? { notes.withLock { $0.actor } }
    var notedTarget: String? { notes.withLock { $0.target } }
    var notedCookie: String? { notes.withLock { $0.cookie } }
}
