/// tokenizer.json `"post_processor"`: what `add_special_tokens` adds around one sequence.
indirect enum PostProcessor: Sendable {
    /// Offsets only: ids unchanged.
    case byteLevel
    /// `single`: special tokens and `$A`, e.g. `<s> $A`.
    case template([TemplatePiece])
    case sequence([PostProcessor])

    enum TemplatePiece: Sendable, Equatable {
        case sequence
        case special(ids: [Int], tokens: [String])
    }

    init(_ reader: JSONReader) throws {
        let type = try reader.required("type").string()
        switch type {
        case "ByteLevel":
            self = .byteLevel
        case "TemplateProcessing":
            var specials: [String: (ids: [Int], tokens: [String])] = [:]
            if let map = reader.optional("special_tokens"), !map.isNull {
                for (name, value) in try map.fields() {
                    let entry = JSONReader(value, file: reader.file, path: "\(map.path).\(name)")
                    specials[name] = (try entry.required("ids").array().map { try $0.int() }, try entry.required("tokens").array().map { try $0.string() })
                }
            }
            let single = try reader.required("single")
            self = .template(try single.array().map { item in
                if let special = item.optional("SpecialToken") {
                    let name = try special.required("id").string()
                    guard let entry = specials[name] else {
                        throw special.invalid("special token \(name.debugDescription) is not in special_tokens")
                    }
                    return .special(ids: entry.ids, tokens: entry.tokens)
                }
                if let sequence = item.optional("Sequence") {
                    guard try sequence.required("id").string() == "A" else { throw sequence.invalid("a single-sequence template can only hold $A") }
                    return .sequence
                }
                throw item.invalid("expected {\"SpecialToken\": …} or {\"Sequence\": …}")
            })
        case "BertProcessing", "RobertaProcessing":
            let cls = try reader.required("cls").array()
            let sep = try reader.required("sep").array()
            guard cls.count == 2, sep.count == 2 else { throw reader.invalid("cls and sep must be [token, id]") }
            self = .template([
                .special(ids: [try cls[1].int()], tokens: [try cls[0].string()]),
                .sequence,
                .special(ids: [try sep[1].int()], tokens: [try sep[0].string()]),
            ])
        case "Sequence":
            self = .sequence(try reader.required("processors").array().map(PostProcessor.init))
        default:
            throw TokenizerError.unknownType(file: reader.file, path: reader.path, type: type)
        }
    }

    func process(ids: [Int], tokens: [String]) -> (ids: [Int], tokens: [String]) {
        switch self {
        case .byteLevel:
            return (ids, tokens)
        case let .template(pieces):
            var out: (ids: [Int], tokens: [String]) = ([], [])
            for piece in pieces {
                switch piece {
                case .sequence:
                    out.ids += ids
                    out.tokens += tokens
                case let .special(specialIDs, specialTokens):
                    out.ids += specialIDs
                    out.tokens += specialTokens
                }
            }
            return out
        case let .sequence(processors):
            return processors.reduce((ids, tokens)) { $1.process(ids: $0.ids, tokens: $0.tokens) }
        }
    }
}
