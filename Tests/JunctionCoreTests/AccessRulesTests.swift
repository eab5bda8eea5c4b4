import Testing

@testable import JunctionCore

@Suite("Access rules")
struct AccessRulesTests {
    func ip(_ text: String) -> IPAddress { IPAddress(text)! }
    func net(_ text: String) -> IPNetwork { IPNetwork(text)! }

    @Test("addresses and networks parse in IPv4 and IPv6, print canonically, and refuse junk")
    func parsing() {
        #expect(ip("10.0.0.1").bytes == [10, 0, 0, 1])
        #expect(ip("::1").description == "::1")
        #expect(ip("fe80:0:0:0:0:0:0:1").description == "fe80::1")
        #expect(ip("::ffff:10.0.0.1").unmapped == ip("10.0.0.1"))
        #expect(net("10.0.0.7/24").description == "10.0.0.0/24")
        #expect(net("fd00::/8").contains(ip("fd12::5")) && !net("fd00::/8").contains(ip("fe00::1")))
        #expect(net("10.0.0.0/24").contains(ip("::ffff:10.0.0.9")))
        for junk in ["10.0.0", "10.0.0.256", "1::2::3", "10.0.0.1/33", "abc", "::1/129", ""] {
            #expect(IPNetwork(junk) == nil, "\(junk)")
        }
        // Random text from the characters addresses use: parsed or refused, never a trap.
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789abcdef:./f")
        var parsed = 0
        for _ in 0..<20_000 {
            let text = String((0..<Int.random(in: 0...24, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! })
            if let network = IPNetwork(text) {
                parsed += 1
                #expect(IPNetwork(network.description) == network, "\(text) -> \(network)")
            }
        }
        #expect(parsed > 0)
    }

    @Test("the spec's order examples: allow 10.0.0.1 then block 10.0.0.0/24 blocks it; the reverse allows it")
    func order() {
        var first = AccessRules()
        first.apply(.allow(net("10.0.0.1")))
        first.apply(.block(net("10.0.0.0/24")))
        #expect(first.decision(for: ip("10.0.0.1")) == .blocked("block net 10.0.0.0/24"))
        var second = AccessRules()
        second.apply(.block(net("10.0.0.0/24")))
        second.apply(.allow(net("10.0.0.1")))
        #expect(second.decision(for: ip("10.0.0.1")) == .allowed)
        #expect(second.decision(for: ip("10.0.0.2")) == .blocked("block net 10.0.0.0/24"))
        #expect(second.decision(for: ip("10.0.1.2")) == .allowed)
    }

    @Test("an allowed system beats a later net block; blockSystem undoes the allow")
    func systems() {
        var rules = AccessRules()
        rules.allowSystem("a@host")
        rules.apply(.block(net("10.0.0.0/24")))
        #expect(rules.decision(system: "a@host", address: ip("10.0.0.1")) == .allowed)
        #expect(rules.decision(system: "b@host", address: ip("10.0.0.1")) == .blocked("block net 10.0.0.0/24"))
        rules.blockSystem("a@host")
        #expect(rules.decision(system: "a@host", address: ip("192.168.0.1")) == .blocked("block system a@host"))
        rules.allowSystem("a@host")
        #expect(rules.decision(system: "a@host", address: ip("10.0.0.1")) == .allowed)
    }
}
