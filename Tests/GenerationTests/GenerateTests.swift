import DefaultModel
import Foundation
import Testing
@testable import Generation
import Mamba2
import Tensors

@Suite("generate against transformers")
struct GenerateTests {
    static let fixtures = ["g1-tied", "g3-untied-bias", "g2-fp32", "g2-bf16"]

    @Test("greedy generations are token-identical to transformers, single and batched", arguments: fixtures)
    func goldens(fixture name: String) throws {
        let generator = Generator(model: try Mamba2ForCausalLM(directory: modelFixtures.appendingPathComponent(name)))
        for testCase in try generationCases(name) {
            let result = try generator.generate(testCase.input_ids, attentionMask: testCase.attention_mask, config: testCase.config)
            #expect(result.tokens == testCase.new_tokens, "\(name) \(testCase.name)")
            for (row, tokens) in result.tokens.enumerated() {
                let stopped = testCase.eos_token_id.map { tokens.last == $0 } ?? false
                #expect(result.finishReasons[row] == (stopped ? .stop : .length))
            }
        }
    }

    @Test("each row of a left-padded batch generates what its prompt generates alone", arguments: fixtures)
    func batchEqualsSolo(fixture name: String) throws {
        let generator = Generator(model: try Mamba2ForCausalLM(directory: modelFixtures.appendingPathComponent(name)))
        let prompts = [[5, 9, 2, 7, 1, 3], [4, 4], [8, 6, 1]]
        let width = 6
        let pad = 0
        let ids = prompts.map { [Int](repeating: pad, count: width - $0.count) + $0 }
        let mask = prompts.map { [Int](repeating: 0, count: width - $0.count) + [Int](repeating: 1, count: $0.count) }
        var config = GenerationConfig()
        config.maxNewTokens = 9
        config.repetitionPenalty = 1.2
        let batch = try generator.generate(ids, attentionMask: mask, config: config)
        for (row, prompt) in prompts.enumerated() {
            #expect(batch.tokens[row] == (try generator.generate([prompt], config: config)).tokens[0], "\(name) row \(row)")
        }
    }

    @Test("the built-in model's greedy continuations match transformers")
    func defaultModel() throws {
        let generator = try Generator(directory: DefaultModel.directory)
        for testCase in try generationCases("mamba2-pycode") {
            var config = testCase.config
            config.doSample = false
            let ids = try generator.tokenizer!.encode(testCase.prompt!).ids
            #expect(ids == testCase.input_ids[0])
            let result = try generator.generate([ids], config: config)
            #expect(result.tokens == testCase.new_tokens, "\(testCase.name)")
            #expect(try generator.tokenizer!.decode(result.tokens[0], skipSpecialTokens: true) == testCase.text)
        }
    }

    @Test("streamed text equals the text decoded at the end")
    func streaming() async throws {
        let generator = try Generator(directory: DefaultModel.directory)
        var config = generator.defaults
        config.maxNewTokens = 24
        config.seed = 7
        var pieces: [Int: String] = [:]
        var result: GenerationResult?
        for try await event in generator.stream(["def add(a, b):", "import"], config: config) {
            switch event {
            case let .text(row, text): pieces[row, default: ""] += text
            case let .finished(final): result = final
            }
        }
        let final = try #require(result)
        for row in 0..<2 {
            #expect(pieces[row, default: ""] == (try generator.tokenizer!.decode(final.tokens[row], skipSpecialTokens: true)))
        }
    }

    @Test("a stop string ends a row; an EOS list ends it at any of its ids")
    func stopping() throws {
        let generator = try Generator(directory: DefaultModel.directory)
        var config = GenerationConfig()
        config.maxNewTokens = 20
        let free = try generator.generate([[40, 41, 42]], config: config).tokens[0]
        // The first token that the free run has not produced before.
        let index = try #require((1..<free.count).first { !free[..<$0].contains(free[$0]) })
        config.eosTokenIDs = [generator.model.config.vocabSize - 1, free[index]]
        let stopped = try generator.generate([[40, 41, 42]], config: config)
        #expect(stopped.tokens[0] == Array(free.prefix(index + 1)))
        #expect(stopped.finishReasons == [.stop])

        config.eosTokenIDs = []
        let text = try generator.tokenizer!.decode(Array(free.prefix(6)))
        let stop = String(text.suffix(2))
        config.stopStrings = [stop]
        let byString = try generator.generate([[40, 41, 42]], config: config)
        #expect(byString.finishReasons == [.stop])
        #expect(try generator.tokenizer!.decode(byString.tokens[0]).contains(stop))
        #expect(byString.tokens[0].count <= 6)
    }

    @Test("a saved state continues exactly as the uninterrupted run (greedy and seeded sampling)")
    func stateFiles() throws {
        let generator = try Generator(directory: DefaultModel.directory)
        let prompt = try generator.tokenizer!.encode("def main():").ids
        for sample in [false, true] {
            var config = generator.defaults
            config.doSample = sample
            config.seed = 11
            config.maxNewTokens = 16
            let whole = try generator.generate([prompt], config: config)

            // Saved right after the prompt, then generated with the same seed.
            let file = temporaryURL("prompt.state")
            try StateFile.write(try generator.prefill([prompt]), for: generator.model.config, to: file)
            let resumed = try generator.generate(from: try StateFile.read(file, for: generator.model.config), config: config)
            #expect(resumed.tokens == whole.tokens, "sample \(sample)")

            // Saved in the middle of greedy generation.
            guard !sample else { continue }
            config.maxNewTokens = 6
            let first = try generator.generate([prompt], config: config)
            let middle = temporaryURL("middle.state")
            try StateFile.write(try generator.settle(first.session), for: generator.model.config, to: middle)
            config.maxNewTokens = 10
            let rest = try generator.generate(from: try StateFile.read(middle, for: generator.model.config), config: config)
            #expect(first.tokens[0] + rest.tokens[0] == whole.tokens[0])
        }
        let bytes = StateFile.tensorBytes(for: generator.model.config)
        let file = temporaryURL("size.state")
        try StateFile.write(try generator.prefill([prompt]), for: generator.model.config, to: file)
        let size = try FileManager.default.attributesOfItem(atPath: file.path)[.size] as! Int
        #expect(size > bytes && size < bytes + 4096)
    }
}
