/// One entry of tokenizer.json `"added_tokens"`.
public struct AddedToken: Sendable, Equatable {
    public var id: Int
    public var content: String
    public var singleWord: Bool
    public var leftStrip: Bool
    public var rightStrip: Bool
    public var normalized: Bool
    public var special: Bool

    init(_ reader: JSONReader) throws {
        id = try reader.required("id").int()
        content = try reader.required("content").string()
        singleWord = try reader.bool("single_word", default: false)
        leftStrip = try reader.bool("lstrip", default: false)
        rightStrip = try reader.bool("rstrip", default: false)
        normalized = try reader.bool("normalized", default: true)
        special = try reader.bool("special", default: false)
    }
}

/// Finds added tokens in text, leftmost-longest, with `single_word`, `lstrip` and `rstrip`, as
/// tokenizers' `AddedVocabulary::find_matches` does.
struct AddedTokenMatcher: Sendable {
    private struct Node: Sendable {
        var children: [UInt8: Int32] = [:]
        var token: Int32 = -1
    }

    private var nodes = [Node()]
    private let tokens: [AddedToken]

    /// `patterns[i]` is the text to find for `tokens[i]` (its normalized form where it applies).
    init(tokens: [AddedToken], patterns: [String]) {
        self.tokens = tokens
        for (index, pattern) in patterns.enumerated() where !pattern.isEmpty {
            var node = 0
            for byte in pattern.utf8 {
                if let child = nodes[node].children[byte] {
                    node = Int(child)
                } else {
                    nodes.append(Node())
                    nodes[node].children[byte] = Int32(nodes.count - 1)
                    node = nodes.count - 1
                }
            }
            if nodes[node].token < 0 { nodes[node].token = Int32(index) }
        }
    }

    var isEmpty: Bool { nodes.count == 1 }

    enum Segment {
        case text(String)
        /// The token and the text it covers (with any whitespace `lstrip`/`rstrip` took).
        case token(AddedToken, text: String)
    }

    /// Splits `text` into added tokens and the text between them (empty text dropped).
    func split(_ text: String) -> [Segment] {
        let bytes = Array(text.utf8)
        guard !isEmpty, !bytes.isEmpty else { return bytes.isEmpty ? [] : [.text(text)] }
        var segments: [Segment] = []
        var consumed = 0  // start of the text not yet emitted
        var position = 0
        while position < bytes.count {
            // Only start matches at scalar boundaries.
            if bytes[position] & 0xC0 == 0x80 { position += 1; continue }
            var node = 0
            var matched: (token: Int, end: Int)?
            var cursor = position
            while cursor < bytes.count, let child = nodes[node].children[bytes[cursor]] {
                node = Int(child)
                cursor += 1
                if nodes[node].token >= 0 { matched = (Int(nodes[node].token), cursor) }
            }
            guard let (index, end) = matched else { position += 1; continue }
            let token = tokens[index]
            var start = position
            var stop = end
            if token.singleWord {
                let before = Self.scalar(endingAt: start, in: bytes)
                let after = Self.scalar(startingAt: stop, in: bytes)
                if before.map(UnicodeClass.isWord) == true || after.map(UnicodeClass.isWord) == true {
                    // tokenizers' leftmost-longest iterator has moved past the rejected match.
                    position = end
                    continue
                }
            }
            if token.leftStrip {
                while start > consumed, let scalar = Self.scalar(endingAt: start, in: bytes), UnicodeClass.isWhitespace(scalar) {
                    start -= UTF8.width(scalar)
                }
            }
            if token.rightStrip {
                while let scalar = Self.scalar(startingAt: stop, in: bytes), UnicodeClass.isWhitespace(scalar) {
                    stop += UTF8.width(scalar)
                }
            }
            if consumed < start { segments.append(.text(String(decoding: bytes[consumed..<start], as: UTF8.self))) }
            segments.append(.token(token, text: String(decoding: bytes[start..<stop], as: UTF8.self)))
            consumed = stop
            position = stop
        }
        if consumed < bytes.count { segments.append(.text(String(decoding: bytes[consumed...], as: UTF8.self))) }
        return segments
    }

    /// The scalar whose UTF-8 ends at byte `end` (valid UTF-8, so at most 4 bytes back).
    static func scalar(endingAt end: Int, in bytes: [UInt8]) -> Unicode.Scalar? {
        guard end > 0 else { return nil }
        var start = end - 1
        while start > 0, end - start < 4, bytes[start] & 0xC0 == 0x80 { start -= 1 }
        return String(decoding: bytes[start..<end], as: UTF8.self).unicodeScalars.last
    }

    /// The scalar whose UTF-8 starts at byte `start`.
    static func scalar(startingAt start: Int, in bytes: [UInt8]) -> Unicode.Scalar? {
        guard start < bytes.count else { return nil }
        let length = BPEModel.scalarLength(bytes[start])
        return String(decoding: bytes[start..<min(bytes.count, start + length)], as: UTF8.self).unicodeScalars.first
    }
}
