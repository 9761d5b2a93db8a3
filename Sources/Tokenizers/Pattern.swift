import Foundation

/// A `"pattern"` of tokenizer.json: `{"String": …}` (literal) or `{"Regex": …}`.
enum TextPattern: @unchecked Sendable {
    case literal(String)
    /// ICU regular expressions stand in for Oniguruma; they agree on the patterns tokenizers use.
    case regex(NSRegularExpression, source: String)

    init(_ reader: JSONReader) throws {
        if let literal = try reader.string("String") {
            self = .literal(literal)
        } else if let source = try reader.string("Regex") {
            do {
                self = .regex(try NSRegularExpression(pattern: source), source: source)
            } catch {
                throw reader.invalid("invalid regular expression \(source.debugDescription)")
            }
        } else {
            throw reader.invalid("expected {\"String\": …} or {\"Regex\": …}")
        }
    }

    /// Non-overlapping matches, left to right, as UTF-8 byte ranges of `text`.
    func matches(in text: String) -> [Range<Int>] {
        switch self {
        case let .literal(literal):
            let needle = Array(literal.utf8)
            guard !needle.isEmpty else { return [] }
            let haystack = Array(text.utf8)
            var ranges: [Range<Int>] = []
            var index = 0
            while index + needle.count <= haystack.count {
                if haystack[index] == needle[0], haystack[index..<(index + needle.count)].elementsEqual(needle) {
                    ranges.append(index..<(index + needle.count))
                    index += needle.count
                } else {
                    index += 1
                }
            }
            return ranges
        case let .regex(expression, _):
            // UTF-16 offsets (NSRegularExpression's) to UTF-8 offsets, scalar by scalar: String
            // index conversions would round to whole characters (e + U+0301 is one Character).
            var utf8Offsets = [Int](repeating: 0, count: text.utf16.count + 1)
            var (utf16, utf8) = (0, 0)
            for scalar in text.unicodeScalars {
                utf16 += UTF16.width(scalar)
                utf8 += UTF8.width(scalar)
                utf8Offsets[utf16] = utf8
            }
            return expression.matches(in: text, range: NSRange(location: 0, length: utf16)).compactMap { match in
                guard match.range.length > 0 else { return nil }
                return utf8Offsets[match.range.location]..<utf8Offsets[match.range.location + match.range.length]
            }
        }
    }

    /// `text` with every match replaced by `content`.
    func replacingMatches(in text: String, with content: String) -> String {
        let ranges = matches(in: text)
        guard !ranges.isEmpty else { return text }
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var previous = 0
        for range in ranges {
            out += bytes[previous..<range.lowerBound]
            out += content.utf8
            previous = range.upperBound
        }
        out += bytes[previous...]
        return String(decoding: out, as: UTF8.self)
    }
}
