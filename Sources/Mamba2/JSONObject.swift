import Foundation

/// A field of a config file that is present but of the wrong type or value.
struct FieldError: Error {
    let field: String
    let reason: String
}

/// Any JSON value, read strictly (a number is never a boolean): for configs whose fields may
/// take several forms (`eos_token_id`: an id or a list; `time_step_rank`: `"auto"` or an
/// integer; floats written as `{"__float__": "Infinity"}`), and for the server's request bodies.
public indirect enum JSONValue: Decodable, Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    /// A number: a JSON number, a special-float string (`"Infinity"`, `"inf"`, `"NaN"`), or
    /// transformers 5's `{"__float__": "Infinity"}`.
    var double: Double? {
        switch self {
        case let .number(value):
            return value
        case let .string(text):
            switch text.lowercased() {
            case "infinity", "inf", "+infinity", "+inf": return .infinity
            case "-infinity", "-inf": return -.infinity
            case "nan": return .nan
            default: return Double(text)
            }
        case let .object(fields) where fields.count == 1:
            return fields["__float__"]?.double
        default:
            return nil
        }
    }

    /// An integer: a number without a fractional part, within ±9e15 (exact in a Double).
    public var int: Int? {
        guard case let .number(value) = self, value == value.rounded(), abs(value) < 9e15 else { return nil }
        return Int(value)
    }
}

/// A JSON object with typed, throwing accessors: absent or null gives nil (the default applies);
/// present with the wrong type is a `FieldError` naming the field.
struct JSONObject: Decodable, Sendable {
    let fields: [String: JSONValue]

    init(from decoder: any Decoder) throws {
        fields = try [String: JSONValue](from: decoder)
    }

    init(fields: [String: JSONValue]) {
        self.fields = fields
    }

    func contains(_ key: String) -> Bool { fields[key] != nil }

    private func value(_ key: String) -> JSONValue? {
        guard let value = fields[key], value != .null else { return nil }
        return value
    }

    private func name(_ key: String, _ path: String?) -> String { path.map { "\($0).\(key)" } ?? key }

    func int(_ key: String, path: String? = nil) throws -> Int? {
        guard let value = value(key) else { return nil }
        guard let int = value.int else { throw FieldError(field: name(key, path), reason: "expected an integer") }
        return int
    }

    func optionalInt(_ key: String, default fallback: Int?) throws -> Int? {
        guard let value = fields[key] else { return fallback }
        if value == .null { return nil }
        guard let int = value.int else { throw FieldError(field: key, reason: "expected an integer or null") }
        return int
    }

    func double(_ key: String, path: String? = nil) throws -> Double? {
        guard let value = value(key) else { return nil }
        guard let double = value.double else { throw FieldError(field: name(key, path), reason: "expected a number") }
        return double
    }

    func float(_ key: String, path: String? = nil) throws -> Float? {
        try double(key, path: path).map(Float.init)
    }

    func bool(_ key: String, path: String? = nil) throws -> Bool? {
        guard let value = value(key) else { return nil }
        guard case let .bool(bool) = value else { throw FieldError(field: name(key, path), reason: "expected true or false") }
        return bool
    }

    func string(_ key: String) throws -> String? {
        guard let value = value(key) else { return nil }
        guard case let .string(string) = value else { throw FieldError(field: key, reason: "expected a string") }
        return string
    }

    func object(_ key: String) throws -> JSONObject? {
        guard let value = value(key) else { return nil }
        guard case let .object(fields) = value else { throw FieldError(field: key, reason: "expected an object") }
        return JSONObject(fields: fields)
    }

    /// One integer or a list of integers.
    func intList(_ key: String) throws -> [Int]? {
        guard let value = value(key) else { return nil }
        if let int = value.int { return [int] }
        guard case let .array(items) = value else { throw FieldError(field: key, reason: "expected an integer or a list of integers") }
        let ints = items.compactMap(\.int)
        guard ints.count == items.count else { throw FieldError(field: key, reason: "expected a list of integers") }
        return ints
    }

    /// `"auto"` (nil) or an integer.
    func intOrAuto(_ key: String) throws -> Int? {
        guard let value = value(key), value != .string("auto") else { return nil }
        guard let int = value.int else { throw FieldError(field: key, reason: "expected \"auto\" or an integer") }
        return int
    }

    /// `[min, max]`, each a number, a special-float string or `{"__float__": …}`.
    func range(_ key: String, path: String? = nil) throws -> ClosedRange<Float>? {
        guard let value = value(key) else { return nil }
        guard case let .array(items) = value, items.count == 2, let low = items[0].double, let high = items[1].double else {
            throw FieldError(field: name(key, path), reason: "expected [min, max]")
        }
        guard !low.isNaN, !high.isNaN, low <= high else {
            throw FieldError(field: name(key, path), reason: "expected min ≤ max, got [\(low), \(high)]")
        }
        return Float(low)...Float(high)
    }
}
