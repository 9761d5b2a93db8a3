import Foundation

/// The ids of one encoded text and the token strings they stand for.
public struct Encoding: Sendable, Equatable {
    public var ids: [Int]
    public var tokens: [String]
}

/// Several texts padded to one length: `inputIDs` and the `attentionMask` (0 on padding).
public struct BatchEncoding: Sendable, Equatable {
    public var inputIDs: [[Int]]
    public var attentionMask: [[Int]]

    public init(inputIDs: [[Int]], attentionMask: [[Int]]) {
        self.inputIDs = inputIDs
        self.attentionMask = attentionMask
    }

    /// Rows of ids padded with `pad` to the longest, on `side`, with their masks (0 on padding).
    public init(padding rows: [[Int]], with pad: Int, side: PaddingSide = .left) {
        let length = rows.map(\.count).max() ?? 0
        self.init(inputIDs: [], attentionMask: [])
        for ids in rows {
            let padding = [Int](repeating: pad, count: length - ids.count)
            let mask = [Int](repeating: 1, count: ids.count)
            let zeros = [Int](repeating: 0, count: length - ids.count)
            inputIDs.append(side == .left ? padding + ids : ids + padding)
            attentionMask.append(side == .left ? zeros + mask : mask + zeros)
        }
    }
}

public enum PaddingSide: String, Sendable {
    case left, right
}

/// A Hugging Face tokenizer (`tokenizer.json`), with `tokenizer_config.json` and
/// `special_tokens_map.json` when present: text → ids → text as the `tokenizers` library does.
public final class Tokenizer: Sendable {
    public let config: TokenizerConfig
    public let addedTokens: [AddedToken]
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let model: BPEModel
    let postProcessor: PostProcessor?
    let decoder: Decoder?
    private let rawMatcher: AddedTokenMatcher
    private let normalizedMatcher: AddedTokenMatcher
    private let addedByID: [Int: AddedToken]
    private let addedByContent: [String: AddedToken]
    /// Ids of added tokens marked special (skipped by `skipSpecialTokens`).
    private let specialIDs: Set<Int>
    public let vocabularySize: Int

    /// Loads a tokenizer folder (`tokenizer.json`, or else a SentencePiece `tokenizer.model` or
    /// `tokenizer.model.v3`, and the optional config files) or one of those files.
    public convenience init(url: URL) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw TokenizerError.cannotRead(file: url.path, reason: "no such file or folder")
        }
        let directory = isDirectory.boolValue ? url : url.deletingLastPathComponent()
        let file = isDirectory.boolValue ? (Self.file(in: directory) ?? url.appendingPathComponent("tokenizer.json")) : url
        let config = try TokenizerConfig(directory: directory)
        if file.lastPathComponent.hasSuffix(".model") || file.lastPathComponent.hasSuffix(".model.v3") {
            // tokenizer_config.json's `legacy` when it says; otherwise the non-legacy form, the
            // one transformers' Mamba-2 tests load Codestral's tokenizer with.
            try self.init(sentencePieceModel: file, legacy: config.legacy ?? false, config: config)
        } else {
            try self.init(bytes: try Self.read(file), file: file.path, config: config)
        }
    }

    /// The tokenizer file of a model folder: `tokenizer.json`, else a SentencePiece model.
    public static func file(in directory: URL) -> URL? {
        ["tokenizer.json", "tokenizer.model", "tokenizer.model.v3"].lazy
            .map { directory.appendingPathComponent($0) }
            .first { FileManager.default.fileExists(atPath: $0.path) }
    }

    /// Parses tokenizer.json bytes; `file` names the source in errors.
    public init(bytes: [UInt8], file: String = "tokenizer.json", config: TokenizerConfig = TokenizerConfig()) throws {
        let root = JSONReader(try JSON.parse(bytes, file: file), file: file, path: "")
        _ = try root.fields()
        self.config = config

        let modelReader = try root.required("model")
        let modelType = try modelReader.string("type") ?? (modelReader.optional("merges") != nil ? "BPE" : "")
        guard modelType == "BPE" else {
            throw TokenizerError.unknownType(file: file, path: "model", type: modelType.isEmpty ? "(missing)" : modelType)
        }
        model = try BPEModel(modelReader)
        normalizer = try root.optional("normalizer").flatMap { $0.isNull ? nil : try Normalizer($0) }
        preTokenizer = try root.optional("pre_tokenizer").flatMap { $0.isNull ? nil : try PreTokenizer($0) }
        decoder = try root.optional("decoder").flatMap { $0.isNull ? nil : try Decoder($0) }
        addedTokens = try root.optional("added_tokens").map { try $0.isNull ? [] : $0.array().map(AddedToken.init) } ?? []
        addedByID = Dictionary(addedTokens.map { ($0.id, $0) }, uniquingKeysWith: { _, last in last })
        addedByContent = Dictionary(addedTokens.map { ($0.content, $0) }, uniquingKeysWith: { _, last in last })
        specialIDs = Set(addedTokens.filter(\.special).map(\.id))
        vocabularySize = max(model.vocabularySize, (addedTokens.map(\.id).max() ?? -1) + 1)
        let raw = addedTokens.filter { !$0.normalized }
        let normalized = addedTokens.filter(\.normalized)
        rawMatcher = AddedTokenMatcher(tokens: raw, patterns: raw.map(\.content))
        normalizedMatcher = AddedTokenMatcher(tokens: normalized, patterns: normalized.map { [normalizer] in normalizer?.normalize($0.content) ?? $0.content })

        var processor = try root.optional("post_processor").flatMap { $0.isNull ? nil : try PostProcessor($0) }
        // transformers rebuilds the template from `add_bos_token` / `add_eos_token` when a
        // tokenizer_config.json sets them (LlamaTokenizerFast.update_post_processor).
        if config.addBOSToken != nil || config.addEOSToken != nil {
            var pieces: [PostProcessor.TemplatePiece] = []
            let (vocabulary, added) = (model.vocabulary, addedByContent)
            func special(_ token: String?, _ field: String) throws -> PostProcessor.TemplatePiece {
                guard let token, let id = added[token]?.id ?? vocabulary.value(token).map(Int.init) else {
                    throw TokenizerError.invalidField(file: config.file, path: field, reason: "set, but its token \(token.map(\.debugDescription) ?? "(none)") is not in the vocabulary")
                }
                return .special(ids: [id], tokens: [token])
            }
            if config.addBOSToken == true { pieces.append(try special(config.bosToken, "bos_token")) }
            pieces.append(.sequence)
            if config.addEOSToken == true { pieces.append(try special(config.eosToken, "eos_token")) }
            processor = .template(pieces)
        }
        postProcessor = processor
    }

    static func read(_ url: URL) throws -> [UInt8] {
        do {
            return Array(try Data(contentsOf: url))
        } catch {
            throw TokenizerError.cannotRead(file: url.path, reason: error.localizedDescription)
        }
    }

    // MARK: Vocabulary

    /// The id of a token string (added tokens first, then the model's vocabulary).
    public func id(for token: String) -> Int? {
        addedByContent[token]?.id ?? model.vocabulary.value(token).map(Int.init)
    }

    /// The token string of an id.
    public func token(for id: Int) -> String? {
        if let added = addedByID[id] { return added.content }
        guard id >= 0, id < model.tokens.count else { return nil }
        return model.tokens[id]
    }

    public var bosTokenID: Int? { config.bosToken.flatMap(id(for:)) }
    public var eosTokenID: Int? { config.eosToken.flatMap(id(for:)) }
    public var padTokenID: Int? { config.padToken.flatMap(id(for:)) }
    public var unknownTokenID: Int? { (config.unknownToken ?? model.unknownToken).flatMap(id(for:)) }

    public func isSpecial(_ id: Int) -> Bool { specialIDs.contains(id) }

    // MARK: Encoding

    /// Text → ids: added tokens, normalizer, pre-tokenizer, BPE, and (when
    /// `addSpecialTokens`) the post-processor's special tokens.
    public func encode(_ text: String, addSpecialTokens: Bool = true) throws -> Encoding {
        var ids: [Int] = []
        var tokens: [String] = []
        var first = true
        for segment in rawMatcher.split(text) {
            switch segment {
            case let .token(token, covered):
                ids.append(token.id)
                tokens.append(covered)
            case let .text(piece):
                let isFirst = first && text.utf8.starts(with: piece.utf8)
                let normalized = normalizer?.normalize(piece) ?? piece
                var firstInPiece = isFirst
                for inner in normalizedMatcher.split(normalized) {
                    switch inner {
                    case let .token(token, covered):
                        ids.append(token.id)
                        tokens.append(covered)
                    case let .text(part):
                        let startsPiece = firstInPiece && normalized.utf8.starts(with: part.utf8)
                        let pieces = preTokenizer?.preTokenize([PreToken(text: part, isFirst: startsPiece)]) ?? [PreToken(text: part, isFirst: startsPiece)]
                        for pre in pieces where !pre.text.isEmpty {
                            for id in try model.tokenize(pre.text) {
                                ids.append(Int(id))
                                tokens.append(model.tokens[Int(id)] ?? "")
                            }
                        }
                    }
                    firstInPiece = false
                }
            }
            first = false
        }
        if addSpecialTokens, let postProcessor {
            (ids, tokens) = postProcessor.process(ids: ids, tokens: tokens)
        }
        return Encoding(ids: ids, tokens: tokens)
    }

    /// Several texts, padded to the longest with the pad token (left by default, as generation
    /// needs), with their attention masks.
    public func callAsFunction(_ texts: [String], addSpecialTokens: Bool = true, padding side: PaddingSide = .left) throws -> BatchEncoding {
        let encodings = try texts.map { try encode($0, addSpecialTokens: addSpecialTokens).ids }
        let length = encodings.map(\.count).max() ?? 0
        guard encodings.allSatisfy({ $0.count == length }) || padTokenID != nil else {
            throw TokenizerError.invalidArgument("padding needs a pad token, and this tokenizer has none")
        }
        return BatchEncoding(padding: encodings, with: padTokenID ?? 0, side: side)
    }

    // MARK: Decoding

    /// Ids → text through the decoder. An id outside the vocabulary is an error, or, with
    /// `skipUnknownIDs` (as HF tokenizers always does), left out: a model's embedding is often
    /// padded past its tokenizer (50288 rows for 50277 tokens), and generation may pick such ids.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false, skipUnknownIDs: Bool = false) throws -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard let token = token(for: id) else {
                if skipUnknownIDs { continue }
                throw TokenizerError.idOutOfRange(id: id, vocabularySize: vocabularySize)
            }
            if skipSpecialTokens && specialIDs.contains(id) { continue }
            tokens.append(token)
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decode(tokens)
    }

    /// An incremental decoder that yields text as ids arrive, never a broken character.
    public func streamingDecoder(skipSpecialTokens: Bool = false, skipUnknownIDs: Bool = false) -> StreamingDecoder {
        StreamingDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens, skipUnknownIDs: skipUnknownIDs)
    }
}

/// Turns ids into text one at a time (tokenizers' `DecodeStream`): each step decodes the ids
/// since a stable prefix and yields only the new text, holding back anything that still ends in
/// an incomplete character (U+FFFD).
public struct StreamingDecoder: Sendable {
    let tokenizer: Tokenizer
    let skipSpecialTokens: Bool
    let skipUnknownIDs: Bool
    private var ids: [Int] = []
    private var prefix = ""
    private var prefixIndex = 0

    init(tokenizer: Tokenizer, skipSpecialTokens: Bool, skipUnknownIDs: Bool) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
        self.skipUnknownIDs = skipUnknownIDs
    }

    private func decode(_ ids: [Int]) throws -> String {
        try tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens, skipUnknownIDs: skipUnknownIDs)
    }

    /// Adds one id; returns the text it completes, or nil while a character is incomplete.
    public mutating func step(_ id: Int) throws -> String? {
        if prefix.isEmpty && !ids.isEmpty {
            let newPrefix = try decode(ids)
            if !newPrefix.hasSuffix("\u{FFFD}") {
                prefix = newPrefix
                prefixIndex = ids.count
            }
        }
        ids.append(id)
        let text = try decode(ids)
        guard text.utf8.count > prefix.utf8.count, !text.unicodeScalars.last.map({ $0 == "\u{FFFD}" })! else { return nil }
        guard text.utf8.starts(with: prefix.utf8) else {
            // The decoder rewrote text already yielded; tokenizers' DecodeStream fails the same way.
            throw TokenizerError.invalidArgument("streaming decode: id \(id) changed text already yielded (\(prefix.debugDescription) became \(text.debugDescription))")
        }
        let newText = String(decoding: Array(text.utf8).dropFirst(prefix.utf8.count), as: UTF8.self)
        let newPrefixIndex = ids.count - prefixIndex
        ids = Array(ids[prefixIndex...])
        prefix = try decode(ids)
        prefixIndex = newPrefixIndex
        return newText
    }

    /// The text still held back at the end of the stream (e.g. a sequence that really ends in
    /// U+FFFD, or bytes of an unfinished character), or nil when there is none.
    public mutating func finish() throws -> String? {
        guard !ids.isEmpty else { return nil }
        let text = try decode(ids)
        defer { ids = []; prefix = ""; prefixIndex = 0 }
        guard text.utf8.count > prefix.utf8.count, text.utf8.starts(with: prefix.utf8) else { return nil }
        return String(decoding: Array(text.utf8).dropFirst(prefix.utf8.count), as: UTF8.self)
    }
}
