import Foundation

/// `tokenizer_config.json` (and `special_tokens_map.json`): special tokens, whether to add BOS
/// and EOS, padding side and length limit.
public struct TokenizerConfig: Sendable {
    public var bosToken: String?
    public var eosToken: String?
    public var padToken: String?
    public var unknownToken: String?
    /// `add_bos_token` / `add_eos_token` when the file sets them.
    public var addBOSToken: Bool?
    public var addEOSToken: Bool?
    public var paddingSide: PaddingSide?
    public var modelMaxLength: Int?
    /// `legacy` (Llama-style SentencePiece conversions), when the file sets it.
    public var legacy: Bool?
    /// `chat_template`, when it is a single template string.
    public var chatTemplate: String?
    /// The file the values came from, for errors.
    public var file = "tokenizer_config.json"

    public init() {}

    /// Reads `special_tokens_map.json`, then `tokenizer_config.json` over it; both optional.
    public init(directory: URL) throws {
        self.init()
        for name in ["special_tokens_map.json", "tokenizer_config.json"] {
            let url = directory.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            let reader = JSONReader(try JSON.parse(try Tokenizer.read(url), file: url.path), file: url.path, path: "")
            _ = try reader.fields()
            file = url.path
            bosToken = try Self.token(reader, "bos_token") ?? bosToken
            eosToken = try Self.token(reader, "eos_token") ?? eosToken
            padToken = try Self.token(reader, "pad_token") ?? padToken
            unknownToken = try Self.token(reader, "unk_token") ?? unknownToken
            if let flag = reader.optional("add_bos_token"), !flag.isNull { addBOSToken = try flag.bool() }
            if let flag = reader.optional("add_eos_token"), !flag.isNull { addEOSToken = try flag.bool() }
            if let flag = reader.optional("legacy"), !flag.isNull { legacy = try flag.bool() }
            if let side = try reader.string("padding_side") {
                guard let parsed = PaddingSide(rawValue: side) else {
                    throw TokenizerError.invalidField(file: url.path, path: "padding_side", reason: "expected \"left\" or \"right\", got \(side.debugDescription)")
                }
                paddingSide = parsed
            }
            if let length = reader.optional("model_max_length"), !length.isNull {
                // transformers writes 1e30 for "no limit".
                let value = try length.double()
                modelMaxLength = value >= 0 && value < 9e15 ? Int(value) : nil
            }
            if case let .string(template)? = reader.optional("chat_template")?.value { chatTemplate = template }
        }
    }

    /// A token given as a string or as an AddedToken object `{"content": …}`.
    private static func token(_ reader: JSONReader, _ key: String) throws -> String? {
        guard let field = reader.optional(key), !field.isNull else { return nil }
        if case let .string(text) = field.value { return text }
        return try field.required("content").string()
    }
}
