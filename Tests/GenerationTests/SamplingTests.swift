import Foundation
import Testing
@testable import Generation
import Mamba2

@Suite("sampling")
struct SamplingTests {
    static let logits: [Float] = [2.0, 1.0, 0.5, 3.0, -1.0, 0.0]

    @Test("top-k keeps the k best scores")
    func topK() {
        var scores = Self.logits
        LogitsProcessing.topK(&scores, 2)
        #expect(scores.map { $0.isFinite } == [true, false, false, true, false, false])
    }

    @Test("top-p keeps the smallest most likely set reaching p")
    func topP() {
        let probabilities = LogitsProcessing.softmax(Self.logits)  // ≈ [.23, .09, .05, .63, .01, .03]
        var scores = Self.logits
        LogitsProcessing.topP(&scores, 0.8)
        #expect(scores.map { $0.isFinite } == [true, false, false, true, false, false])
        var tight = Self.logits
        LogitsProcessing.topP(&tight, 0.5)
        #expect(tight.map { $0.isFinite } == [false, false, false, true, false, false])
        #expect(probabilities[3] > 0.5)
    }

    @Test("top-k and top-p equal their definitions by sorting every score, with ties, masked tokens and every k")
    func againstSorting() {
        var generator = SeededGenerator(seed: 7)
        for trial in 0..<48 {
            let count = [5, 64, 4096, 50_280][trial % 4]
            // Scores on a 0.1 grid: a large vocabulary has many equal scores.
            var scores = (0..<count).map { _ in Float(Int(generator.next() % 200)) / 10 - 10 }
            if trial % 3 == 0 { for index in stride(from: 0, to: count, by: 7) { scores[index] = -.infinity } }
            let k = [1, 2, 50, count - 1, count, count + 3][trial % 6]
            var expected = scores
            if k < count {
                let threshold = scores.sorted(by: >)[k - 1]
                for index in expected.indices where expected[index] < threshold { expected[index] = -.infinity }
            }
            var actual = scores
            LogitsProcessing.topK(&actual, k)
            #expect(actual == expected, "top-k \(k) of \(count)")
            for p: Float in [0.3, 0.9, 0.95, 0.999] {
                var expectedP = expected
                let order = expected.indices.sorted { expected[$0] < expected[$1] }
                let probabilities = LogitsProcessing.softmax(order.map { expected[$0] })
                var cumulative: Float = 0
                for (rank, index) in order.enumerated() where rank < order.count - 1 {
                    cumulative += probabilities[rank]
                    if cumulative <= 1 - p { expectedP[index] = -.infinity }
                }
                var actualP = expected
                LogitsProcessing.topP(&actualP, p)
                #expect(actualP == expectedP, "top-p \(p) after top-k \(k) of \(count)")
            }
        }
    }

    @Test("min-p drops tokens below min_p times the top probability")
    func minP() {
        var scores = Self.logits
        LogitsProcessing.minP(&scores, 0.3)  // keeps p ≥ 0.3·p(3): tokens 3 and 0
        #expect(scores.map { $0.isFinite } == [true, false, false, true, false, false])
    }

    @Test("repetition penalty divides positive and multiplies negative scores of seen tokens")
    func repetitionPenalty() {
        var scores = Self.logits
        LogitsProcessing.repetitionPenalty(&scores, seen: [0, 4], penalty: 2)
        #expect(scores == [1.0, 1.0, 0.5, 3.0, -2.0, 0.0])
    }

    @Test("temperature scales the scores")
    func temperature() {
        var scores = Self.logits
        LogitsProcessing.temperature(&scores, 0.5)
        #expect(scores == Self.logits.map { $0 * 2 })
    }

    @Test("a seed reproduces the draws, another seed does not; frequencies follow the softmax")
    func seeded() {
        var a = TokenSampler(generator: SeededGenerator(seed: 42))
        var b = TokenSampler(generator: SeededGenerator(seed: 42))
        var c = TokenSampler(generator: SeededGenerator(seed: 43))
        let drawsA = (0..<200).map { _ in a.next(Self.logits, sample: true) }
        let drawsB = (0..<200).map { _ in b.next(Self.logits, sample: true) }
        let drawsC = (0..<200).map { _ in c.next(Self.logits, sample: true) }
        #expect(drawsA == drawsB)
        #expect(drawsA != drawsC)
        var counts = [Int](repeating: 0, count: 6)
        var sampler = TokenSampler(generator: SeededGenerator(seed: 1))
        for _ in 0..<20_000 { counts[sampler.next(Self.logits, sample: true)] += 1 }
        for (count, probability) in zip(counts, LogitsProcessing.softmax(Self.logits)) {
            #expect(abs(Float(count) / 20_000 - probability) < 0.015)
        }
        var greedy = TokenSampler(generator: SeededGenerator(seed: 1))
        #expect(greedy.next(Self.logits, sample: false) == 3)
        #expect(greedy.next([1, 5, 5], sample: false) == 1)  // the first of equal maxima
    }

    @Test("a masked token is never drawn")
    func maskedNeverDrawn() {
        var sampler = TokenSampler(generator: SeededGenerator(seed: 9))
        var scores = Self.logits
        LogitsProcessing.topK(&scores, 2)
        for _ in 0..<2_000 { #expect([0, 3].contains(sampler.next(scores, sample: true))) }
    }

    @Test("invalid settings are named errors", arguments: [
        "temperature < 0", "temperature 0 when sampling", "top_p 0", "top_p 1.5", "top_k -1", "min_p 2",
        "repetition_penalty 0", "max_new_tokens -1", "empty stop string",
    ])
    func invalidSettings(change: String) throws {
        var config = GenerationConfig()
        let name: String
        switch change {
        case "temperature < 0": config.temperature = -1; name = "temperature"
        case "temperature 0 when sampling": config.doSample = true; config.temperature = 0; name = "temperature"
        case "top_p 0": config.topP = 0; name = "top_p"
        case "top_p 1.5": config.topP = 1.5; name = "top_p"
        case "top_k -1": config.topK = -1; name = "top_k"
        case "min_p 2": config.minP = 2; name = "min_p"
        case "repetition_penalty 0": config.repetitionPenalty = 0; name = "repetition_penalty"
        case "max_new_tokens -1": config.maxNewTokens = -1; name = "max_new_tokens"
        default: config.stopStrings = [""]; name = "stop_strings"
        }
        do {
            try config.validate()
            Issue.record("no error for \(change)")
        } catch let GenerationError.invalidSetting(setting, _) {
            #expect(setting == name)
        }
        let generator = Generator(model: try Mamba2ForCausalLM(directory: modelFixtures.appendingPathComponent("g1-tied")))
        #expect(throws: GenerationError.self) { try generator.generate([[1, 2]], config: config) }
    }

    @Test("stop strings need a tokenizer")
    func stopStringsNeedTokenizer() throws {
        let generator = Generator(model: try Mamba2ForCausalLM(directory: modelFixtures.appendingPathComponent("g1-tied")))
        var config = GenerationConfig()
        config.stopStrings = ["x"]
        #expect(throws: GenerationError.invalidSetting(name: "stop_strings", reason: "needs a tokenizer, and this model folder has none")) {
            try generator.generate([[1, 2]], config: config)
        }
    }
}
