import Foundation
import Mamba2
import Tensors
import Tokenizers

/// One sequence handed to a `ContinuousBatcher`.
public struct BatchedRequest: Sendable {
    /// The prompt's token ids (at least one).
    public var promptIDs: [Int]
    /// Sampling, the token budget (`maxNewTokens`, required) and stop strings for this sequence.
    public var config: GenerationConfig

    public init(promptIDs: [Int], config: GenerationConfig) {
        self.promptIDs = promptIDs
        self.config = config
    }
}

/// What a batched sequence produces, in order: text pieces, then one `finished`.
public enum BatchedEvent: Sendable, Equatable {
    /// New text: whole characters, never part of a stop string (OpenAI's `stop` semantics: the
    /// text ends before the stop string).
    case text(String)
    /// `completionTokens` counts every sampled token, the end-of-sequence token included.
    case finished(FinishReason, promptTokens: Int, completionTokens: Int)
}

public enum BatcherError: Error, Equatable, CustomStringConvertible {
    /// The waiting queue holds `limit` sequences already.
    case queueFull(limit: Int)
    /// The batcher is shutting down and takes no new sequences.
    case shuttingDown
    /// The sequence was still running when the shutdown's grace period ran out.
    case cancelledByShutdown

    public var description: String {
        switch self {
        case let .queueFull(limit): "the server is busy: \(limit) requests are already waiting"
        case .shuttingDown: "the server is shutting down"
        case .cancelledByShutdown: "the server shut down before this request finished"
        }
    }
}

/// Continuous batching: sequences that run at the same time decode together, one batched model
/// step per token for all of them (the weights are read once per step, not once per sequence).
/// A new sequence's prompt is read alone, a chunk per step, and the sequence joins between
/// steps; a finished or cancelled one leaves at once, so nobody waits for anybody else. Each sequence keeps its own rows of the recurrent
/// state, its own sampler and stop strings, so its tokens are those it would get decoding alone.
///
/// The model runs on one dedicated thread (the kernels fan out to all cores from there); callers
/// on any thread or task submit, cancel and read events.
public final class ContinuousBatcher: @unchecked Sendable {
    public let generator: Generator
    public let maxBatch: Int
    public let maxQueue: Int

    private struct Waiting {
        let id: Int
        let request: BatchedRequest
        let continuation: AsyncThrowingStream<BatchedEvent, any Error>.Continuation
        /// `max_time` counts from here, time in the queue included.
        let submitted = DispatchTime.now()
    }

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var queue: [Waiting] = []
    private var cancelled: Set<Int> = []
    private var running: Set<Int> = []
    private var nextID = 0
    private var acceptsWork = true
    private var shutdownDeadline: DispatchTime?
    private var stopped = false
    private var finishedWaiters: [CheckedContinuation<Void, Never>] = []
    private var steps = 0
    private var largestBatch = 0
    private var largestStateBytes = 0

    /// Prompt tokens read per pass of the model thread: a long prompt is read a chunk at a time
    /// between decode steps, so the running sequences wait for one chunk, not the whole prompt.
    public let prefillChunk: Int

    public init(generator: Generator, maxBatch: Int, maxQueue: Int, prefillChunk: Int = 256) throws {
        guard maxBatch >= 1 else { throw GenerationError.invalidSetting(name: "max_batch", reason: "must be ≥ 1, got \(maxBatch)") }
        guard maxQueue >= 0 else { throw GenerationError.invalidSetting(name: "max_queue", reason: "must be ≥ 0, got \(maxQueue)") }
        guard prefillChunk >= 1 else { throw GenerationError.invalidSetting(name: "prefill_chunk", reason: "must be ≥ 1, got \(prefillChunk)") }
        try Mamba2State.checkSSMDType(generator.model.ssmStateDType)
        self.generator = generator
        self.maxBatch = maxBatch
        self.maxQueue = maxQueue
        self.prefillChunk = prefillChunk
        let thread = Thread { [self] in loop() }
        thread.name = "mamba2-batcher"
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Sequences decoding now and sequences waiting for a slot.
    public var load: (running: Int, waiting: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (running.count, queue.count)
    }

    /// Batched decode steps run so far, and the most sequences one step has carried.
    public var statistics: (steps: Int, largestBatch: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (steps, largestBatch)
    }

    /// The most bytes the batch's recurrent state has held (every layer's conv and SSM state).
    public var peakStateBytes: Int {
        condition.lock()
        defer { condition.unlock() }
        return largestStateBytes
    }

    /// Queues a sequence. Its events end with `.finished`, or with a thrown error; dropping the
    /// stream (a client that went away) cancels the sequence and frees its slot.
    public func submit(_ request: BatchedRequest) throws -> AsyncThrowingStream<BatchedEvent, any Error> {
        guard let budget = request.config.maxNewTokens, budget >= 1 else {
            throw GenerationError.invalidSetting(name: "max_new_tokens", reason: "a batched request needs a budget ≥ 1")
        }
        try request.config.validate(vocabularySize: generator.model.config.vocabSize, promptLength: request.promptIDs.count)
        guard !request.promptIDs.isEmpty else { throw GenerationError.invalidInput("the prompt has no tokens") }
        let vocabulary = generator.model.config.vocabSize
        if let bad = request.promptIDs.first(where: { !(0..<vocabulary).contains($0) }) {
            throw GenerationError.invalidInput("token id \(bad) is outside the vocabulary (0..<\(vocabulary))")
        }
        if !request.config.stopStrings.isEmpty, generator.tokenizer == nil {
            throw GenerationError.invalidSetting(name: "stop_strings", reason: "needs a tokenizer, and this model folder has none")
        }
        let (events, continuation) = AsyncThrowingStream<BatchedEvent, any Error>.makeStream()
        condition.lock()
        defer { condition.unlock() }
        guard acceptsWork else { throw BatcherError.shuttingDown }
        // Sequences that will take a free slot at the next step do not count as waiting.
        let free = max(0, maxBatch - running.count)
        guard queue.count - free < maxQueue else { throw BatcherError.queueFull(limit: maxQueue) }
        let id = nextID
        nextID += 1
        queue.append(Waiting(id: id, request: request, continuation: continuation))
        // Only a consumer that goes away cancels; `.finished` comes from this batcher's own
        // `finish` calls, some made under the lock, so it must not take the lock again.
        continuation.onTermination = { [weak self] termination in
            if case .cancelled = termination { self?.cancel(id) }
        }
        condition.signal()
        return events
    }

    private func cancel(_ id: Int) {
        condition.lock()
        defer { condition.unlock() }
        if let index = queue.firstIndex(where: { $0.id == id }) {
            queue.remove(at: index)
        } else if running.contains(id) {
            cancelled.insert(id)
            condition.signal()
        }
    }

    /// Takes no new sequences, lets the running and waiting ones finish for up to `grace`
    /// seconds, ends the rest with `BatcherError.cancelledByShutdown`, and returns when the model
    /// thread has stopped.
    public func shutdown(grace: Double) async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            condition.lock()
            acceptsWork = false
            if shutdownDeadline == nil {
                // At most a day, so the nanoseconds stay far inside Int.
                let seconds = grace.isNaN ? 0 : min(max(0, grace), 86_400)
                shutdownDeadline = .now() + .nanoseconds(Int(seconds * 1e9))
            }
            if stopped {
                condition.unlock()
                waiter.resume()
                return
            }
            finishedWaiters.append(waiter)
            condition.signal()
            condition.unlock()
        }
    }

    // MARK: The model thread

    /// A sequence in the running batch; its index in `batch` is its row of the batch state.
    private struct Sequence {
        let id: Int
        let continuation: AsyncThrowingStream<BatchedEvent, any Error>.Continuation
        let config: GenerationConfig
        let processors: LogitsProcessorList
        let promptTokens: Int
        let eos: Set<Int>
        /// When the sequence was submitted, for `max_time`.
        let started: DispatchTime
        var sampler: TokenSampler
        /// The prompt and the tokens generated so far, as a list and as a set.
        var tokens: [Int]
        var seen: Set<Int>
        var generated = 0
        var pending = 0
        var text: StopStringText?
        var decoder: StreamingDecoder?
    }

    /// A sequence whose prompt is being read into its own state, a chunk per pass.
    private struct Prefilling {
        let waiting: Waiting
        /// `layers × ([1, k − 1, conv_dim], [1, h, p, n])`.
        var state: Mamba2State
        var consumed = 0
    }

    private func loop() {
        var batch: [Sequence] = []
        var prefilling: [Prefilling] = []
        // `layers × ([b, k − 1, conv_dim], [b, h, p, n])`: row i belongs to `batch[i]`.
        var state = Mamba2State(config: generator.model.config, batchSize: 0, ssmDType: generator.model.ssmStateDType)
        while true {
            condition.lock()
            while queue.isEmpty && batch.isEmpty && prefilling.isEmpty && shutdownDeadline == nil { condition.wait() }
            let pastDeadline = shutdownDeadline.map { .now() >= $0 } ?? false
            var admitted: [Waiting] = []
            if pastDeadline {
                for waiting in queue { waiting.continuation.finish(throwing: BatcherError.cancelledByShutdown) }
                queue.removeAll()
            } else {
                admitted = Array(queue.prefix(max(0, maxBatch - batch.count - prefilling.count)))
                queue.removeFirst(admitted.count)
                running.formUnion(admitted.map(\.id))
            }
            let cancelledNow = cancelled
            cancelled.removeAll()
            if batch.isEmpty && prefilling.isEmpty && admitted.isEmpty && queue.isEmpty && shutdownDeadline != nil {
                stopped = true
                let waiters = finishedWaiters
                finishedWaiters.removeAll()
                condition.unlock()
                for waiter in waiters { waiter.resume() }
                return
            }
            condition.unlock()

            var leaving: [Int] = []
            for (row, sequence) in batch.enumerated() where cancelledNow.contains(sequence.id) || pastDeadline {
                sequence.continuation.finish(throwing: pastDeadline ? BatcherError.cancelledByShutdown : nil)
                leaving.append(row)
            }
            remove(rows: leaving, from: &batch, state: &state)
            prefilling.removeAll { entry in
                guard cancelledNow.contains(entry.waiting.id) || pastDeadline else { return false }
                entry.waiting.continuation.finish(throwing: pastDeadline ? BatcherError.cancelledByShutdown : nil)
                markDone([entry.waiting.id])
                return true
            }

            prefilling += admitted.map { Prefilling(waiting: $0, state: Mamba2State(config: generator.model.config, batchSize: 1, ssmDType: generator.model.ssmStateDType)) }
            if !prefilling.isEmpty {
                readPrompt(of: &prefilling, into: &batch, state: &state)
            }

            guard !batch.isEmpty else { continue }
            condition.lock()
            steps += 1
            largestBatch = max(largestBatch, batch.count)
            largestStateBytes = max(largestStateBytes, state.byteCount)
            condition.unlock()
            let output: Mamba2CausalLMOutput
            do {
                // In place: this loop holds the only reference to the batch state.
                output = try generator.model(.tokenIDs(batch.map { [$0.pending] }), updating: &state)
            } catch {
                for sequence in batch { sequence.continuation.finish(throwing: error) }
                remove(rows: Array(batch.indices), from: &batch, state: &state)
                continue
            }
            let vocabulary = generator.model.config.vocabSize
            leaving = []
            for row in batch.indices {
                // `[b, 1, v]`: row `row`'s scores of its next token.
                let scores = Array(output.logits.scalars[(row * vocabulary)..<((row + 1) * vocabulary)])
                if !step(&batch[row], scores: scores) { leaving.append(row) }
            }
            remove(rows: leaving, from: &batch, state: &state)
        }
    }

    /// Reads the next chunk of the first prompt in line; when the prompt is done, takes the
    /// sequence's first token and, unless that ends it, adds its state rows to the batch.
    private func readPrompt(of prefilling: inout [Prefilling], into batch: inout [Sequence], state: inout Mamba2State) {
        let request = prefilling[0].waiting.request
        let start = prefilling[0].consumed
        let end = min(request.promptIDs.count, start + prefillChunk)
        let output: Mamba2CausalLMOutput
        do {
            output = try generator.model(.tokenIDs([Array(request.promptIDs[start..<end])]), updating: &prefilling[0].state, logitsToKeep: 1)
        } catch {
            prefilling[0].waiting.continuation.finish(throwing: error)
            markDone([prefilling[0].waiting.id])
            prefilling.removeFirst()
            return
        }
        prefilling[0].consumed = end
        guard end == request.promptIDs.count else { return }
        let done = prefilling.removeFirst()
        let waiting = done.waiting
        let config = request.config
        let eosList = config.eosTokenIDs ?? generator.defaults.eosTokenIDs ?? []
        var sequence = Sequence(
            id: waiting.id, continuation: waiting.continuation, config: config,
            processors: LogitsProcessorList(config: config, eos: eosList, prompts: [request.promptIDs], budget: config.maxNewTokens ?? 0),
            promptTokens: request.promptIDs.count, eos: Set(eosList), started: waiting.submitted,
            sampler: TokenSampler(generator: SeededGenerator(seed: config.seed ?? UInt64.random(in: 0...UInt64.max))),
            tokens: request.promptIDs, seen: Set(request.promptIDs),
            text: generator.tokenizer.map { _ in StopStringText(stops: config.stopStrings) },
            decoder: generator.tokenizer?.streamingDecoder(skipSpecialTokens: true, skipUnknownIDs: true))
        // `[1, 1, v]`: the scores after the prompt's last token.
        guard step(&sequence, scores: output.logits.scalars) else { return }
        batch.append(sequence)
        state.append(done.state)
    }

    /// Picks a sequence's next token from its scores and reports it; false when the sequence has
    /// ended (and was told so).
    private func step(_ sequence: inout Sequence, scores: [Float]) -> Bool {
        let processed = sequence.processors(scores, row: 0, tokens: sequence.tokens, seen: sequence.seen)
        let token = sequence.sampler.next(processed, sample: sequence.config.doSample)
        sequence.generated += 1
        sequence.tokens.append(token)
        sequence.seen.insert(token)
        sequence.pending = token
        var reason: FinishReason?
        do {
            if sequence.eos.contains(token) {
                reason = .stop
            } else if let piece = try sequence.decoder?.step(token) {
                if show(piece, of: &sequence) { reason = .stop }
            }
            if reason == nil && sequence.generated >= sequence.config.maxNewTokens ?? 0 { reason = .length }
            if reason == nil, let maxTime = sequence.config.maxTime, Generator.seconds(since: sequence.started) > maxTime {
                reason = .length
            }
            guard let reason else { return true }
            // Bytes of an unfinished character and held-back text, unless a stop string cut it (the
            // last bytes may still complete one).
            var finish = reason
            if !(sequence.text?.hitStop ?? false) {
                if let rest = try sequence.decoder?.finish(), show(rest, of: &sequence) { finish = .stop }
                if let held = sequence.text?.flush(), !held.isEmpty { sequence.continuation.yield(.text(held)) }
            }
            sequence.continuation.yield(.finished(finish, promptTokens: sequence.promptTokens, completionTokens: sequence.generated))
            sequence.continuation.finish()
        } catch {
            sequence.continuation.finish(throwing: error)
        }
        markDone([sequence.id])
        return false
    }

    /// Passes a decoded piece through the stop strings and yields what may be shown; true when a
    /// stop string appeared.
    private func show(_ piece: String, of sequence: inout Sequence) -> Bool {
        guard var text = sequence.text else { return false }
        let ready = text.add(piece)
        sequence.text = text
        if !ready.isEmpty { sequence.continuation.yield(.text(ready)) }
        return text.hitStop
    }

    private func remove(rows: [Int], from batch: inout [Sequence], state: inout Mamba2State) {
        guard !rows.isEmpty else { return }
        markDone(rows.map { batch[$0].id })
        for row in rows.sorted(by: >) {
            batch.remove(at: row)
            state.removeSequence(at: row)
        }
    }

    private func markDone(_ ids: [Int]) {
        condition.lock()
        running.subtract(ids)
        condition.unlock()
    }
}

/// A sequence's text as it forms, cut before the first stop string: text that might still
/// become a stop string is held back until it cannot.
struct StopStringText {
    let stops: [[UInt8]]
    private var bytes: [UInt8] = []
    private var emitted = 0
    /// A stop string has appeared: nothing after it is ever shown.
    private(set) var hitStop = false

    init(stops: [String]) {
        self.stops = stops.map { Array($0.utf8) }
    }

    /// Adds a decoded piece and returns the text that is now safe to show (after a stop string:
    /// the rest of the text before it, then nothing).
    mutating func add(_ piece: String) -> String {
        guard !hitStop else { return "" }
        bytes += piece.utf8
        // A stop string can only begin after the shown text (held-back text covers every start
        // that was still possible).
        var firstStop: Int?
        for stop in stops {
            guard stop.count <= bytes.count - emitted else { continue }
            for start in emitted...(bytes.count - stop.count) where bytes[start..<(start + stop.count)].elementsEqual(stop) {
                firstStop = min(firstStop ?? start, start)
                break
            }
        }
        if let firstStop {
            let ready = String(decoding: bytes[emitted..<firstStop], as: UTF8.self)
            emitted = bytes.count
            hitStop = true
            return ready
        }
        // Hold back the longest tail that begins some stop string (it starts on a character
        // boundary, as every UTF-8 string does).
        var held = 0
        for stop in stops {
            for length in stride(from: min(stop.count - 1, bytes.count - emitted), to: held, by: -1)
            where bytes[(bytes.count - length)...].elementsEqual(stop.prefix(length)) {
                held = length
                break
            }
        }
        let end = bytes.count - held
        let ready = String(decoding: bytes[emitted..<end], as: UTF8.self)
        emitted = end
        return ready
    }

    /// The held-back text, when the sequence ends without a stop string.
    mutating func flush() -> String {
        let rest = String(decoding: bytes[emitted...], as: UTF8.self)
        emitted = bytes.count
        return rest
    }
}
