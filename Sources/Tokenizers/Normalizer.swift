import Foundation

/// tokenizer.json `"normalizer"`, keyed by its `"type"`.
indirect enum Normalizer: Sendable {
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case strip(left: Bool, right: Bool)
    case prepend(String)
    case replace(TextPattern, content: String)
    case sequence([Normalizer])

    init(_ reader: JSONReader) throws {
        let type = try reader.required("type").string()
        switch type {
        case "NFC": self = .nfc
        case "NFD": self = .nfd
        case "NFKC": self = .nfkc
        case "NFKD": self = .nfkd
        case "Lowercase": self = .lowercase
        case "Strip": self = .strip(left: try reader.bool("strip_left", default: true), right: try reader.bool("strip_right", default: true))
        case "Prepend": self = .prepend(try reader.required("prepend").string())
        case "Replace": self = .replace(try TextPattern(reader.required("pattern")), content: try reader.required("content").string())
        case "Sequence": self = .sequence(try reader.required("normalizers").array().map(Normalizer.init))
        default: throw TokenizerError.unknownType(file: reader.file, path: reader.path, type: type)
        }
    }

    func normalize(_ text: String) -> String {
        switch self {
        case .nfc: return text.precomposedStringWithCanonicalMapping
        case .nfd: return text.decomposedStringWithCanonicalMapping
        case .nfkc: return text.precomposedStringWithCompatibilityMapping
        case .nfkd: return text.decomposedStringWithCompatibilityMapping
        case .lowercase: return text.lowercased()
        case let .strip(left, right):
            var scalars = Substring(text).unicodeScalars[...]
            if left { while let first = scalars.first, UnicodeClass.isWhitespace(first) { scalars.removeFirst() } }
            if right { while let last = scalars.last, UnicodeClass.isWhitespace(last) { scalars.removeLast() } }
            return String(scalars)
        case let .prepend(prefix):
            // Nothing is prepended to an empty string (as the Rust implementation).
            return text.isEmpty ? text : prefix + text
        case let .replace(pattern, content):
            return pattern.replacingMatches(in: text, with: content)
        case let .sequence(normalizers):
            return normalizers.reduce(text) { $1.normalize($0) }
        }
    }
}
