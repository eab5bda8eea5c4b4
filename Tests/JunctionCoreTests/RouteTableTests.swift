import Testing

@testable import JunctionCore

@Suite("Static route table")
struct RouteTableTests {
    func route(_ resolver: String) -> NetworkRoute { NetworkRoute(resolver: resolver) }

    @Test("patterns are searched unanchored; ^ and $ anchor")
    func unanchoredSearch() throws {
        let table = RouteTable()
        try table.addRoute(match: "gate", route: route("a"), weight: 0)
        try table.addRoute(match: "^b", route: route("b"), weight: 0)
        try table.addRoute(match: "@dc2$", route: route("c"), weight: 0)
        #expect(table.route(for: "my-gateway@host").map(\.match) == ["gate"])
        #expect(table.route(for: "bob@host").map(\.match) == ["^b"])
        #expect(table.route(for: "abob@host").isEmpty)
        #expect(table.route(for: "x@dc2").map(\.match) == ["@dc2$"])
        #expect(table.route(for: "x@dc2-b").isEmpty)
    }

    @Test("every match comes back by descending weight, equal weights in insertion order")
    func ordering() throws {
        let table = RouteTable()
        try table.addRoute(match: "a", route: route("low"), weight: 1)
        try table.addRoute(match: "b", route: route("first-ten"), weight: 10)
        try table.addRoute(match: "@", route: route("second-ten"), weight: 10)
        try table.addRoute(match: "z", route: route("other"), weight: 100)
        try table.addRoute(match: "ab", route: route("high"), weight: 50)
        #expect(table.route(for: "ab@h").map(\.route.resolver) == ["high", "first-ten", "second-ten", "low"])
    }

    @Test("adding the same match twice is an error naming it; the first route stays")
    func duplicate() throws {
        let table = RouteTable()
        try table.addRoute(match: "^b", route: route("one"), weight: 1)
        let error = try #require(throws: RouteTableError.self) { try table.addRoute(match: "^b", route: route("two"), weight: 5) }
        #expect(error.kind == .duplicateMatch && error.description.contains("'^b' already exists"))
        #expect(table.route(for: "bob@h").map(\.route.resolver) == ["one"])
    }

    @Test("removing drops the route (and the cached lookups); an unknown match is an error")
    func remove() throws {
        let table = RouteTable()
        try table.addRoute(match: "^b", route: route("one"), weight: 1)
        #expect(table.route(for: "bob@h").count == 1)
        try table.removeRoute(match: "^b")
        #expect(table.route(for: "bob@h").isEmpty)
        let error = try #require(throws: RouteTableError.self) { try table.removeRoute(match: "^b") }
        #expect(error.kind == .unknownMatch)
        // Adding again after removal works, and lookups see it despite the cache.
        try table.addRoute(match: "^b", route: route("two"), weight: 1)
        #expect(table.route(for: "bob@h").map(\.route.resolver) == ["two"])
    }

    @Test("an invalid pattern is a clear error at add time", arguments: ["(unclosed", "[a-", "*x"])
    func invalidPattern(pattern: String) throws {
        let table = RouteTable()
        let error = try #require(throws: RouteTableError.self) { try table.addRoute(match: pattern, route: route("x"), weight: 0) }
        #expect(error.description.hasPrefix("'\(pattern)' is not a valid regular expression"))
        #expect(table.routes.isEmpty)
    }

    @Test("a resolved route takes every field the static route sets explicitly")
    func merge() {
        let resolved = ResolvedRoute(stack: "native", host: "h", port: 1, tls: false, handshakeVersion: 1, protocolVersion: 1)
        let merged = resolved.merged(with: ExplicitRoute(port: 9, tls: true))
        #expect(merged == ResolvedRoute(stack: "native", host: "h", port: 9, tls: true, handshakeVersion: 1, protocolVersion: 1))
        #expect(resolved.merged(with: nil) == resolved)
    }

    @Test("node names are checked")
    func nodeNames() throws {
        let local = "a@localhost"
        let address = "a@127.0.0.1"
        #expect(try NodeName(local).alive == "a")
        #expect(try NodeName(address).host == "127.0.0.1")
        for bad in ["nohost", "@host", "a@", "a b@host", "a@b@c"] {
            let error = try #require(throws: NodeName.Invalid.self) { try NodeName(bad) }
            #expect(error.description.contains("name@host"))
        }
    }
}
