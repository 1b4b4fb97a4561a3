import EcoWattStorage
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// Binds unsigned device requests to the device's authenticated network identity (issue 14): the client address of its
/// last HMAC-verified upload. Only uploads are signed, so this address is the one thing a stranger who knows a device
/// id does not have (short of sharing the device's network).
public final class DeviceBinding: Sendable {
    /// `address`: requests are judged by their client address; `off`: every request is honoured as before (devices
    /// behind changing addresses, at the risk that anyone who knows an id acts for the device).
    public enum Policy: String, Sendable, CaseIterable {
        case address
        case off
    }

    /// Where a request stands.
    public enum Standing: Sendable, Equatable {
        /// From the address of the device's verified uploads (or the policy is `off`).
        case bound
        /// The device has no verified upload within the binding window (a first boot, or a long silence).
        case unbound
        /// From another address than the device's verified uploads.
        case elsewhere
    }

    public let policy: Policy
    let windowMs: Int64
    private let bindings: Mutex<[String: DeviceBindingRecord]>
    /// Reads a device's binding from the store, when other server instances share it (issue 22): a request that is not
    /// from the cached binding asks the store before it is judged (another instance may have seen the upload).
    private let lookup: (@Sendable (_ deviceID: String) async -> DeviceBindingRecord?)?

    public init(
        policy: Policy,
        windowSeconds: Int,
        bindings: [String: DeviceBindingRecord],
        lookup: (@Sendable (_ deviceID: String) async -> DeviceBindingRecord?)? = nil
    ) {
        self.policy = policy
        self.windowMs = Int64(windowSeconds) * 1000
        self.bindings = Mutex(bindings)
        self.lookup = lookup
    }

    /// A verified upload of `deviceID` came from `address` (its commit is done); `true` when the binding moved.
    @discardableResult
    public func bind(_ deviceID: String, address: String, atMs: Int64) -> Bool {
        bindings.withLock { bindings in
            defer { bindings[deviceID] = DeviceBindingRecord(address: address, atMs: atMs) }
            return bindings[deviceID]?.address != address
        }
    }

    /// Replaces the cached binding with what another instance stored (`nil`: none).
    public func adopt(_ deviceID: String, _ record: DeviceBindingRecord?) {
        bindings.withLock { $0[deviceID] = record }
    }

    /// Where a request from `address` stands, asking the store first when it is not from the cached binding and other
    /// instances share the store.
    public func current(_ deviceID: String, address: String, nowMs: Int64) async -> Standing {
        let cached = standing(deviceID, address: address, nowMs: nowMs)
        guard cached != .bound, let lookup else { return cached }
        let stored = await lookup(deviceID)
        guard let stored, stored != bindings.withLock({ $0[deviceID] }) else { return cached }
        adopt(deviceID, stored)
        return standing(deviceID, address: address, nowMs: nowMs)
    }

    public func standing(_ deviceID: String, address: String, nowMs: Int64) -> Standing {
        guard policy == .address else { return .bound }
        guard let binding = bindings.withLock({ $0[deviceID] }), nowMs - binding.atMs <= windowMs else { return .unbound }
        return binding.address == address ? .bound : .elsewhere
    }

    public func forget(_ deviceIDs: [String]) {
        bindings.withLock { bindings in
            for deviceID in deviceIDs { bindings[deviceID] = nil }
        }
    }

    /// Devices bound now: a verified upload within the binding window (the `ecowatt_devices_bound` gauge).
    public func boundCount(nowMs: Int64) -> Int {
        bindings.withLock { $0.values.count { nowMs - $0.atMs <= windowMs } }
    }
}

/// Why a bound route refused a request (403 with the reason), counted by reason (`not_bound`, `address_mismatch`).
public enum BindingError: Error, Sendable, Equatable {
    case unbound(String)
    case elsewhere(String)

    public var code: String {
        switch self {
        case .unbound: "not_bound"
        case .elsewhere: "address_mismatch"
        }
    }

    public var reason: String {
        switch self {
        case .unbound(let id): "Device \(id) has no verified upload within the binding window: it must upload first"
        case .elsewhere(let id): "Requests for device \(id) are honoured only from the address of its verified uploads"
        }
    }
}

/// The client address of a request: the connection's peer, or behind a trusted reverse proxy the address that proxy
/// saw (the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy).
public struct ClientAddressResolver: Sendable {
    let trustedProxies: Set<String>
    let header: HTTPField.Name?

    public init(trustedProxies: [String], header: String = "X-Forwarded-For") {
        self.trustedProxies = Set(trustedProxies)
        self.header = HTTPField.Name(header)
    }

    public func address(_ request: Request, _ context: EcoWattRequestContext) -> String {
        let peer = context.remoteAddress?.ipAddress ?? "unknown"
        guard trustedProxies.contains(peer), let header else { return peer }
        // Every line of the header, in order (a proxy may append a line or extend the last one); the entries left of
        // the last untrusted one are whatever the client claimed.
        let hops = request.headers[values: header].joined(separator: ",").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard let client = hops.last(where: { !trustedProxies.contains($0) }) else { return peer }
        return client.count <= 64 ? client : peer
    }
}

/// What device routes ask before they act: the request's client address and where it stands for the device. Only a
/// request from where the device stands bound counts as the device being seen: a stranger polling a dead device's id
/// must not keep it `online`.
public struct DeviceAccess: Sendable {
    public let binding: DeviceBinding
    public let addresses: ClientAddressResolver
    let activity: DeviceActivity
    let clock: @Sendable () -> Int64

    public init(
        binding: DeviceBinding,
        addresses: ClientAddressResolver,
        activity: DeviceActivity,
        clock: @escaping @Sendable () -> Int64
    ) {
        self.binding = binding
        self.addresses = addresses
        self.activity = activity
        self.clock = clock
    }

    public func address(_ request: Request, _ context: EcoWattRequestContext) -> String {
        addresses.address(request, context)
    }

    /// Where the request stands; the device is seen when it is bound.
    @discardableResult
    public func standing(_ deviceID: String, _ request: Request, _ context: EcoWattRequestContext) async -> DeviceBinding.Standing {
        await standing(deviceID, address: address(request, context))
    }

    @discardableResult
    public func standing(_ deviceID: String, address: String) async -> DeviceBinding.Standing {
        let now = clock()
        let standing = await binding.current(deviceID, address: address, nowMs: now)
        activity.seen(deviceID, at: now, fromDevice: standing == .bound)
        return standing
    }

    /// A bound route: the client address, or the refusal (403) when it is not the device's bound address.
    @discardableResult
    public func requireBound(_ deviceID: String, _ request: Request, _ context: EcoWattRequestContext) async throws(BindingError) -> String {
        let address = address(request, context)
        switch await standing(deviceID, address: address) {
        case .bound: return address
        case .unbound: throw .unbound(deviceID)
        case .elsewhere: throw .elsewhere(deviceID)
        }
    }
}
