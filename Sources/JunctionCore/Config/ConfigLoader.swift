import Foundation
import Yams

/// A configuration that cannot be used, with the key path and what was expected.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    /// Dotted key path, e.g. `stacks[0].acceptors[1].port`; empty for the whole file.
    public let keyPath: String
    public let message: String
    /// The file, when the configuration came from one.
    public let file: String?

    public init(keyPath: String, message: String, file: String?) {
        self.keyPath = keyPath
        self.message = message
        self.file = file
    }

    public var description: String {
        let place = file.map { "\($0): " } ?? ""
        return keyPath.isEmpty ? "\(place)\(message)" : "\(place)\(keyPath): \(message)"
    }
}

/// Reads configuration files and turns every decoding failure into a `ConfigError`.
public enum ConfigLoader {
    public static func load(file path: String) throws(ConfigError) -> JunctionConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(keyPath: "", message: "cannot read the file: \(error.localizedDescription)", file: path)
        }
        return try load(yaml: text, file: path)
    }

    public static func load(yaml text: String, file: String? = nil) throws(ConfigError) -> JunctionConfig {
        try decode(JunctionConfig.self, yaml: text, file: file)
    }

    /// Decodes any of Junction's YAML documents (a config, a load scenario), with errors
    /// that name the key path.
    public static func decode<T: Decodable>(_ type: T.Type, yaml text: String, file: String? = nil) throws(ConfigError) -> T {
        do {
            return try YAMLDecoder().decode(T.self, from: text)
        } catch let error as DecodingError {
            throw describe(error, file: file)
        } catch {
            throw ConfigError(keyPath: "", message: "not valid YAML: \(error)", file: file)
        }
    }

    static func describe(_ error: DecodingError, file: String?) -> ConfigError {
        switch error {
        case .typeMismatch(let type, let context):
            return ConfigError(keyPath: keyPath(context.codingPath), message: "expected \(typeName(type)); \(context.debugDescription)", file: file)
        case .valueNotFound(let type, let context):
            return ConfigError(keyPath: keyPath(context.codingPath), message: "expected \(typeName(type)), found nothing", file: file)
        case .keyNotFound(let key, let context):
            return ConfigError(keyPath: keyPath(context.codingPath + [key]), message: "required key is missing", file: file)
        case .dataCorrupted(let context):
            return ConfigError(keyPath: keyPath(context.codingPath), message: context.debugDescription, file: file)
        @unknown default:
            return ConfigError(keyPath: "", message: "\(error)", file: file)
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: return "an integer"
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        case is Array<Any>.Type: return "a list"
        default: return "\(type)"
        }
    }

    /// `stacks[0].acceptors[1].port` from a coding path.
    public static func keyPath(_ path: [CodingKey]) -> String {
        var text = ""
        for key in path {
            if let index = key.intValue {
                text += "[\(index)]"
            } else {
                text += text.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return text
    }
}

extension CookieSource {
    /// Reads the cookie: the environment variable when set, else the file. With
    /// `createIfMissing`, a missing file is created holding a random cookie, readable by
    /// its owner only (as Erlang does with `~/.erlang.cookie`). `what` names the secret in
    /// errors (the admin token is read the same way).
    public func read(environment: [String: String], createIfMissing: Bool, what: String = "cookie") throws(ConfigError) -> Secret {
        if let env, let value = environment[env], !value.isEmpty { return Secret(value) }
        guard let file else {
            throw ConfigError(keyPath: what, message: "the environment variable \(env ?? "") is not set and no \(what) file is configured", file: nil)
        }
        let path = NSString(string: file).expandingTildeInPath
        if !FileManager.default.fileExists(atPath: path) {
            guard createIfMissing else {
                throw ConfigError(keyPath: what, message: "the \(what) file \(path) does not exist\(env.map { " and \($0) is not set" } ?? "")", file: nil)
            }
            let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
            let cookie = String((0..<20).map { _ in alphabet.randomElement()! })
            let created = FileManager.default.createFile(atPath: path, contents: Data(cookie.utf8), attributes: [.posixPermissions: 0o400])
            guard created else { throw ConfigError(keyPath: what, message: "cannot create the \(what) file \(path)", file: nil) }
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(keyPath: what, message: "cannot read the \(what) file \(path)", file: nil)
        }
        let secret = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !secret.isEmpty else { throw ConfigError(keyPath: what, message: "the \(what) file \(path) is empty", file: nil) }
        return Secret(secret)
    }
}
