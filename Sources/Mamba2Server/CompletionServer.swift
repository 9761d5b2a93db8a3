import Foundation
import Generation
import Hummingbird
import Logging
import SafeTensors
import ServiceLifecycle
import Tensors
import Tokenizers

/// How `mamba2 serve` listens and what it allows.
public struct ServerOptions: Sendable {
    public var host: String
    /// 0 picks a free port (reported to `run`'s `onListening`).
    public var port: Int
    /// Sequences decoding together in one batched step.
    public var maxBatch: Int
    /// Sequences waiting for a slot before new requests get 429.
    public var maxQueue: Int
    public var limits: RequestLimits
    /// Seconds that running requests get to finish after a shutdown begins.
    public var shutdownGrace: Double
    /// Prompt tokens read between two decode steps (see `ContinuousBatcher.prefillChunk`).
    public var prefillChunk: Int
    /// The name `GET /v1/models` lists and requests may give as `model`.
    public var modelID: String
    /// How each sequence's SSM state is kept: set on the generator's model
    /// (`Mamba2Model.ssmStateDType`), replacing what it had.
    public var ssmStateDType: DType

    public init(
        host: String = "127.0.0.1", port: Int = 8080, maxBatch: Int = 8, maxQueue: Int = 64, limits: RequestLimits = RequestLimits(),
        shutdownGrace: Double = 30, prefillChunk: Int = 256, modelID: String, ssmStateDType: DType = .float32
    ) {
        self.host = host
        self.port = port
        self.maxBatch = maxBatch
        self.maxQueue = maxQueue
        self.limits = limits
        self.shutdownGrace = shutdownGrace
        self.prefillChunk = prefillChunk
        self.modelID = modelID
        self.ssmStateDType = ssmStateDType
    }
}

/// The OpenAI-compatible HTTP server: `POST /v1/completions` (plain or streamed as server-sent
/// events), `POST /v1/chat/completions` (a 400 that says why: no chat template is rendered),
/// `GET /v1/models` and `GET /health`, over one `ContinuousBatcher`.
public final class CompletionServer: Sendable {
    public let options: ServerOptions
    let batcher: ContinuousBatcher
    let tokenizer: Tokenizer
    /// Whether the model folder's tokenizer_config.json carries a `chat_template`.
    let hasChatTemplate: Bool
    private let group = LockedValue<ServiceGroup?>(nil)
    private let shuttingDown = LockedValue(false)

    public init(generator: Generator, hasChatTemplate: Bool, options: ServerOptions) throws {
        guard let tokenizer = generator.tokenizer else {
            throw GenerationError.invalidInput("serving needs a tokenizer (tokenizer.json or a SentencePiece tokenizer.model) in the model folder")
        }
        guard (0...65535).contains(options.port) else {
            throw GenerationError.invalidSetting(name: "port", reason: "must be between 0 and 65535, got \(options.port)")
        }
        guard options.limits.maxPromptTokens >= 1, options.limits.maxNewTokens >= 1, options.limits.maxPrompts >= 1 else {
            throw GenerationError.invalidSetting(name: "limits", reason: "prompt tokens, new tokens and prompts per request must all be ≥ 1")
        }
        guard options.ssmStateDType == .float32 || options.ssmStateDType == .bfloat16 else {
            throw GenerationError.invalidSetting(name: "ssmStateDType", reason: "must be F32 or BF16, got \(options.ssmStateDType.rawValue)")
        }
        // Every request builds on the folder's settings: one the package cannot honour is the
        // server's to refuse, at start, not each client's.
        if let setting = generator.defaults.unsupported.first {
            throw GenerationError.unsupportedSetting(file: setting.file, name: setting.name, value: setting.value)
        }
        var generator = generator
        generator.model.ssmStateDType = options.ssmStateDType
        self.options = options
        self.tokenizer = tokenizer
        self.hasChatTemplate = hasChatTemplate
        batcher = try ContinuousBatcher(generator: generator, maxBatch: options.maxBatch, maxQueue: options.maxQueue, prefillChunk: options.prefillChunk)
    }

    /// Serves a model folder (config, weights, tokenizer.json, optional generation and tokenizer
    /// configs), its weights mapped or read into memory.
    public convenience init(directory: URL, residency: WeightResidency = .mapped, options: ServerOptions) throws {
        let generator = try Generator(directory: directory, residency: residency)
        var hasChatTemplate = false
        let tokenizerConfig = directory.appendingPathComponent("tokenizer_config.json")
        if let data = try? Data(contentsOf: tokenizerConfig),
           let fields = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            hasChatTemplate = fields["chat_template"].map { !($0 is NSNull) } ?? false
        }
        try self.init(generator: generator, hasChatTemplate: hasChatTemplate, options: options)
    }

    /// Listens until `shutdown()`; `onListening` gets the bound port.
    public func run(logger: Logger? = nil, onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        var logger = logger ?? Logger(label: "mamba2.serve")
        if logger.logLevel < .warning { logger.logLevel = .warning }
        let app = Application(
            router: makeRouter(),
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "swift-mamba2"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        let group = ServiceGroup(services: [app], gracefulShutdownSignals: [], cancellationSignals: [], logger: logger)
        self.group.set(group)
        if shuttingDown.get() { return }
        try await group.run()
    }

    var isShuttingDown: Bool { shuttingDown.get() }

    /// Graceful shutdown: new requests get 503, running ones have `shutdownGrace` seconds to
    /// finish (then they end with an error), then the server stops listening and `run` returns.
    public func shutdown() async {
        shuttingDown.set(true)
        await batcher.shutdown(grace: options.shutdownGrace)
        await group.get()?.triggerGracefulShutdown()
    }

    // MARK: Routes

    private func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: OpenAIErrorMiddleware())
        router.get("/health") { _, _ in
            let (running, waiting) = self.batcher.load
            let (steps, largestBatch) = self.batcher.statistics
            let status = self.shuttingDown.get() ? "shutting_down" : "ok"
            let health = Health(
                status: status, running: running, waiting: waiting, maxBatch: self.options.maxBatch, decodeSteps: steps, largestBatch: largestBatch)
            return try Self.json(health, status: status == "ok" ? .ok : .serviceUnavailable)
        }
        router.get("/v1/models") { _, _ in
            try Self.json(ModelList(data: [.init(id: self.options.modelID)]))
        }
        router.get("/v1/models/:model") { _, context in
            let name = context.parameters.get("model") ?? ""
            guard name == self.options.modelID else { throw Self.unknownModel(name, serving: self.options.modelID) }
            return try Self.json(ModelList.Model(id: name))
        }
        router.post("/v1/completions") { request, _ in
            // A client that goes away before its answer is ready cancels the work at once (a
            // streamed answer notices on its next write instead).
            try await request.body.consumeWithCancellationOnInboundClose { body in
                try await self.completions(body: body)
            }
        }
        router.post("/v1/chat/completions") { request, _ -> Response in
            _ = try await request.body.collect(upTo: Self.maxBodyBytes)
            throw APIError.invalid(
                self.hasChatTemplate
                    ? "this model folder has a chat template, but this server does not render chat templates (Jinja); format the conversation yourself and use /v1/completions"
                    : "this model folder has no chat template (tokenizer_config.json has no chat_template), so /v1/chat/completions is not available; use /v1/completions")
        }
        return router
    }

    static let maxBodyBytes = 4 << 20

    static func unknownModel(_ name: String, serving: String) -> APIError {
        APIError(status: 404, message: "the model '\(name)' does not exist; this server serves '\(serving)'", type: "invalid_request_error", param: "model", code: "model_not_found")
    }

    private func completions(body requestBody: RequestBody) async throws -> Response {
        let body = try await requestBody.collect(upTo: Self.maxBodyBytes)
        let fields = try RequestJSON.parseObject(Array(buffer: body))
        let completion = try CompletionRequest(fields, defaults: batcher.generator.defaults, limits: options.limits)
        if let model = completion.model, model != options.modelID { throw Self.unknownModel(model, serving: options.modelID) }
        guard completion.prompts.count <= options.maxBatch + options.maxQueue else {
            throw APIError.invalid(
                "\(completion.prompts.count) prompts can never be admitted together: this server runs \(options.maxBatch) and queues \(options.maxQueue)",
                param: "prompt")
        }
        let prompts = try completion.prompts.enumerated().map { index, prompt in try tokens(of: prompt, index: index, count: completion.prompts.count) }
        guard !shuttingDown.get() else { throw Self.shuttingDownError }
        var streams: [AsyncThrowingStream<BatchedEvent, any Error>] = []
        do {
            for ids in prompts { streams.append(try batcher.submit(BatchedRequest(promptIDs: ids, config: completion.config))) }
        } catch {
            // Streams already made are dropped here, which cancels their sequences.
            throw Self.apiError(for: error)
        }
        let header = ChunkHeader(id: "cmpl-" + UUID().uuidString.lowercased(), created: Int(Date().timeIntervalSince1970), model: options.modelID)
        if completion.stream {
            return streamingResponse(streams, header: header, includeUsage: completion.includeUsageInStream)
        }
        var choices: [Choice] = []
        var usage = Usage()
        for (index, stream) in streams.enumerated() {
            var text = ""
            var reason = FinishReason.length
            do {
                for try await event in stream {
                    switch event {
                    case let .text(piece): text += piece
                    case let .finished(finish, promptTokens, completionTokens):
                        reason = finish
                        usage.add(prompt: promptTokens, completion: completionTokens)
                    }
                }
            } catch {
                throw Self.generationError(error)
            }
            choices.append(Choice(text: text, index: index, finishReason: reason.rawValue))
        }
        return try Self.json(Completion(header: header, choices: choices, usage: usage))
    }

    /// A prompt's token ids, checked against the vocabulary and the prompt limit.
    private func tokens(of prompt: CompletionRequest.Prompt, index: Int, count: Int) throws -> [Int] {
        let name = count == 1 ? "the prompt" : "prompt \(index)"
        let ids: [Int]
        switch prompt {
        case let .text(text):
            // No token is this long on average, so the text is refused before the tokenizer
            // spends time on it.
            let byteLimit = options.limits.maxPromptTokens * 64
            guard text.utf8.count <= byteLimit else {
                throw APIError.invalid("\(name) has \(text.utf8.count) bytes, more than \(byteLimit) (64 per token of this server's limit of \(options.limits.maxPromptTokens) tokens)", param: "prompt")
            }
            ids = try tokenizer.encode(text).ids
        case let .tokens(tokens): ids = tokens
        }
        guard !ids.isEmpty else { throw APIError.invalid("\(name) has no tokens", param: "prompt") }
        guard ids.count <= options.limits.maxPromptTokens else {
            throw APIError.invalid("\(name) has \(ids.count) tokens, more than this server's limit of \(options.limits.maxPromptTokens)", param: "prompt")
        }
        let vocabulary = batcher.generator.model.config.vocabSize
        if let bad = ids.first(where: { !(0..<vocabulary).contains($0) }) {
            throw APIError.invalid("token id \(bad) in \(name) is outside the vocabulary (0..<\(vocabulary))", param: "prompt")
        }
        return ids
    }

    /// Server-sent events: a chunk per text piece, a last chunk per prompt with its finish
    /// reason, optionally a usage chunk, then `data: [DONE]`. A failed write (the client went
    /// away) ends the body, which cancels every sequence of the request at once.
    private func streamingResponse(_ streams: [AsyncThrowingStream<BatchedEvent, any Error>], header: ChunkHeader, includeUsage: Bool) -> Response {
        enum Item: Sendable {
            case event(Int, BatchedEvent)
            case failed(any Error)
            case ended
            case ping
        }
        let body = ResponseBody { writer in
            try await withThrowingTaskGroup(of: Void.self) { group in
                let (items, input) = AsyncStream<Item>.makeStream()
                for (index, stream) in streams.enumerated() {
                    group.addTask {
                        do {
                            for try await event in stream { input.yield(.event(index, event)) }
                        } catch {
                            input.yield(.failed(error))
                        }
                        input.yield(.ended)
                    }
                }
                // A comment line every second: while a request waits for a slot or its prefill,
                // a client that went away is noticed by the failed write.
                group.addTask {
                    while true {
                        try await Task.sleep(for: .seconds(1))
                        input.yield(.ping)
                    }
                }
                var open = streams.count
                var usage = Usage()
                for await item in items {
                    switch item {
                    case .ping:
                        try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    case let .event(index, .text(piece)):
                        try await writer.write(Self.event(StreamChunk(header: header, choices: [.init(text: piece, index: index, finishReason: nil)])))
                    case let .event(index, .finished(reason, promptTokens, completionTokens)):
                        usage.add(prompt: promptTokens, completion: completionTokens)
                        try await writer.write(Self.event(StreamChunk(header: header, choices: [.init(text: "", index: index, finishReason: reason.rawValue)])))
                    case let .failed(error):
                        try await writer.write(Self.event(ErrorBody(Self.generationError(error))))
                        group.cancelAll()
                        try await writer.finish(nil)
                        return
                    case .ended:
                        open -= 1
                    }
                    if open == 0 { break }
                }
                group.cancelAll()
                // Cancelled before every prompt ended: no `[DONE]` for an unfinished answer.
                guard open == 0 else { throw CancellationError() }
                if includeUsage { try await writer.write(Self.event(StreamChunk(header: header, choices: [], usage: usage))) }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            }
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: body)
    }

    // MARK: Encoding

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    static func event(_ value: some Encodable) throws -> ByteBuffer {
        var buffer = ByteBuffer(string: "data: ")
        buffer.writeBytes(try encoder.encode(value))
        buffer.writeString("\n\n")
        return buffer
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static let shuttingDownError = APIError(status: 503, message: BatcherError.shuttingDown.description, type: "service_unavailable_error", param: nil, code: "shutting_down")

    /// An error that ended a running request: the server's fault (500) unless it shut down.
    static func generationError(_ error: any Error) -> APIError {
        switch error {
        case BatcherError.cancelledByShutdown, BatcherError.shuttingDown: apiError(for: error)
        default: APIError(status: 500, message: "generation failed: \(error)", type: "server_error", param: nil, code: nil)
        }
    }

    static func apiError(for error: any Error) -> APIError {
        switch error {
        case let error as APIError: error
        case let BatcherError.queueFull(limit):
            APIError(status: 429, message: BatcherError.queueFull(limit: limit).description, type: "server_busy_error", param: nil, code: "queue_full")
        case BatcherError.shuttingDown: shuttingDownError
        case BatcherError.cancelledByShutdown:
            APIError(status: 503, message: BatcherError.cancelledByShutdown.description, type: "service_unavailable_error", param: nil, code: "shutting_down")
        case let error as GenerationError: APIError.invalid(error.description)
        case let error as TokenizerError: APIError.invalid("the prompt could not be tokenized: \(error)", param: "prompt")
        default: APIError(status: 500, message: "internal error: \(error)", type: "server_error", param: nil, code: nil)
        }
    }
}

/// Turns every error, the router's own 404s and body-size limits included, into OpenAI's error
/// body.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError {
            let status = Int(error.status.code)
            let message = error.body ?? (status == 404 ? "no such endpoint: \(request.method) \(request.uri.path)" : error.status.reasonPhrase)
            return try Self.response(APIError(status: status, message: message, type: "invalid_request_error", param: nil, code: nil))
        } catch let error as any HTTPResponseError {
            let status = Int(error.status.code)
            return try Self.response(APIError(status: status, message: error.status.reasonPhrase, type: "invalid_request_error", param: nil, code: nil))
        } catch {
            return try Self.response(CompletionServer.apiError(for: error))
        }
    }

    static func response(_ error: APIError) throws -> Response {
        var response = try CompletionServer.json(ErrorBody(error), status: HTTPResponse.Status(code: error.status))
        if error.status == 429 || error.status == 503 { response.headers[.retryAfter] = "1" }
        return response
    }
}

/// A value shared between tasks and threads under a lock.
final class LockedValue<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    func get() -> Value {
        lock.withLock { value }
    }

    func set(_ newValue: Value) {
        lock.withLock { value = newValue }
    }
}
