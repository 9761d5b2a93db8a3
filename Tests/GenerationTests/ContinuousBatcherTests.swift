import DefaultModel
import Foundation
@testable import Generation
import Mamba2
import Tensors
import Testing

@Suite("continuous batching")
struct ContinuousBatcherTests {
    static let prompts = ["def fibonacci(n):", "import numpy as np\n", "class Node:", "while True:", "print(", "# TODO"]

    /// What one sequence produced: its text and how it finished.
    static func collect(_ events: AsyncThrowingStream<BatchedEvent, any Error>) async throws -> (text: String, finish: BatchedEvent?) {
        var text = ""
        var finish: BatchedEvent?
        for try await event in events {
            switch event {
            case let .text(piece):
                #expect(finish == nil, "text after the end")
                text += piece
            case .finished: finish = event
            }
        }
        return (text, finish)
    }

    @Test("sequences that join at different times each decode what they decode alone (greedy and seeded sampling; fp32 and bf16 states)",
          arguments: [DType.float32, .bfloat16])
    func batchedEqualsSolo(ssmDType: DType) async throws {
        var generator = try Generator(directory: DefaultModel.directory)
        generator.model.ssmStateDType = ssmDType
        let batcher = try ContinuousBatcher(generator: generator, maxBatch: 4, maxQueue: 8)
        let configs = Self.prompts.indices.map { index in
            generator.defaults.overriding(maxNewTokens: 12 + 5 * index, doSample: !index.isMultiple(of: 3), seed: UInt64(100 + index))
        }
        let results = try await withThrowingTaskGroup(of: (Int, String, BatchedEvent?).self) { group in
            for (index, prompt) in Self.prompts.enumerated() {
                let ids = try generator.tokenizer!.encode(prompt).ids
                // Four slots for six sequences: the last two wait and join a batch that is
                // already decoding, each when a slot frees.
                let events = try batcher.submit(BatchedRequest(promptIDs: ids, config: configs[index]))
                group.addTask {
                    let (text, finish) = try await Self.collect(events)
                    return (index, text, finish)
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = ($1.1, $1.2) }
        }
        for (index, prompt) in Self.prompts.enumerated() {
            let ids = try generator.tokenizer!.encode(prompt).ids
            let solo = try generator.generate([ids], config: configs[index])
            let text = try generator.tokenizer!.decode(solo.tokens[0], skipSpecialTokens: true)
            #expect(results[index]?.0 == text, "sequence \(index)")
            #expect(results[index]?.1 == .finished(solo.finishReasons[0], promptTokens: ids.count, completionTokens: solo.tokens[0].count))
        }
        let statistics = batcher.statistics
        #expect(statistics.largestBatch == 4)
        // Four sequences' states, their SSM part in the dtype asked for.
        #expect(batcher.peakStateBytes == Mamba2State.byteCount(config: generator.model.config, batchSize: 4, ssmDType: ssmDType))
        await batcher.shutdown(grace: 1)
    }

    @Test("stop strings: the text ends before the first one; text that may begin one is held back, then released")
    func stopStringText() {
        var text = StopStringText(stops: ["</s>", "END"])
        #expect(text.add("hello <") == "hello ")
        #expect(text.add("/b") == "</b")
        #expect(text.add(" E") == " ")
        #expect(text.add("N") == "")
        #expect(text.add("x") == "ENx")
        #expect(text.add("y</") == "y")
        #expect(!text.hitStop)
        #expect(text.add("s> more") == "")
        #expect(text.hitStop)
        #expect(text.add("ignored") == "")

        var ending = StopStringText(stops: ["ab"])
        #expect(ending.add("xa") == "x")
        #expect(ending.flush() == "a")

        var multibyte = StopStringText(stops: ["é!"])
        #expect(multibyte.add("café") == "caf")
        #expect(multibyte.add("?") == "é?")
        #expect(multibyte.add("é!") == "")
        #expect(multibyte.hitStop)

        var earliest = StopStringText(stops: ["bc", "abcd"])
        #expect(earliest.add("xabcd") == "x")
    }

    @Test("a dropped stream cancels its sequence; a full queue and a shut-down batcher refuse work")
    func cancellationQueueAndShutdown() async throws {
        let generator = try Generator(directory: DefaultModel.directory)
        let batcher = try ContinuousBatcher(generator: generator, maxBatch: 1, maxQueue: 1)
        let ids = try generator.tokenizer!.encode(Self.prompts[0]).ids
        let long = generator.defaults.overriding(maxNewTokens: 100_000, doSample: false)
        var running: AsyncThrowingStream<BatchedEvent, any Error>? = try batcher.submit(BatchedRequest(promptIDs: ids, config: long))
        let start = Date()
        while batcher.load.running == 0 && Date().timeIntervalSince(start) < 30 { try await Task.sleep(for: .milliseconds(5)) }
        let waiting = try batcher.submit(BatchedRequest(promptIDs: ids, config: long))
        #expect(batcher.load.waiting == 1)
        #expect(throws: BatcherError.queueFull(limit: 1)) { try batcher.submit(BatchedRequest(promptIDs: ids, config: long)) }
        // Dropping the running sequence's stream frees its slot; the waiting one takes it.
        running = nil
        _ = running
        let freed = Date()
        while batcher.load.waiting > 0 && Date().timeIntervalSince(freed) < 30 { try await Task.sleep(for: .milliseconds(5)) }
        #expect(batcher.load == (1, 0))
        await batcher.shutdown(grace: 0)
        await #expect(throws: BatcherError.cancelledByShutdown) { _ = try await Self.collect(waiting) }
        #expect(throws: BatcherError.shuttingDown) { try batcher.submit(BatchedRequest(promptIDs: ids, config: long)) }
        #expect(batcher.load == (0, 0))
    }

    @Test("invalid sequences are named errors at submission")
    func invalidRequests() async throws {
        let generator = try Generator(directory: DefaultModel.directory)
        let batcher = try ContinuousBatcher(generator: generator, maxBatch: 2, maxQueue: 2)
        let config = generator.defaults.overriding(maxNewTokens: 4)
        #expect(throws: GenerationError.invalidInput("the prompt has no tokens")) { try batcher.submit(BatchedRequest(promptIDs: [], config: config)) }
        #expect(throws: GenerationError.invalidInput("token id 4096 is outside the vocabulary (0..<4096)")) {
            try batcher.submit(BatchedRequest(promptIDs: [1, 4096], config: config))
        }
        var unbounded = config
        unbounded.maxNewTokens = nil
        #expect(throws: GenerationError.self) { try batcher.submit(BatchedRequest(promptIDs: [1], config: unbounded)) }
        #expect(throws: GenerationError.self) { try batcher.submit(BatchedRequest(promptIDs: [1], config: config.overriding(topP: 2))) }
        #expect(throws: GenerationError.self) { try ContinuousBatcher(generator: generator, maxBatch: 0, maxQueue: 1) }
        await batcher.shutdown(grace: 0)
    }
}

@Suite("continuous batching of long prompts")
struct ChunkedPrefillTests {
    @Test("a prompt read in chunks between decode steps continues as the same chunks fed to a session")
    func chunkedPrompt() async throws {
        let generator = try Generator(directory: DefaultModel.directory)
        let batcher = try ContinuousBatcher(generator: generator, maxBatch: 2, maxQueue: 2, prefillChunk: 48)
        let text = String(repeating: "def add(a, b):\n    return a + b\n\n", count: 12)
        let ids = try generator.tokenizer!.encode(text).ids
        #expect(ids.count > 3 * 48)
        let config = generator.defaults.overriding(maxNewTokens: 24, doSample: false)
        // A short request decodes while the long prompt is read.
        let short = try batcher.submit(BatchedRequest(promptIDs: try generator.tokenizer!.encode("import os").ids, config: config.overriding(maxNewTokens: 60)))
        let long = try batcher.submit(BatchedRequest(promptIDs: ids, config: config))
        let (text1, finish1) = try await ContinuousBatcherTests.collect(long)
        _ = try await ContinuousBatcherTests.collect(short)

        var session = try generator.prefill([Array(ids.prefix(48))])
        for start in stride(from: 48, to: ids.count, by: 48) {
            session = try generator.extend(session, with: [Array(ids[start..<min(ids.count, start + 48)])])
        }
        let solo = try generator.generate(from: session, config: config)
        #expect(text1 == (try generator.tokenizer!.decode(solo.tokens[0], skipSpecialTokens: true)))
        #expect(finish1 == .finished(solo.finishReasons[0], promptTokens: ids.count, completionTokens: solo.tokens[0].count))
        #expect(throws: GenerationError.self) { try ContinuousBatcher(generator: generator, maxBatch: 1, maxQueue: 1, prefillChunk: 0) }
        await batcher.shutdown(grace: 1)
    }
}
