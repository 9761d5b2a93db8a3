/// Response bodies in OpenAI's format (snake_case keys, `null` where OpenAI sends `null`).

struct ChunkHeader: Sendable {
    let id: String
    let created: Int
    let model: String
}

struct Usage: Encodable, Sendable {
    var promptTokens = 0
    var completionTokens = 0
    var totalTokens: Int { promptTokens + completionTokens }

    mutating func add(prompt: Int, completion: Int) {
        promptTokens += prompt
        completionTokens += completion
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case totalTokens = "total_tokens"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(promptTokens, forKey: .promptTokens)
        try container.encode(completionTokens, forKey: .completionTokens)
        try container.encode(totalTokens, forKey: .totalTokens)
    }
}

struct Choice: Encodable {
    let text: String
    let index: Int
    /// `stop`, `length`, or null in a streamed chunk that does not end the choice.
    let finishReason: String?

    enum CodingKeys: String, CodingKey {
        case text, index, logprobs
        case finishReason = "finish_reason"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(text, forKey: .text)
        try container.encode(index, forKey: .index)
        try container.encodeNil(forKey: .logprobs)
        try container.encode(finishReason, forKey: .finishReason)
    }
}

/// `text_completion`: a whole completion, or (with `usage` nil) one streamed chunk.
struct Completion: Encodable {
    let header: ChunkHeader
    let choices: [Choice]
    let usage: Usage?

    enum CodingKeys: String, CodingKey {
        case id, object, created, model, choices, usage
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(header.id, forKey: .id)
        try container.encode("text_completion", forKey: .object)
        try container.encode(header.created, forKey: .created)
        try container.encode(header.model, forKey: .model)
        try container.encode(choices, forKey: .choices)
        try container.encodeIfPresent(usage, forKey: .usage)
    }
}

/// A streamed chunk: choices with their new text, or (last, when asked for) no choices and
/// the usage of the whole request.
typealias StreamChunk = Completion

extension Completion {
    init(header: ChunkHeader, choices: [Choice]) {
        self.init(header: header, choices: choices, usage: nil)
    }
}

struct ModelList: Encodable {
    struct Model: Encodable {
        let id: String
        var object = "model"
        var created = 0
        var ownedBy = "swift-mamba2"

        init(id: String) {
            self.id = id
        }

        enum CodingKeys: String, CodingKey {
            case id, object, created
            case ownedBy = "owned_by"
        }
    }

    var object = "list"
    let data: [Model]
}

struct Health: Encodable {
    let status: String
    let running: Int
    let waiting: Int
    let maxBatch: Int
    /// Batched decode steps so far, and the most sequences one step carried.
    let decodeSteps: Int
    let largestBatch: Int

    enum CodingKeys: String, CodingKey {
        case status, running, waiting
        case maxBatch = "max_batch"
        case decodeSteps = "decode_steps"
        case largestBatch = "largest_batch"
    }
}

struct ErrorBody: Encodable {
    let error: APIError

    init(_ error: APIError) {
        self.error = error
    }
}

extension APIError: Encodable {
    enum CodingKeys: String, CodingKey {
        case message, type, param, code
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(message, forKey: .message)
        try container.encode(type, forKey: .type)
        try container.encode(param, forKey: .param)
        try container.encode(code, forKey: .code)
    }
}
