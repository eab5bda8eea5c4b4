import Testing

@testable import JunctionTransport

@Suite("HTTP answers cut into JSON objects")
struct HTTPStreamTests {
    @Test("every split of a stream of JSON objects yields the same objects, with braces and escaped quotes inside strings")
    func splits() {
        let text = #"{"result":{"events":[{"kv":{"key":"a}{"}}]}}"# + "\n" + #"{"result":{"x":"quote \" and { brace"}}"# + #"{"e":{}}"#
        let bytes = Array(text.utf8)
        let expected = [#"{"result":{"events":[{"kv":{"key":"a}{"}}]}}"#, #"{"result":{"x":"quote \" and { brace"}}"#, #"{"e":{}}"#]
        for split in 0...bytes.count {
            var buffer: [UInt8] = []
            var objects: [String] = []
            for part in [bytes[..<split], bytes[split...]] {
                buffer += part
                objects += HTTPResponseReader.takeObjects(&buffer).map { String(decoding: $0, as: UTF8.self) }
            }
            #expect(objects == expected, "split at \(split)")
            #expect(buffer.allSatisfy { $0 == 10 }, "only the separator may remain: split at \(split)")
        }
    }
}
