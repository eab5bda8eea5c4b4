import Synchronization

/// One entry of the static routing table.
public struct StaticRoute: Sendable, Hashable {
    /// Regular expression searched in the node name (unanchored; write `^...$` to anchor).
    public var match: String
    public var route: NetworkRoute
    public var weight: Int

    public init(match: String, route: NetworkRoute, weight: Int) {
        self.match = match
        self.route = route
        self.weight = weight
    }
}

/// Why a route table change was refused.
public struct RouteTableError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        case duplicateMatch
        case unknownMatch
        case invalidPattern(String)
    }

    public let kind: Kind
    public let match: String

    public var description: String {
        switch kind {
        case .duplicateMatch:
            return "a static route for '\(match)' already exists; remove it first to replace it"
        case .unknownMatch:
            return "there is no static route for '\(match)'; `junction routes NODE` lists the routes"
        case .invalidPattern(let reason):
            return "'\(match)' is not a valid regular expression: \(reason)"
        }
    }
}

/// The static routing table of `spec/static-routes.txt`: patterns searched in node names,
/// every match returned by descending weight (equal weights in insertion order). Lookups
/// are cached per name and the cache is dropped on every change.
public final class RouteTable: Sendable {
    struct Entry {
        var route: StaticRoute
        var regex: Regex<AnyRegexOutput>
        var sequence: Int
    }

    struct State {
        var entries: [Entry] = []
        var nextSequence = 0
        var cache: [String: [StaticRoute]] = [:]
    }

    /// Regexes are not `Sendable`; they are created and used only inside this lock.
    let state = Mutex(State())
    static let cacheLimit = 4096

    public init() {}

    public init(routes: [StaticRoute]) throws(RouteTableError) {
        for route in routes { try add(route) }
    }

    /// Checks that `match` compiles as a regular expression.
    public static func validate(pattern match: String) throws(RouteTableError) {
        _ = try compile(match)
    }

    static func compile(_ match: String) throws(RouteTableError) -> Regex<AnyRegexOutput> {
        do {
            return try Regex(match)
        } catch {
            throw RouteTableError(kind: .invalidPattern("\(error)"), match: match)
        }
    }

    public func addRoute(match: String, route: NetworkRoute, weight: Int) throws(RouteTableError) {
        try add(StaticRoute(match: match, route: route, weight: weight))
    }

    func add(_ route: StaticRoute) throws(RouteTableError) {
        try state.withLock { (state) throws(RouteTableError) in try Self.insert(route, into: &state) }
    }

    static func insert(_ route: StaticRoute, into state: inout State) throws(RouteTableError) {
        guard !state.entries.contains(where: { $0.route.match == route.match }) else {
            throw RouteTableError(kind: .duplicateMatch, match: route.match)
        }
        let regex = try compile(route.match)
        state.entries.append(Entry(route: route, regex: regex, sequence: state.nextSequence))
        state.nextSequence += 1
        state.entries.sort { $0.route.weight != $1.route.weight ? $0.route.weight > $1.route.weight : $0.sequence < $1.sequence }
        state.cache.removeAll()
    }

    public func removeRoute(match: String) throws(RouteTableError) {
        let removed = state.withLock { state -> Bool in
            guard let index = state.entries.firstIndex(where: { $0.route.match == match }) else { return false }
            state.entries.remove(at: index)
            state.cache.removeAll()
            return true
        }
        guard removed else { throw RouteTableError(kind: .unknownMatch, match: match) }
    }

    /// Replaces every route at once (a config reload): lookups see the old table or the
    /// new one, never a mix. Nothing changes when a pattern does not compile or repeats.
    public func replaceRoutes(with routes: [StaticRoute]) throws(RouteTableError) {
        try state.withLock { (state) throws(RouteTableError) in
            var fresh = State()
            for route in routes { try Self.insert(route, into: &fresh) }
            state = fresh
        }
    }

    /// Every route whose pattern matches `name`, highest weight first.
    public func route(for name: String) -> [StaticRoute] {
        state.withLock { state in
            if let cached = state.cache[name] { return cached }
            let matches = state.entries.filter { name.contains($0.regex) }.map(\.route)
            if state.cache.count >= Self.cacheLimit { state.cache.removeAll() }
            state.cache[name] = matches
            return matches
        }
    }

    /// Every route, in lookup order.
    public var routes: [StaticRoute] { state.withLock { $0.entries.map(\.route) } }
}
