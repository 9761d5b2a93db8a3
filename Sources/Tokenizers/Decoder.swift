/// tokenizer.json `"decoder"`: turns token strings back into text, as a chain over the list of
/// token strings (tokenizers' `decode_chain`), joined at the end.
indirect enum Decoder: Sendable {
    case byteLevel
    case metaspace(replacement: Unicode.Scalar, prependScheme: PreTokenizer.PrependScheme)
    case replace(TextPattern, content: String)
    case byteFallback
    case fuse
    case strip(content: Character, start: Int, stop: Int)
    case sequence([Decoder])

    init(_ reader: JSONReader) throws {
        let type = try reader.required("type").string()
        switch type {
        case "ByteLevel":
            self = .byteLevel
        case "Metaspace":
            let replacement = try reader.string("replacement") ?? "▁"
            guard replacement.unicodeScalars.count == 1 else { throw reader.invalid("replacement must be one character") }
            let scheme: PreTokenizer.PrependScheme
            if let name = try reader.string("prepend_scheme") {
                guard let parsed = PreTokenizer.PrependScheme(rawValue: name) else { throw reader.invalid("unknown prepend_scheme \(name.debugDescription)") }
                scheme = parsed
            } else {
                scheme = try reader.bool("add_prefix_space", default: true) ? .always : .never
            }
            self = .metaspace(replacement: replacement.unicodeScalars.first!, prependScheme: scheme)
        case "Replace":
            self = .replace(try TextPattern(reader.required("pattern")), content: try reader.required("content").string())
        case "ByteFallback":
            self = .byteFallback
        case "Fuse":
            self = .fuse
        case "Strip":
            let content = try reader.required("content").string()
            guard content.count == 1 else { throw reader.invalid("content must be one character") }
            let (start, stop) = (try reader.int("start") ?? 0, try reader.int("stop") ?? 0)
            guard start >= 0, stop >= 0 else { throw reader.invalid("start and stop must be ≥ 0") }
            self = .strip(content: content.first!, start: start, stop: stop)
        case "Sequence":
            self = .sequence(try reader.required("decoders").array().map(Decoder.init))
        default:
            throw TokenizerError.unknownType(file: reader.file, path: reader.path, type: type)
        }
    }

    func decode(_ tokens: [String]) -> String {
        decodeChain(tokens).joined()
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .byteLevel:
            var bytes: [UInt8] = []
            for token in tokens {
                var mapped: [UInt8] = []
                var complete = true
                for scalar in token.unicodeScalars {
                    guard let byte = ByteLevel.scalarToByte[scalar.value] else { complete = false; break }
                    mapped.append(byte)
                }
                bytes += complete ? mapped : Array(token.utf8)
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case let .metaspace(replacement, scheme):
            return tokens.enumerated().map { index, token in
                var out = String.UnicodeScalarView()
                for scalar in token.unicodeScalars {
                    if scalar == replacement {
                        if index == 0 && scheme != .never { continue }
                        out.append(" ")
                    } else {
                        out.append(scalar)
                    }
                }
                return String(out)
            }
        case let .replace(pattern, content):
            return tokens.map { pattern.replacingMatches(in: $0, with: content) }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let text = String(validating: pending, as: UTF8.self) {
                    out.append(text)
                } else {
                    out += Array(repeating: "\u{FFFD}", count: pending.count)
                }
                pending.removeAll()
            }
            for token in tokens {
                let utf8 = Array(token.utf8)
                if utf8.count == 6, token.hasPrefix("<0x"), token.hasSuffix(">"),
                   let byte = UInt8(String(decoding: utf8[3..<5], as: UTF8.self), radix: 16) {
                    pending.append(byte)
                } else {
                    flush()
                    out.append(token)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case let .strip(content, start, stop):
            return tokens.map { token in
                let characters = Array(token.unicodeScalars)
                var startCut = 0
                for index in 0..<min(start, characters.count) {
                    guard Character(characters[index]) == content else { break }
                    startCut = index + 1
                }
                var stopCut = characters.count
                for offset in 0..<min(stop, characters.count) {
                    let index = characters.count - offset - 1
                    guard index >= startCut, Character(characters[index]) == content else { break }
                    stopCut = index
                }
                return String(String.UnicodeScalarView(characters[startCut..<max(startCut, stopCut)]))
            }
        case let .sequence(decoders):
            return decoders.reduce(tokens) { $1.decodeChain($0) }
        }
    }
}
