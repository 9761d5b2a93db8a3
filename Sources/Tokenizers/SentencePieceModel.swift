import Foundation

/// A SentencePiece model file (`tokenizer.model`, Mistral's `tokenizer.model.v3`): the
/// `ModelProto` protobuf of google/sentencepiece's `sentencepiece_model.proto`, read for what a
/// BPE tokenizer needs. `huggingFaceJSON` turns it into the `tokenizer.json` transformers'
/// `LlamaConverter` writes for it, so it tokenizes exactly as the converted file does.
public struct SentencePieceModel: Sendable {
    /// `SentencePiece.Type`.
    public enum PieceType: Int, Sendable {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    public struct Piece: Sendable, Equatable {
        public var piece: String
        public var score: Float
        public var type: PieceType
    }

    /// `pieces`, in id order.
    public var pieces: [Piece]
    /// `trainer_spec.model_type`: 1 unigram, 2 BPE, 3 word, 4 char.
    public var modelType = 1
    /// `trainer_spec.byte_fallback`.
    public var byteFallback = false
    /// `trainer_spec.unk_id`, `bos_id`, `eos_id` (−1 when the model has none).
    public var unknownID = 0
    public var bosID = 1
    public var eosID = 2
    /// `trainer_spec.unk_piece`, the unknown token transformers names.
    public var unknownPiece = "<unk>"

    /// Reads a model file; errors name it and the byte offset.
    public init(url: URL) throws {
        try self.init(bytes: try Tokenizer.read(url), file: url.path)
    }

    public init(bytes: [UInt8], file: String = "tokenizer.model") throws {
        var reader = ProtobufReader(bytes: bytes[...], file: file)
        pieces = []
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case let (1, .bytes(message)): pieces.append(try Self.piece(message, file: file, index: pieces.count))
            case let (2, .bytes(message)): try readTrainerSpec(message, file: file)
            case (1, _), (2, _): throw TokenizerError.invalidField(file: file, path: field == 1 ? "pieces" : "trainer_spec", reason: "not a message")
            default: continue
            }
        }
        guard !pieces.isEmpty else { throw TokenizerError.invalidField(file: file, path: "pieces", reason: "the model has no pieces") }
        // Compared as bytes: Swift's String equality would merge canonically equivalent pieces.
        var seen = Set<[UInt8]>()
        for (index, piece) in pieces.enumerated() where !seen.insert(Array(piece.piece.utf8)).inserted {
            throw TokenizerError.invalidField(file: file, path: "pieces[\(index)].piece", reason: "\(piece.piece.debugDescription) appears twice")
        }
        guard modelType == 2 else {
            let name = [1: "unigram", 3: "word", 4: "char"][modelType] ?? "type \(modelType)"
            throw TokenizerError.unknownType(file: file, path: "trainer_spec.model_type", type: "\(name) (only BPE SentencePiece models are supported)")
        }
        for (name, id) in [("unk_id", unknownID), ("bos_id", bosID), ("eos_id", eosID)] where id >= pieces.count {
            throw TokenizerError.invalidField(file: file, path: "trainer_spec.\(name)", reason: "\(id) is not a piece id (the model has \(pieces.count))")
        }
        guard unknownID >= 0 else { throw TokenizerError.invalidField(file: file, path: "trainer_spec.unk_id", reason: "a BPE model needs an unknown piece") }
    }

    private static func piece(_ bytes: ArraySlice<UInt8>, file: String, index: Int) throws -> Piece {
        var reader = ProtobufReader(bytes: bytes, file: file)
        var piece = Piece(piece: "", score: 0, type: .normal)
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case let (1, .bytes(text)):
                // Longer than any vocabulary needs; splitting it would take quadratic time.
                guard text.count <= 1024 else {
                    throw TokenizerError.invalidField(file: file, path: "pieces[\(index)].piece", reason: "\(text.count) bytes long (at most 1024)")
                }
                // Decoded by hand: Foundation's UTF-8 decoding drops a leading U+FEFF, which is a
                // piece of its own in Mistral's vocabulary. Invalid bytes would come back changed.
                let string = String(decoding: text, as: UTF8.self)
                guard string.utf8.elementsEqual(text) else {
                    throw TokenizerError.invalidField(file: file, path: "pieces[\(index)].piece", reason: "not valid UTF-8")
                }
                piece.piece = string
            case let (2, .fixed32(bits)): piece.score = Float(bitPattern: bits)
            case let (3, .varint(raw)):
                guard let type = PieceType(rawValue: Int(truncatingIfNeeded: raw)) else {
                    throw TokenizerError.invalidField(file: file, path: "pieces[\(index)].type", reason: "unknown piece type \(raw)")
                }
                piece.type = type
            default: continue
            }
        }
        return piece
    }

    private mutating func readTrainerSpec(_ bytes: ArraySlice<UInt8>, file: String) throws {
        var reader = ProtobufReader(bytes: bytes, file: file)
        while let (field, value) = try reader.next() {
            if field == 45, case let .bytes(text) = value {
                unknownPiece = String(decoding: text, as: UTF8.self)
                continue
            }
            guard case let .varint(raw) = value else { continue }
            // int32 fields: a negative id (-1, "none") arrives as a 64-bit two's complement.
            let number = Int(Int32(truncatingIfNeeded: raw))
            switch field {
            case 3: modelType = number
            case 35: byteFallback = raw != 0
            case 40: unknownID = number
            case 41: bosID = number
            case 42: eosID = number
            default: continue
            }
        }
    }

    // MARK: Conversion

    /// The merges transformers' `SentencePieceExtractor` derives from the vocabulary: every
    /// split of every piece into two pieces, ordered by the piece's score, then by the length
    /// of the left part and of the right part (all descending; lengths in Unicode scalars), ties
    /// kept in piece order and, within a piece, in order of the parts' ids.
    /// LlamaConverter scores the first three pieces 0.
    public func merges() -> [(left: String, right: String)] {
        // Keyed by bytes: transformers compares code points, not canonical equivalence.
        var ids: [[UInt8]: Int] = [:]
        for (id, piece) in pieces.enumerated() { ids[Array(piece.piece.utf8)] = id }
        var candidates: [(left: String, right: String, score: Float, leftLength: Int, rightLength: Int, order: Int)] = []
        for (id, piece) in pieces.enumerated() {
            let scalars = Array(piece.piece.unicodeScalars)
            var local: [(left: String, right: String, leftID: Int, rightID: Int, leftLength: Int)] = []
            for split in stride(from: 1, to: scalars.count, by: 1) {
                let left = String(String.UnicodeScalarView(scalars[..<split]))
                let right = String(String.UnicodeScalarView(scalars[split...]))
                if let leftID = ids[Array(left.utf8)], let rightID = ids[Array(right.utf8)] { local.append((left, right, leftID, rightID, split)) }
            }
            local.sort { ($0.leftID, $0.rightID) < ($1.leftID, $1.rightID) }
            let score = id < 3 ? 0 : piece.score
            for entry in local {
                candidates.append((entry.left, entry.right, score, entry.leftLength, scalars.count - entry.leftLength, candidates.count))
            }
        }
        candidates.sort {
            ($0.score, $0.leftLength, $0.rightLength, -$0.order) > ($1.score, $1.leftLength, $1.rightLength, -$1.order)
        }
        return candidates.map { ($0.left, $0.right) }
    }

    /// The `tokenizer.json` transformers (`LlamaConverter`) writes for this model: BPE with
    /// byte fallback (always, as the converter sets it) over the pieces, unknown and control pieces as special added tokens and
    /// user-defined pieces as plain ones, a `<s>` template, and the Metaspace pre-tokenizer
    /// (`legacy: false`, as transformers' Mamba-2 tests load Codestral's) or, with `legacy`, the
    /// Prepend + Replace normalizer.
    public func huggingFaceJSON(legacy: Bool = false) -> [UInt8] {
        func quoted(_ text: String) -> String { JSONText.quoted(text) }
        let added = pieces.enumerated().filter { [.unknown, .control, .userDefined].contains($0.element.type) }.map { id, piece in
            "{\"id\": \(id), \"content\": \(quoted(piece.piece)), \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": \(piece.type != .userDefined)}"
        }
        let normalizer = legacy
            ? "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"▁\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"▁\"}]}"
            : "null"
        let preTokenizer = legacy ? "null" : "{\"type\": \"Metaspace\", \"replacement\": \"▁\", \"prepend_scheme\": \"first\", \"split\": false}"
        var postProcessor = "null"
        if bosID >= 0 {
            let bos = quoted(pieces[bosID].piece)
            postProcessor = """
                {"type": "TemplateProcessing", \
                "single": [{"SpecialToken": {"id": \(bos), "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], \
                "pair": [{"SpecialToken": {"id": \(bos), "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, \
                {"SpecialToken": {"id": \(bos), "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}], \
                "special_tokens": {\(bos): {"id": \(bos), "ids": [\(bosID)], "tokens": [\(bos)]}}}
                """
        }
        let decoder = """
            {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, \
            {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
            """
        let vocabulary = pieces.enumerated().map { id, piece in "\(quoted(piece.piece)): \(id)" }
        let merges = merges().map { "[\(quoted($0.left)), \(quoted($0.right))]" }
        let model = """
            {"type": "BPE", "dropout": null, "unk_token": \(quoted(unknownPiece)), "continuing_subword_prefix": null, \
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false, \
            "vocab": {\(vocabulary.joined(separator: ", "))}, "merges": [\(merges.joined(separator: ", "))]}
            """
        let json = """
            {"version": "1.0", "truncation": null, "padding": null, "added_tokens": [\(added.joined(separator: ", "))], \
            "normalizer": \(normalizer), "pre_tokenizer": \(preTokenizer), "post_processor": \(postProcessor), \
            "decoder": \(decoder), "model": \(model)}
            """
        return Array(json.utf8)
    }
}

/// JSON string literals for the converted tokenizer.json (control characters as `\u00XX`).
enum JSONText {
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            if scalar == "\"" || scalar == "\\" { out += "\\" }
            if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
        }
        return out + "\""
    }
}

/// Protocol-buffer wire format: just enough to walk a message's fields.
struct ProtobufReader {
    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed32(UInt32)
    }

    let bytes: ArraySlice<UInt8>
    let file: String
    var index: Int

    init(bytes: ArraySlice<UInt8>, file: String) {
        self.bytes = bytes
        self.file = file
        index = bytes.startIndex
    }

    func error(_ reason: String) -> TokenizerError {
        .malformedModel(file: file, offset: index, reason: reason)
    }

    mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        for shift in stride(from: 0, to: 64, by: 7) {
            guard index < bytes.endIndex else { throw error("truncated varint") }
            let byte = bytes[index]
            index += 1
            result |= UInt64(byte & 0x7F) << UInt64(shift)
            if byte & 0x80 == 0 { return result }
        }
        throw error("varint longer than 10 bytes")
    }

    mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, count <= bytes.endIndex - index else { throw error("a field of \(count) bytes runs past the end") }
        defer { index += count }
        return bytes[index..<(index + count)]
    }

    /// The next field number and value, or nil at the end of the message.
    mutating func next() throws -> (Int, Value)? {
        guard index < bytes.endIndex else { return nil }
        let key = try varint()
        let field = Int(truncatingIfNeeded: key >> 3)
        switch key & 7 {
        case 0: return (field, .varint(try varint()))
        case 1: return (field, .fixed64(try take(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }))
        case 2:
            let length = try varint()
            guard length <= UInt64(Int.max) else { throw error("a length of \(length) bytes") }
            return (field, .bytes(try take(Int(length))))
        case 5: return (field, .fixed32(try take(4).reversed().reduce(0) { $0 << 8 | UInt32($1) }))
        default: throw error("unsupported wire type \(key & 7) for field \(field)")
        }
    }
}

extension Tokenizer {
    /// Reads a SentencePiece BPE model (`tokenizer.model`, `tokenizer.model.v3`) as the
    /// `tokenizer.json` transformers converts it to (see `SentencePieceModel.huggingFaceJSON`).
    public convenience init(sentencePieceModel url: URL, legacy: Bool = false, config: TokenizerConfig? = nil) throws {
        let model = try SentencePieceModel(url: url)
        var config = config ?? TokenizerConfig()
        config.bosToken = config.bosToken ?? (model.bosID >= 0 ? model.pieces[model.bosID].piece : nil)
        config.eosToken = config.eosToken ?? (model.eosID >= 0 ? model.pieces[model.eosID].piece : nil)
        config.unknownToken = config.unknownToken ?? model.unknownPiece
        try self.init(bytes: model.huggingFaceJSON(legacy: legacy), file: url.path, config: config)
    }
}
