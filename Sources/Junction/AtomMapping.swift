import JunctionCore
import JunctionTerm
import Synchronization

/// A route's atom mapping for one peer: atoms renamed on the wire in both directions, so
/// a local `svc` is `svc_v2` for that peer (registered names in sends, and atoms inside
/// messages; node names inside pids and references are left alone).
struct AtomMapping: Sendable {
    let outgoing: [String: String]
    let incoming: [String: String]

    init?(_ mapping: [String: String]) {
        guard !mapping.isEmpty else { return nil }
        outgoing = mapping
        incoming = Dictionary(mapping.map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// What goes to the peer: the destination's name and the payload's atoms renamed.
    func toPeer(_ payload: Payload, _ destination: Destination) throws -> (Payload, Destination) {
        var destination = destination
        if case .name(let process, let node) = destination { destination = .name(outgoing[process] ?? process, on: node) }
        return (.term(Self.rename(try payload.term(), outgoing)), destination)
    }

    /// What came from the peer, with the local names back.
    func fromPeer(_ payload: Payload) throws -> Payload { .term(Self.rename(try payload.term(), incoming)) }

    func localName(_ name: String) -> String { incoming[name] ?? name }

    static func rename(_ term: Term, _ table: [String: String]) -> Term {
        switch term {
        case .atom(let atom): return table[atom.name].map { .atom(Atom($0)) } ?? term
        case .tuple(let elements): return .tuple(elements.map { rename($0, table) })
        case .list(let elements): return .list(elements.map { rename($0, table) })
        case .improperList(let elements, let tail): return .improperList(elements.map { rename($0, table) }, tail: rename(tail, table))
        case .map(let entries): return .map(entries.map { MapEntry(rename($0.key, table), rename($0.value, table)) })
        default: return term
        }
    }
}

/// The atom mappings of a node's routes, per peer: the first matching route that has one
/// decides. Exists only when some configured route maps atoms, so other nodes pay nothing.
final class AtomMappings: Sendable {
    let routes: RouteTable
    let byPeer = Mutex<[Atom: AtomMapping?]>([:])

    init?(config: JunctionConfig, routes: RouteTable) {
        guard config.routes.contains(where: { !$0.atomMapping.isEmpty }) else { return nil }
        self.routes = routes
    }

    func mapping(for peer: Atom) -> AtomMapping? {
        if let known = byPeer.withLock({ $0[peer] }) { return known }
        let mapping = AtomMapping(routes.route(for: peer.name).first { !$0.route.atomMapping.isEmpty }?.route.atomMapping ?? [:])
        byPeer.withLock { $0[peer] = .some(mapping) }
        return mapping
    }
}
