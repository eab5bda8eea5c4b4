/// A coding key for any string, used to list every key a YAML mapping holds.
package struct AnyCodingKey: CodingKey {
    package var stringValue: String
    package var intValue: Int?
    package init(stringValue: String) { self.stringValue = stringValue }
    package init?(intValue: Int) {
        self.stringValue = String(intValue)
        self.intValue = intValue
    }
}

extension Decoder {
    /// A keyed container that refuses keys it does not know, naming the key and the
    /// keys that are allowed there.
    package func strictContainer<Key: CodingKey & CaseIterable>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        let all = try container(keyedBy: AnyCodingKey.self)
        let known = Key.allCases.map(\.stringValue)
        for key in all.allKeys where !known.contains(key.stringValue) {
            throw DecodingError.dataCorrupted(
                .init(codingPath: codingPath + [key], debugDescription: "unknown key; allowed here: \(known.joined(separator: ", "))"))
        }
        return try container(keyedBy: type)
    }
}

extension KeyedDecodingContainer {
    /// The value at `key`, or `fallback` when the key is absent.
    package func value<T: Decodable>(_ key: Key, default fallback: @autoclosure () -> T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? fallback()
    }
}

/// A config value that failed a check after decoding.
package func invalid(_ path: [CodingKey], _ message: String) -> DecodingError {
    DecodingError.dataCorrupted(.init(codingPath: path, debugDescription: message))
}
