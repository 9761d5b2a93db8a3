/// A JSON value parsed byte for byte. Objects keep their keys in order and exactly as written:
/// Foundation's `JSONDecoder` merges keys that are canonically equivalent Unicode (Swift `String`
/// equality), which would silently drop vocabulary entries such as a precomposed and a decomposed
/// "é".
indirect enum JSON: Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSON])
    case object([(key: String, value: JSON)])

    /// Parses `bytes`; errors name `file` and the byte offset.
    static func parse(_ bytes: [UInt8], file: String) throws -> JSON {
        var parser = Parser(bytes: bytes, file: file)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw parser.error("unexpected data after the top-level value") }
        return value
    }

    private struct Parser {
        let bytes: [UInt8]
        let file: String
        var index = 0

        init(bytes: [UInt8], file: String) {
            self.bytes = bytes
            self.file = file
        }

        func error(_ reason: String) -> TokenizerError {
            .malformedJSON(file: file, offset: index, reason: reason)
        }

        mutating func skipWhitespace() {
            while index < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[index]) { index += 1 }
        }

        mutating func value(depth: Int) throws -> JSON {
            guard depth < 512 else { throw error("nesting deeper than 512") }
            guard index < bytes.count else { throw error("unexpected end of input") }
            switch bytes[index] {
            case UInt8(ascii: "{"):
                index += 1
                var fields: [(key: String, value: JSON)] = []
                skipWhitespace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .object(fields) }
                while true {
                    skipWhitespace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a string key") }
                    let key = try string()
                    skipWhitespace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':'") }
                    index += 1
                    skipWhitespace()
                    fields.append((key, try value(depth: depth + 1)))
                    skipWhitespace()
                    guard index < bytes.count else { throw error("unexpected end of input in an object") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(fields) }
                    throw error("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                index += 1
                var items: [JSON] = []
                skipWhitespace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
                while true {
                    skipWhitespace()
                    items.append(try value(depth: depth + 1))
                    skipWhitespace()
                    guard index < bytes.count else { throw error("unexpected end of input in an array") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
                    throw error("expected ',' or ']'")
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"):
                try literal("true")
                return .bool(true)
            case UInt8(ascii: "f"):
                try literal("false")
                return .bool(false)
            case UInt8(ascii: "n"):
                try literal("null")
                return .null
            case UInt8(ascii: "N"):
                try literal("NaN")
                return .number(.nan)
            case UInt8(ascii: "I"):
                try literal("Infinity")
                return .number(.infinity)
            default:
                return .number(try number())
            }
        }

        mutating func literal(_ word: StaticString) throws {
            let count = word.utf8CodeUnitCount
            let expected = UnsafeBufferPointer(start: word.utf8Start, count: count)
            guard index + count <= bytes.count, bytes[index..<(index + count)].elementsEqual(expected) else {
                throw error("invalid literal")
            }
            index += count
        }

        mutating func number() throws -> Double {
            let start = index
            if index < bytes.count, bytes[index] == UInt8(ascii: "-") {
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "I") {
                    try literal("Infinity")
                    return -.infinity
                }
            }
            while index < bytes.count, "0123456789.eE+-".utf8.contains(bytes[index]) { index += 1 }
            guard index > start, let value = Double(String(decoding: bytes[start..<index], as: UTF8.self)) else {
                index = start
                throw error("invalid value")
            }
            return value
        }

        mutating func string() throws -> String {
            index += 1  // opening quote
            var out: [UInt8] = []
            while true {
                guard index < bytes.count else { throw error("unterminated string") }
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    index += 1
                    break
                }
                if byte == UInt8(ascii: "\\") {
                    guard index + 1 < bytes.count else { throw error("unterminated escape") }
                    let escape = bytes[index + 1]
                    index += 2
                    switch escape {
                    case UInt8(ascii: "\""): out.append(0x22)
                    case UInt8(ascii: "\\"): out.append(0x5C)
                    case UInt8(ascii: "/"): out.append(0x2F)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800..<0xDC00).contains(scalar) {
                            // A surrogate pair; a lone surrogate becomes U+FFFD as in Python's json.
                            if index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") {
                                let save = index
                                index += 2
                                let low = try hex4()
                                if (0xDC00..<0xE000).contains(low) {
                                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                                } else {
                                    index = save
                                    scalar = 0xFFFD
                                }
                            } else {
                                scalar = 0xFFFD
                            }
                        } else if (0xDC00..<0xE000).contains(scalar) {
                            scalar = 0xFFFD
                        }
                        out.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
                    default:
                        index -= 2
                        throw error("invalid escape")
                    }
                    continue
                }
                guard byte >= 0x20 else { throw error("control character in a string") }
                out.append(byte)
                index += 1
            }
            guard let text = String(validating: out, as: UTF8.self) else { throw error("invalid UTF-8 in a string") }
            return text
        }

        mutating func hex4() throws -> UInt32 {
            guard index + 4 <= bytes.count, let value = UInt32(String(decoding: bytes[index..<(index + 4)], as: UTF8.self), radix: 16) else {
                throw error("invalid \\u escape")
            }
            index += 4
            return value
        }
    }
}

/// Typed access into a parsed JSON object, with errors that name the file and JSON path.
struct JSONReader {
    let value: JSON
    let file: String
    let path: String

    init(_ value: JSON, file: String, path: String) {
        self.value = value
        self.file = file
        self.path = path
    }

    func invalid(_ reason: String) -> TokenizerError {
        .invalidField(file: file, path: path, reason: reason)
    }

    var isNull: Bool {
        if case .null = value { return true }
        return false
    }

    /// The object's fields; throws unless this is an object.
    func fields() throws -> [(key: String, value: JSON)] {
        guard case let .object(fields) = value else { throw invalid("expected an object") }
        return fields
    }

    /// Field `key`, or nil when absent (or when this is not an object).
    func optional(_ key: String) -> JSONReader? {
        guard case let .object(fields) = value, let field = fields.first(where: { $0.key == key }) else { return nil }
        return JSONReader(field.value, file: file, path: path.isEmpty ? key : "\(path).\(key)")
    }

    /// Field `key`, present and not null.
    func required(_ key: String) throws -> JSONReader {
        guard case .object = value else { throw invalid("expected an object") }
        guard let field = optional(key), !field.isNull else {
            throw TokenizerError.invalidField(file: file, path: path.isEmpty ? key : "\(path).\(key)", reason: "missing")
        }
        return field
    }

    func string() throws -> String {
        guard case let .string(text) = value else { throw invalid("expected a string") }
        return text
    }

    func bool() throws -> Bool {
        guard case let .bool(flag) = value else { throw invalid("expected true or false") }
        return flag
    }

    func int() throws -> Int {
        guard case let .number(number) = value, let integer = Int(exactly: number) else { throw invalid("expected an integer") }
        return integer
    }

    func double() throws -> Double {
        guard case let .number(number) = value else { throw invalid("expected a number") }
        return number
    }

    func array() throws -> [JSONReader] {
        guard case let .array(items) = value else { throw invalid("expected an array") }
        return items.enumerated().map { JSONReader($1, file: file, path: "\(path)[\($0)]") }
    }

    /// Optional fields with a default when absent or null.
    func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard let field = optional(key), !field.isNull else { return fallback }
        return try field.bool()
    }

    func string(_ key: String) throws -> String? {
        guard let field = optional(key), !field.isNull else { return nil }
        return try field.string()
    }

    func int(_ key: String) throws -> Int? {
        guard let field = optional(key), !field.isNull else { return nil }
        return try field.int()
    }
}
