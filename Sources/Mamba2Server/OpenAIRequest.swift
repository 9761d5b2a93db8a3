import Foundation
import Generation
import Mamba2

/// An error answered in OpenAI's form: `{"error": {"message", "type", "param", "code"}}`.
struct APIError: Error {
    let status: Int
    let message: String
    let type: String
    let param: String?
    let code: String?

    static func invalid(_ message: String, param: String? = nil) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: param, code: nil)
    }
}

/// A request body's JSON, read strictly: a number is never a boolean, and every field's type is
/// checked against what the endpoint expects.
typealias RequestJSON = JSONValue

extension JSONValue {
    /// Deepest nesting a request may have: deep enough for any completions request, shallow
    /// enough that decoding it recursively cannot exhaust a thread's stack.
    static let maxDepth = 32

    static func parseObject(_ bytes: [UInt8]) throws -> [String: RequestJSON] {
        var (depth, inString, escaped) = (0, false, false)
        for byte in bytes {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
            } else if byte == UInt8(ascii: "[") || byte == UInt8(ascii: "{") {
                depth += 1
                guard depth <= maxDepth else { throw APIError.invalid("the request body nests deeper than \(maxDepth) levels") }
            } else if byte == UInt8(ascii: "]") || byte == UInt8(ascii: "}") {
                depth -= 1
            }
        }
        let value: RequestJSON
        do {
            value = try JSONDecoder().decode(RequestJSON.self, from: Data(bytes))
        } catch {
            throw APIError.invalid("the request body is not valid JSON")
        }
        guard case let .object(fields) = value else { throw APIError.invalid("the request body must be a JSON object") }
        return fields
    }

    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

}

/// What the server may not exceed, set on the command line.
public struct RequestLimits: Sendable {
    /// The longest prompt, in tokens.
    public var maxPromptTokens: Int
    /// The largest `max_tokens` a request may ask for.
    public var maxNewTokens: Int
    /// The most prompts in one request.
    public var maxPrompts: Int

    public init(maxPromptTokens: Int = 8192, maxNewTokens: Int = 4096, maxPrompts: Int = 16) {
        self.maxPromptTokens = maxPromptTokens
        self.maxNewTokens = maxNewTokens
        self.maxPrompts = maxPrompts
    }
}

/// A validated `POST /v1/completions` body.
struct CompletionRequest {
    enum Prompt {
        case text(String)
        case tokens([Int])
    }

    var model: String?
    var prompts: [Prompt]
    var stream = false
    var includeUsageInStream = false
    /// `max_tokens` and the sampling fields over the model's generation config.
    var config: GenerationConfig

    /// The fields OpenAI's completions API defines that this server accepts only at their
    /// neutral value, with that value.
    private static let neutralFields: Set<String> = ["echo", "logprobs", "best_of", "suffix", "presence_penalty", "frequency_penalty", "logit_bias"]

    /// Reads and checks the body; `defaults` is the model folder's generation config.
    init(_ fields: [String: RequestJSON], defaults: GenerationConfig, limits: RequestLimits) throws {
        let known: Set<String> = [
            "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "stop", "seed", "n",
            "stream", "stream_options", "user",
        ]
        let accepted = known.union(Self.neutralFields)
        if let unknown = fields.keys.sorted().first(where: { !accepted.contains($0) }) {
            throw APIError.invalid("unknown field '\(unknown)'", param: unknown)
        }
        func value(_ key: String) -> RequestJSON? {
            guard let value = fields[key], value != .null else { return nil }
            return value
        }
        func wrongType(_ key: String, _ expected: String) -> APIError {
            .invalid("'\(key)' must be \(expected), got \(fields[key]!.typeName)", param: key)
        }
        func number(_ key: String, in range: ClosedRange<Double>, _ description: String) throws -> Double? {
            guard let field = value(key) else { return nil }
            guard case let .number(number) = field else { throw wrongType(key, "a number") }
            guard range.contains(number) else { throw APIError.invalid("'\(key)' must be \(description), got \(number)", param: key) }
            return number
        }
        func integer(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
            guard let field = value(key) else { return nil }
            guard let integer = field.int else { throw wrongType(key, "an integer") }
            guard range.contains(integer) else {
                throw APIError.invalid("'\(key)' must be between \(range.lowerBound) and \(range.upperBound), got \(integer)", param: key)
            }
            return integer
        }
        func bool(_ key: String) throws -> Bool? {
            guard let field = value(key) else { return nil }
            guard case let .bool(flag) = field else { throw wrongType(key, "true or false") }
            return flag
        }

        if let field = value("model") {
            guard case let .string(name) = field else { throw wrongType("model", "a string") }
            model = name
        }
        prompts = try Self.prompts(fields["prompt"], limit: limits.maxPrompts)
        stream = try bool("stream") ?? false
        if let field = value("stream_options") {
            guard case let .object(options) = field else { throw wrongType("stream_options", "an object") }
            guard stream else { throw APIError.invalid("'stream_options' is only allowed with \"stream\": true", param: "stream_options") }
            if let unknown = options.keys.sorted().first(where: { $0 != "include_usage" }) {
                throw APIError.invalid("unknown field 'stream_options.\(unknown)'", param: "stream_options.\(unknown)")
            }
            if let include = options["include_usage"], include != .null {
                guard case let .bool(flag) = include else { throw APIError.invalid("'stream_options.include_usage' must be true or false", param: "stream_options.include_usage") }
                includeUsageInStream = flag
            }
        }
        if let n = try integer("n", in: Int.min...Int.max), n != 1 {
            throw APIError.invalid("only n = 1 is supported, got \(n)", param: "n")
        }
        if let field = value("user") {
            guard case .string = field else { throw wrongType("user", "a string") }
        }
        try Self.checkNeutral(fields)

        // OpenAI's default budget for completions is 16 tokens.
        var config = defaults
        config.maxNewTokens = try integer("max_tokens", in: 1...limits.maxNewTokens) ?? 16
        if let temperature = try number("temperature", in: 0...2, "between 0 and 2") {
            // Temperature 0 means greedy decoding, as in OpenAI's API; so does one too small to
            // divide the scores by without overflowing them.
            config.doSample = temperature >= 1e-5
            config.temperature = config.doSample ? Float(temperature) : 1
        }
        if let topP = try number("top_p", in: 0...1, "between 0 and 1") {
            guard topP > 0 else { throw APIError.invalid("'top_p' must be greater than 0", param: "top_p") }
            config.topP = Float(topP)
        }
        if let topK = try integer("top_k", in: 0...Int(Int32.max)) { config.topK = topK }
        if let minP = try number("min_p", in: 0...1, "between 0 and 1") { config.minP = Float(minP) }
        if let penalty = try number("repetition_penalty", in: 0...100, "between 0 and 100") {
            guard penalty > 0 else { throw APIError.invalid("'repetition_penalty' must be greater than 0", param: "repetition_penalty") }
            config.repetitionPenalty = Float(penalty)
        }
        if let seed = try integer("seed", in: 0...Int.max) { config.seed = UInt64(seed) }
        config.stopStrings = try Self.stops(value("stop"))
        self.config = config
    }

    private static func prompts(_ field: RequestJSON?, limit: Int) throws -> [Prompt] {
        let invalid = APIError.invalid("'prompt' must be a string, an array of strings, an array of token ids or an array of such arrays", param: "prompt")
        guard let field, field != .null else { throw APIError.invalid("'prompt' is required", param: "prompt") }
        func tokens(_ items: [RequestJSON]) throws -> [Int] {
            try items.map { item in
                guard let id = item.int else { throw invalid }
                return id
            }
        }
        let prompts: [Prompt]
        switch field {
        case let .string(text):
            prompts = [.text(text)]
        case let .array(items) where items.isEmpty:
            throw APIError.invalid("'prompt' must not be an empty array", param: "prompt")
        case let .array(items):
            switch items[0] {
            case .string:
                prompts = try items.map { item in
                    guard case let .string(text) = item else { throw invalid }
                    return .text(text)
                }
            case .number:
                prompts = [.tokens(try tokens(items))]
            case .array:
                prompts = try items.map { item in
                    guard case let .array(ids) = item else { throw invalid }
                    return .tokens(try tokens(ids))
                }
            default:
                throw invalid
            }
        default:
            throw invalid
        }
        guard prompts.count <= limit else {
            throw APIError.invalid("at most \(limit) prompts per request, got \(prompts.count)", param: "prompt")
        }
        return prompts
    }

    private static func stops(_ field: RequestJSON?) throws -> [String] {
        let stops: [String]
        switch field {
        case nil:
            return []
        case let .string(text)?:
            stops = [text]
        case let .array(items)?:
            stops = try items.map { item in
                guard case let .string(text) = item else { throw APIError.invalid("'stop' must be a string or an array of strings", param: "stop") }
                return text
            }
        default:
            throw APIError.invalid("'stop' must be a string or an array of strings", param: "stop")
        }
        guard stops.count <= 4 else { throw APIError.invalid("at most 4 stop sequences, got \(stops.count)", param: "stop") }
        guard !stops.contains("") else { throw APIError.invalid("a stop sequence must not be empty", param: "stop") }
        guard stops.allSatisfy({ $0.utf8.count <= 1024 }) else { throw APIError.invalid("a stop sequence must be at most 1024 bytes", param: "stop") }
        return stops
    }

    /// Accepts OpenAI fields this server does not implement only at their neutral values, so a
    /// request never silently gets less than it asked for.
    private static func checkNeutral(_ fields: [String: RequestJSON]) throws {
        for key in neutralFields.sorted() {
            guard let value = fields[key], value != .null else { continue }
            let neutral: Bool
            switch key {
            case "echo": neutral = value == .bool(false)
            case "best_of": neutral = value.int == 1
            case "presence_penalty", "frequency_penalty": neutral = value == .number(0)
            case "logit_bias": neutral = value == .object([:])
            default: neutral = false
            }
            guard neutral else { throw APIError.invalid("'\(key)' is not supported by this server", param: key) }
        }
    }
}
