import Foundation
import Mamba2
import SafeTensors
import Tensors
import Tokenizers

/// Where a batch of sequences stands: the recurrent state after every consumed token, the scores
/// for each row's next token, and each row's real tokens so far (for the repetition penalty).
public struct GenerationSession: Sendable {
    public var state: Mamba2State
    /// `[b, v]` scores of the next token, valid when `pending` is nil.
    public var nextLogits: Tensor
    /// `[b][...]` real tokens consumed per row (padding excluded).
    public var history: [[Int]]
    /// One token per row chosen but not yet fed through the model.
    public var pending: [Int]?

    public var batchSize: Int { history.count }
}

public enum FinishReason: String, Sendable {
    /// An end-of-sequence token or a stop string.
    case stop
    /// The token budget ran out.
    case length
}

public struct GenerationResult: Sendable {
    /// New tokens per row, up to and including the token that stopped it.
    public var tokens: [[Int]]
    public var finishReasons: [FinishReason]
    /// Real prompt tokens prefilled (0 when continuing a session).
    public var promptTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    /// The session after these tokens, to continue from or save.
    public var session: GenerationSession

    public var generatedTokens: Int { tokens.map(\.count).reduce(0, +) }
    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(generatedTokens) / decodeSeconds : 0 }
}

/// Streamed generation: text as it forms, then the result.
public enum GenerationEvent: Sendable {
    case text(row: Int, String)
    case finished(GenerationResult)
}

/// transformers' `generate` for Mamba-2: prefill the prompt in one pass through the state, then
/// decode one token at a time; greedy or sampled; rows of a left-padded batch finish on their own.
public struct Generator: Sendable {
    public var model: Mamba2ForCausalLM
    public let tokenizer: Tokenizer?
    /// The model folder's `generation_config.json`, or transformers' defaults.
    public let defaults: GenerationConfig

    public init(model: Mamba2ForCausalLM, tokenizer: Tokenizer? = nil, defaults: GenerationConfig? = nil) {
        self.model = model
        self.tokenizer = tokenizer
        var defaults = defaults ?? GenerationConfig()
        if defaults.eosTokenIDs == nil { defaults.eosTokenIDs = model.config.eosTokenIDs }
        if defaults.padTokenID == nil { defaults.padTokenID = model.config.padTokenID }
        self.defaults = defaults
    }

    /// Loads a model folder with its tokenizer (when it has one) and generation config.
    public init(directory: URL, residency: WeightResidency = .mapped) throws {
        let model = try Mamba2ForCausalLM(directory: directory, residency: residency)
        let tokenizer = Tokenizer.file(in: directory) != nil ? try Tokenizer(url: directory) : nil
        self.init(model: model, tokenizer: tokenizer, defaults: try GenerationConfig(directory: directory))
    }

    // MARK: Sessions

    /// Runs the prompts through the model in one pass. Rows are left-padded to one length;
    /// `attentionMask` marks the padding (0).
    public func prefill(_ inputIDs: [[Int]], attentionMask: [[Int]]? = nil) throws -> GenerationSession {
        let output = try model(.tokenIDs(inputIDs), attentionMask: attentionMask, useCache: true, logitsToKeep: 1)
        let history = inputIDs.enumerated().map { row, ids in
            attentionMask.map { mask in zip(ids, mask[row]).filter { $0.1 == 1 }.map(\.0) } ?? ids
        }
        return GenerationSession(state: output.state!, nextLogits: Self.lastPosition(output.logits), history: history, pending: nil)
    }

    /// Feeds more tokens (the same number per row) after a session, e.g. the next user turn.
    public func extend(_ session: GenerationSession, with ids: [[Int]]) throws -> GenerationSession {
        guard ids.count == session.batchSize else {
            throw GenerationError.invalidInput("continuing a session of \(session.batchSize) rows with \(ids.count) rows")
        }
        var session = try settle(session)
        let length = ids.first?.count ?? 0
        guard ids.allSatisfy({ $0.count == length }) else {
            throw GenerationError.invalidInput("a continuation must add the same number of tokens to every row")
        }
        guard length > 0 else { return session }
        let output = try model(.tokenIDs(ids), updating: &session.state, logitsToKeep: 1)
        session.nextLogits = Self.lastPosition(output.logits)
        for row in ids.indices { session.history[row] += ids[row] }
        return session
    }

    /// Feeds the pending tokens, if any, so the state and next-token scores are current.
    public func settle(_ session: GenerationSession) throws -> GenerationSession {
        guard let pending = session.pending else { return session }
        var session = session
        let output = try model(.tokenIDs(pending.map { [$0] }), updating: &session.state)
        session.nextLogits = Self.lastPosition(output.logits)
        session.pending = nil
        return session
    }

    static func lastPosition(_ logits: Tensor) -> Tensor {
        let (b, l, v) = (logits.shape[0], logits.shape[1], logits.shape[2])
        var scalars: [Float] = []
        scalars.reserveCapacity(b * v)
        for row in 0..<b { scalars += logits.scalars[((row * l + l - 1) * v)..<((row * l + l) * v)] }
        return Tensor(shape: [b, v], scalars: scalars)
    }

    // MARK: Generation

    /// Prefills `inputIDs` and generates after them.
    public func generate(
        _ inputIDs: [[Int]], attentionMask: [[Int]]? = nil, config: GenerationConfig? = nil,
        onToken: (_ row: Int, _ token: Int) throws -> Void = { _, _ in }
    ) throws -> GenerationResult {
        let config = config ?? defaults
        let promptLength = inputIDs.first?.count ?? 0  // rows are padded to one length
        try config.validate(vocabularySize: model.config.vocabSize, promptLength: promptLength)
        let start = DispatchTime.now()
        let session = try prefill(inputIDs, attentionMask: attentionMask)
        let prefillSeconds = Self.seconds(since: start)
        let budget = config.newTokenBudget(promptLength: promptLength)
        var result = try generate(from: session, prompts: inputIDs, budget: budget, config: config, started: start, onToken: onToken)
        result.promptTokens = session.history.map(\.count).reduce(0, +)
        result.prefillSeconds = prefillSeconds
        return result
    }

    /// Generates after a session (a prefilled prompt, or one loaded from a state file).
    public func generate(
        from session: GenerationSession, config: GenerationConfig? = nil,
        onToken: (_ row: Int, _ token: Int) throws -> Void = { _, _ in }
    ) throws -> GenerationResult {
        let config = config ?? defaults
        let promptLength = session.history.map(\.count).max() ?? 0
        try config.validate(vocabularySize: model.config.vocabSize, promptLength: promptLength)
        let budget = config.newTokenBudget(promptLength: promptLength)
        return try generate(from: session, prompts: session.history, budget: budget, config: config, started: .now(), onToken: onToken)
    }

    /// `prompts`: each row's tokens before the new ones as transformers' `input_ids` hold them
    /// (a padded batch's padding included), for the logits processors. `started`: when the call
    /// began, which `max_time` counts from (transformers' clock includes the prompt's pass).
    private func generate(
        from initial: GenerationSession, prompts: [[Int]], budget: Int, config: GenerationConfig, started: DispatchTime,
        onToken: (_ row: Int, _ token: Int) throws -> Void
    ) throws -> GenerationResult {
        if !config.stopStrings.isEmpty && tokenizer == nil {
            throw GenerationError.invalidSetting(name: "stop_strings", reason: "needs a tokenizer, and this model folder has none")
        }
        let start = DispatchTime.now()
        try initial.state.validate(for: model.config, batchSize: initial.batchSize)
        guard initial.nextLogits.shape == [initial.batchSize, model.config.vocabSize],
              initial.nextLogits.count == initial.batchSize * model.config.vocabSize else {
            throw GenerationError.invalidInput("next-token scores of shape \(initial.nextLogits.shape) for \(initial.batchSize) rows")
        }
        var session = try settle(initial)
        let (rows, vocabulary) = (session.batchSize, model.config.vocabSize)
        // An unset EOS means the model's, as transformers merges a call's config with the model's.
        let eosList = config.eosTokenIDs ?? defaults.eosTokenIDs ?? []
        let eos = Set(eosList)
        let pad = config.padTokenID ?? eosList.first ?? 0
        let processors = LogitsProcessorList(config: config, eos: eosList, prompts: prompts, budget: budget)
        var processorTokens = prompts
        var sampler = TokenSampler(generator: SeededGenerator(seed: config.seed ?? UInt64.random(in: 0...UInt64.max)))
        var tokens = [[Int]](repeating: [], count: rows)
        var reasons = [FinishReason?](repeating: nil, count: rows)
        var seen = session.history.map(Set.init)
        // Each row's new text, grown by the streaming decoder, for the stop strings.
        var texts = [[UInt8]](repeating: [], count: rows)
        var decoders = (0..<rows).map { _ in tokenizer?.streamingDecoder(skipSpecialTokens: false, skipUnknownIDs: true) }
        let stops = config.stopStrings.map { Array($0.utf8) }
        let longestStop = stops.map(\.count).max() ?? 0

        for step in 0..<budget {
            if step > 0, let pending = session.pending {
                // In place: the loop's session holds the only reference to its state.
                let output = try model(.tokenIDs(pending.map { [$0] }), updating: &session.state)
                session.nextLogits = Self.lastPosition(output.logits)
                session.pending = nil
            }
            var chosen: [Int] = []
            for row in 0..<rows {
                guard reasons[row] == nil else { chosen.append(pad); continue }
                let scores = Array(session.nextLogits.scalars[(row * vocabulary)..<((row + 1) * vocabulary)])
                let processed = processors(scores, row: row, tokens: processorTokens[row], seen: seen[row])
                let token = sampler.next(processed, sample: config.doSample)
                chosen.append(token)
                tokens[row].append(token)
                session.history[row].append(token)
                processorTokens[row].append(token)
                seen[row].insert(token)
                try onToken(row, token)
                if eos.contains(token) {
                    reasons[row] = .stop
                } else if !stops.isEmpty, let piece = try decoders[row]?.step(token) {
                    // Only the tail that the new piece can complete is searched (bytes, not
                    // Characters, so a stop string never matches across a combining mark).
                    let start = max(0, texts[row].count - longestStop)
                    texts[row] += piece.utf8
                    let tail = texts[row][start...]
                    if stops.contains(where: { stop in tail.indices.contains { tail[$0...].starts(with: stop) } }) { reasons[row] = .stop }
                }
            }
            session.pending = chosen
            if reasons.allSatisfy({ $0 != nil }) { break }
            if let maxTime = config.maxTime, Self.seconds(since: started) > maxTime { break }
        }
        return GenerationResult(
            tokens: tokens, finishReasons: reasons.map { $0 ?? .length }, promptTokens: 0,
            prefillSeconds: 0, decodeSeconds: Self.seconds(since: start), session: session)
    }

    static func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }

    // MARK: Text

    /// Encodes prompts with the tokenizer, left-padded into one batch.
    public func encode(_ prompts: [String]) throws -> BatchEncoding {
        guard let tokenizer else { throw GenerationError.invalidInput("text prompts need a tokenizer, and this model folder has none") }
        guard !prompts.isEmpty else { throw GenerationError.invalidInput("no prompts") }
        return padding(try prompts.map { try tokenizer.encode($0).ids })
    }

    /// Token-id prompts left-padded into one batch. transformers pads with the tokenizer's pad
    /// token; without one, with the model's. The mask hides it from the model, not from the
    /// processors that see the padding.
    public func padding(_ prompts: [[Int]]) -> BatchEncoding {
        BatchEncoding(padding: prompts, with: tokenizer?.padTokenID ?? defaults.padTokenID ?? 0)
    }

    /// Generates after text prompts and streams the text of every row as it forms (never a
    /// broken character), then the result.
    public func stream(_ prompts: [String], config: GenerationConfig? = nil) -> AsyncThrowingStream<GenerationEvent, any Error> {
        AsyncThrowingStream { continuation in
            let task = Task.detached {
                do {
                    let batch = try encode(prompts)
                    let result = try streamTokens(batch.inputIDs, attentionMask: batch.attentionMask, config: config) { row, text in
                        continuation.yield(.text(row: row, text))
                    }
                    continuation.yield(.finished(result))
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Generates and hands each row's new text to `onText` as soon as it is complete.
    public func streamTokens(
        _ inputIDs: [[Int]], attentionMask: [[Int]]? = nil, config: GenerationConfig? = nil,
        onText: (_ row: Int, _ text: String) throws -> Void
    ) throws -> GenerationResult {
        guard let tokenizer else { throw GenerationError.invalidInput("streaming text needs a tokenizer, and this model folder has none") }
        var decoders = inputIDs.map { _ in tokenizer.streamingDecoder(skipSpecialTokens: true, skipUnknownIDs: true) }
        let result = try generate(inputIDs, attentionMask: attentionMask, config: config) { row, token in
            try Task.checkCancellation()
            if let text = try decoders[row].step(token), !text.isEmpty { try onText(row, text) }
        }
        for row in decoders.indices {
            if let rest = try decoders[row].finish(), !rest.isEmpty { try onText(row, rest) }
        }
        return result
    }
}
