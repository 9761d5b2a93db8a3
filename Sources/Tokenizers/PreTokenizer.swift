/// One piece of text between pre-tokenization steps.
struct PreToken: Sendable {
    var text: String
    /// Whether the piece starts at the very beginning of the input (Metaspace's `"first"`).
    var isFirst: Bool
}

/// `"behavior"` of a split: what happens to the matched delimiters.
enum SplitBehavior: String, Sendable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"

    /// Splits `text` given its delimiter `matches` (sorted, non-overlapping UTF-8 ranges), as
    /// `NormalizedString::split` does; empty pieces are dropped.
    func split(_ piece: PreToken, matches: [Range<Int>], invert: Bool = false) -> [PreToken] {
        let bytes = Array(piece.text.utf8)
        guard !bytes.isEmpty else { return [] }
        // Every byte of the text is in exactly one span: (range, isMatch).
        var spans: [(range: Range<Int>, isMatch: Bool)] = []
        var previous = 0
        for match in matches {
            if previous < match.lowerBound { spans.append((previous..<match.lowerBound, invert)) }
            spans.append((match, !invert))
            previous = match.upperBound
        }
        if previous < bytes.count { spans.append((previous..<bytes.count, invert)) }

        var pieces: [(range: Range<Int>, keep: Bool)] = []
        switch self {
        case .isolated:
            pieces = spans.map { ($0.range, true) }
        case .removed:
            pieces = spans.map { ($0.range, !$0.isMatch) }
        case .contiguous:
            var previousMatch = false
            for span in spans {
                if span.isMatch == previousMatch, let last = pieces.last {
                    pieces[pieces.count - 1].range = last.range.lowerBound..<span.range.upperBound
                } else {
                    pieces.append((span.range, true))
                }
                previousMatch = span.isMatch
            }
        case .mergedWithPrevious:
            var previousMatch = false
            for span in spans {
                if span.isMatch && !previousMatch, let last = pieces.last {
                    pieces[pieces.count - 1].range = last.range.lowerBound..<span.range.upperBound
                } else {
                    pieces.append((span.range, true))
                }
                previousMatch = span.isMatch
            }
        case .mergedWithNext:
            var previousMatch = false
            for span in spans.reversed() {
                if span.isMatch && !previousMatch, let last = pieces.last {
                    pieces[pieces.count - 1].range = span.range.lowerBound..<last.range.upperBound
                } else {
                    pieces.append((span.range, true))
                }
                previousMatch = span.isMatch
            }
            pieces.reverse()
        }
        return pieces.compactMap { piece -> PreToken? in
            guard piece.keep, !piece.range.isEmpty else { return nil }
            return PreToken(text: String(decoding: bytes[piece.range], as: UTF8.self), isFirst: pieceIsFirst(piece.range))
        }

        func pieceIsFirst(_ range: Range<Int>) -> Bool { piece.isFirst && range.lowerBound == 0 }
    }
}

/// UTF-8 ranges of every scalar of `text` for which `predicate` holds (one match per scalar).
func scalarMatches(_ text: String, _ predicate: (Unicode.Scalar) -> Bool) -> [Range<Int>] {
    var ranges: [Range<Int>] = []
    var offset = 0
    for scalar in text.unicodeScalars {
        let length = UTF8.width(scalar)
        if predicate(scalar) { ranges.append(offset..<(offset + length)) }
        offset += length
    }
    return ranges
}

/// tokenizer.json `"pre_tokenizer"`, keyed by its `"type"`.
indirect enum PreTokenizer: Sendable {
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case metaspace(replacement: Unicode.Scalar, prependScheme: PrependScheme, split: Bool)
    case split(TextPattern, behavior: SplitBehavior, invert: Bool)
    case whitespace
    case whitespaceSplit
    case bert
    case digits(individual: Bool)
    case punctuation(SplitBehavior)
    case sequence([PreTokenizer])

    enum PrependScheme: String, Sendable {
        case always, first, never
    }

    init(_ reader: JSONReader) throws {
        let type = try reader.required("type").string()
        switch type {
        case "ByteLevel":
            self = .byteLevel(addPrefixSpace: try reader.bool("add_prefix_space", default: true), useRegex: try reader.bool("use_regex", default: true))
        case "Metaspace":
            let replacement = try reader.string("replacement") ?? "▁"
            guard replacement.unicodeScalars.count == 1, let scalar = replacement.unicodeScalars.first else {
                throw TokenizerError.invalidField(file: reader.file, path: reader.path + ".replacement", reason: "must be one character")
            }
            let scheme: PrependScheme
            if let name = try reader.string("prepend_scheme") {
                guard let parsed = PrependScheme(rawValue: name) else {
                    throw TokenizerError.invalidField(file: reader.file, path: reader.path + ".prepend_scheme", reason: "expected always, first or never, got \(name.debugDescription)")
                }
                scheme = parsed
            } else {
                scheme = try reader.bool("add_prefix_space", default: true) ? .always : .never
            }
            self = .metaspace(replacement: scalar, prependScheme: scheme, split: try reader.bool("split", default: true))
        case "Split":
            self = .split(
                try TextPattern(reader.required("pattern")),
                behavior: try Self.behavior(reader, default: nil),
                invert: try reader.bool("invert", default: false))
        case "Whitespace": self = .whitespace
        case "WhitespaceSplit": self = .whitespaceSplit
        case "BertPreTokenizer": self = .bert
        case "Digits": self = .digits(individual: try reader.bool("individual_digits", default: false))
        case "Punctuation": self = .punctuation(try Self.behavior(reader, default: .isolated))
        case "Sequence": self = .sequence(try reader.required("pretokenizers").array().map(PreTokenizer.init))
        default: throw TokenizerError.unknownType(file: reader.file, path: reader.path, type: type)
        }
    }

    private static func behavior(_ reader: JSONReader, default fallback: SplitBehavior?) throws -> SplitBehavior {
        guard let name = try reader.string("behavior") else {
            if let fallback { return fallback }
            throw TokenizerError.invalidField(file: reader.file, path: reader.path + ".behavior", reason: "missing")
        }
        guard let behavior = SplitBehavior(rawValue: name) else {
            throw TokenizerError.invalidField(file: reader.file, path: reader.path + ".behavior", reason: "unknown split behavior \(name.debugDescription)")
        }
        return behavior
    }

    func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        switch self {
        case let .sequence(steps):
            return steps.reduce(pieces) { $1.preTokenize($0) }
        default:
            return pieces.flatMap(preTokenize(piece:))
        }
    }

    private func preTokenize(piece: PreToken) -> [PreToken] {
        switch self {
        case let .byteLevel(addPrefixSpace, useRegex):
            var text = piece.text
            if addPrefixSpace, !text.hasPrefix(" ") { text = " " + text }
            let parts = useRegex ? ByteLevel.split(text) : [text[...]]
            var out: [PreToken] = []
            out.reserveCapacity(parts.count)
            var first = piece.isFirst
            for part in parts where !part.isEmpty {
                out.append(PreToken(text: ByteLevel.encode(part), isFirst: first))
                first = false
            }
            return out
        case let .metaspace(replacement, scheme, split):
            var text = String(String.UnicodeScalarView(piece.text.unicodeScalars.map { $0 == " " ? replacement : $0 }))
            switch scheme {
            case .always where text.unicodeScalars.first != replacement,
                 .first where text.unicodeScalars.first != replacement && piece.isFirst:
                text = String(Character(replacement)) + text
            default:
                break
            }
            let spaced = PreToken(text: text, isFirst: piece.isFirst)
            guard split else { return text.isEmpty ? [] : [spaced] }
            return SplitBehavior.mergedWithNext.split(spaced, matches: scalarMatches(text) { $0 == replacement })
        case let .split(pattern, behavior, invert):
            return behavior.split(piece, matches: pattern.matches(in: piece.text), invert: invert)
        case .whitespace:
            // `\w+|[^\w\s]+`, everything else removed.
            var matches: [Range<Int>] = []
            var offset = 0
            var current: (start: Int, isWord: Bool)?
            for scalar in piece.text.unicodeScalars {
                let length = UTF8.width(scalar)
                let kind: Bool? = UnicodeClass.isWord(scalar) ? true : (UnicodeClass.isWhitespace(scalar) ? nil : false)
                if let run = current, run.isWord != kind {
                    matches.append(run.start..<offset)
                    current = nil
                }
                if let kind, current == nil { current = (offset, kind) }
                offset += length
            }
            if let run = current { matches.append(run.start..<offset) }
            return SplitBehavior.removed.split(piece, matches: matches, invert: true)
        case .whitespaceSplit:
            return SplitBehavior.removed.split(piece, matches: scalarMatches(piece.text, UnicodeClass.isWhitespace))
        case .bert:
            return SplitBehavior.removed.split(piece, matches: scalarMatches(piece.text, UnicodeClass.isWhitespace))
                .flatMap { SplitBehavior.isolated.split($0, matches: scalarMatches($0.text, UnicodeClass.isPunctuation)) }
        case let .digits(individual):
            return (individual ? SplitBehavior.isolated : .contiguous).split(piece, matches: scalarMatches(piece.text, UnicodeClass.isNumeric))
        case let .punctuation(behavior):
            return behavior.split(piece, matches: scalarMatches(piece.text, UnicodeClass.isPunctuation))
        case .sequence:
            return preTokenize([piece])
        }
    }
}

/// GPT-2's byte-level scheme: the split regex, and bytes shown as printable characters.
enum ByteLevel {
    /// Byte → the character that stands for it (https://github.com/openai/gpt-2, `bytes_to_unicode`).
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var extra: UInt32 = 0
        for byte in 0..<256 {
            let printable = (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte)
            if printable {
                table[byte] = Unicode.Scalar(UInt32(byte))!
            } else {
                table[byte] = Unicode.Scalar(256 + extra)!
                extra += 1
            }
        }
        return table
    }()

    /// The UTF-8 bytes of each byte's character.
    static let byteToUTF8: [[UInt8]] = byteToScalar.map { Array(String(Character($0)).utf8) }

    /// Character → byte, for decoding.
    static let scalarToByte: [UInt32: UInt8] = Dictionary(uniqueKeysWithValues: byteToScalar.enumerated().map { ($1.value, UInt8($0)) })

    /// The bytes of `text` written as byte-level characters.
    static func encode(_ text: Substring) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count * 2)
        for byte in text.utf8 { out += byteToUTF8[Int(byte)] }
        return String(decoding: out, as: UTF8.self)
    }

    /// Splits like GPT-2's regex
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
    /// trying the alternatives in order at each position.
    static func split(_ text: String) -> [Substring] {
        let scalars = Array(text.unicodeScalars)
        var indices: [String.Index] = []
        indices.reserveCapacity(scalars.count + 1)
        var index = text.startIndex
        for _ in scalars {
            indices.append(index)
            index = text.unicodeScalars.index(after: index)
        }
        indices.append(text.endIndex)

        func isOther(_ scalar: Unicode.Scalar) -> Bool {
            !UnicodeClass.isWhitespace(scalar) && !UnicodeClass.isLetter(scalar) && !UnicodeClass.isNumber(scalar)
        }

        var parts: [Substring] = []
        var i = 0
        let n = scalars.count
        while i < n {
            let start = i
            let c = scalars[i]
            var end: Int? = nil
            if c == "'", i + 1 < n {
                switch scalars[i + 1] {
                case "s", "t", "m", "d": end = i + 2
                case "r" where i + 2 < n && scalars[i + 2] == "e": end = i + 3
                case "v" where i + 2 < n && scalars[i + 2] == "e": end = i + 3
                case "l" where i + 2 < n && scalars[i + 2] == "l": end = i + 3
                default: break
                }
            }
            if end == nil {
                let j = c == " " && i + 1 < n ? i + 1 : i
                let head = scalars[j]
                if j < n, UnicodeClass.isLetter(head) {
                    var k = j + 1
                    while k < n, UnicodeClass.isLetter(scalars[k]) { k += 1 }
                    end = k
                } else if j < n, UnicodeClass.isNumber(head) {
                    var k = j + 1
                    while k < n, UnicodeClass.isNumber(scalars[k]) { k += 1 }
                    end = k
                } else if j < n, isOther(head) {
                    var k = j + 1
                    while k < n, isOther(scalars[k]) { k += 1 }
                    end = k
                }
            }
            if end == nil {
                // Whitespace: `\s+(?!\S)` leaves the last space of a run before text to the next
                // token; a lone space before text is `\s+`.
                var k = i + 1
                while k < n, UnicodeClass.isWhitespace(scalars[k]) { k += 1 }
                end = k == n || k - i == 1 ? k : k - 1
            }
            parts.append(text[indices[start]..<indices[end!]])
            i = end!
        }
        return parts
    }
}
