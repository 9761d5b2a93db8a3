import DefaultModel
import Foundation
import Testing
@testable import Generation
import Mamba2
import TestSupport

/// scripts/make_processor_goldens.py's output: transformers' processors for the
/// generation_config settings beyond the sampling basics.
enum ProcessorGoldens {
    /// Read once; never mutated.
    nonisolated(unsafe) static let file: [String: Any] = {
        let url = generationFixtures.appendingPathComponent("processors.json")
        return (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? [String: Any] ?? [:]
    }()
    static var generateCases: [[String: Any]] { file["generate"] as? [[String: Any]] ?? [] }
    static var warperRows: [[String: Any]] { file["warpers"] as? [[String: Any]] ?? [] }
    static var processorCases: [[String: Any]] { file["processors"] as? [[String: Any]] ?? [] }

    /// A row of scores as the script writes it: numbers, and "nan", "inf", "-inf".
    static func scores(_ row: Any) -> [Float] {
        (row as! [Any]).map { value in
            switch value as? String {
            case "nan": .nan
            case "inf": .infinity
            case "-inf": -.infinity
            default: (value as! NSNumber).floatValue
            }
        }
    }

    /// `settings` read back the way a model folder's file is read.
    static func config(_ settings: Any, name: String) throws -> GenerationConfig {
        let url = scratchURL("processor-\(name)-\(UUID().uuidString).json")
        try JSONSerialization.data(withJSONObject: settings).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        return try GenerationConfig(file: url)
    }
}

@Suite("logits processors against transformers")
struct ProcessorTests {
    @Test("the golden file has the cases the script writes")
    func goldensPresent() {
        #expect(ProcessorGoldens.generateCases.count == 26)
        #expect(ProcessorGoldens.warperRows.count == 6)
        #expect(ProcessorGoldens.processorCases.count == 22)
    }

    @Test("greedy generations with min length, n-gram, bad-word, bias, suppression, forcing and length-penalty settings equal transformers'",
          arguments: ProcessorGoldens.generateCases.indices)
    func generate(index: Int) throws {
        let golden = ProcessorGoldens.generateCases[index]
        let (fixture, name) = (golden["fixture"] as! String, golden["name"] as! String)
        let ids = golden["input_ids"] as! [[Int]]
        let mask = golden["attention_mask"] as? [[Int]]
        let expected = golden["new_tokens"] as! [[Int]]
        let config = try ProcessorGoldens.config(golden["settings"]!, name: name)
        let generator = Generator(model: try Mamba2ForCausalLM(directory: modelFixtures.appendingPathComponent(fixture)))
        let result = try generator.generate(ids, attentionMask: mask, config: config)
        #expect(result.tokens == expected, "\(fixture) \(name)")
        // The settings matter: without them transformers, and this package, generate something else.
        let plainConfig = try ProcessorGoldens.config(golden["unconstrained_settings"]!, name: name)
        let plain = try generator.generate(ids, attentionMask: mask, config: plainConfig)
        #expect(plain.tokens == golden["unconstrained"] as! [[Int]] && plain.tokens != expected, "\(fixture) \(name)")
    }

    @Test("one step of each processor on a padded batch part-way through generating gives transformers' scores bit for bit",
          arguments: ProcessorGoldens.processorCases.indices)
    func processors(index: Int) throws {
        let golden = ProcessorGoldens.processorCases[index]
        let name = golden["name"] as! String
        let config = try ProcessorGoldens.config(golden["settings"]!, name: name)
        let prompts = golden["prompt"] as! [[Int]], mask = golden["attention_mask"] as! [[Int]], new = golden["new"] as! [[Int]]
        let processors = LogitsProcessorList(config: config, eos: config.eosTokenIDs ?? [], prompts: prompts, budget: config.maxNewTokens!)
        for row in prompts.indices {
            let real = zip(prompts[row], mask[row]).filter { $0.1 == 1 }.map(\.0) + new[row]
            let processed = processors(ProcessorGoldens.scores((golden["scores"] as! [Any])[row]), row: row,
                                       tokens: prompts[row] + new[row], seen: Set(real))
            let expected = ProcessorGoldens.scores((golden["expected"] as! [Any])[row])
            let differing = processed.indices.filter {
                processed[$0].bitPattern != expected[$0].bitPattern && !(processed[$0].isNaN && expected[$0].isNaN)
            }.prefix(8)
            #expect(differing.isEmpty,
                    "\(name) row \(row): tokens \(differing) got \(differing.map { processed[$0] }) expected \(differing.map { expected[$0] })")
        }
    }

    @Test("an unset max_length gives 20 new tokens whatever the prompt's length; a set one counts the prompt")
    func lengthBudget() throws {
        var config = GenerationConfig()
        #expect(config.newTokenBudget(promptLength: 30) == 20)
        config.maxLength = 64
        #expect(config.newTokenBudget(promptLength: 30) == 34 && config.newTokenBudget(promptLength: 70) == 0)
        config.maxNewTokens = 5
        #expect(config.newTokenBudget(promptLength: 30) == 5)
    }

    @Test("the continuous batcher applies the same processors as generate")
    func batcher() async throws {
        let generator = try Generator(directory: DefaultModel.directory)
        let batcher = try ContinuousBatcher(generator: generator, maxBatch: 2, maxQueue: 4)
        let ids = try generator.tokenizer!.encode("def fibonacci(n):").ids
        var config = generator.defaults.overriding(maxNewTokens: 40, doSample: false, minNewTokens: 30, noRepeatNGramSize: 2)
        config.typicalP = 0.5  // ignored when greedy, as in transformers
        var text = ""
        for try await event in try batcher.submit(BatchedRequest(promptIDs: ids, config: config)) {
            if case let .text(piece) = event { text += piece }
        }
        let solo = try generator.generate([ids], config: config)
        #expect(text == (try generator.tokenizer!.decode(solo.tokens[0], skipSpecialTokens: true)))
        let plain = try generator.generate([ids], config: generator.defaults.overriding(maxNewTokens: 40, doSample: false))
        #expect(plain.tokens[0] != solo.tokens[0], "the settings change the text")
        var timed = generator.defaults.overriding(maxNewTokens: 40)
        timed.maxTime = 0
        var finish: BatchedEvent?
        for try await event in try batcher.submit(BatchedRequest(promptIDs: ids, config: timed)) {
            if case .finished = event { finish = event }
        }
        #expect(finish == .finished(.length, promptTokens: ids.count, completionTokens: 1))
        await batcher.shutdown(grace: 1)
    }

    @Test("typical, epsilon and eta sampling (alone and after temperature, top-k, top-p, min-p) keep transformers' tokens",
          arguments: ProcessorGoldens.warperRows.indices)
    func warpers(index: Int) throws {
        let row = ProcessorGoldens.warperRows[index]
        let scores = (row["scores"] as! [Any]).map { ($0 as? NSNumber)?.floatValue ?? -.infinity }
        for testCase in row["cases"] as! [[String: Any]] {
            let config = try ProcessorGoldens.config(testCase["settings"]!, name: "warper")
            let processors = LogitsProcessorList(config: config, eos: [], prompts: [[0]], budget: 1)
            let processed = processors(scores, row: 0, tokens: [0], seen: [0])
            let kept = processed.indices.filter { processed[$0] != -.infinity }
            #expect(kept == testCase["kept"] as! [Int], "\(row["name"]!) \(testCase["name"]!) \(testCase["settings"]!)")
        }
    }

    @Test("no-repeat n-grams ban what would complete an earlier n-gram; n = 1 bans every token seen")
    func noRepeat() {
        var scores = [Float](repeating: 0, count: 8)
        LogitsProcessing.noRepeatNGram(&scores, tokens: [1, 2, 3, 1, 2, 5, 1, 2], size: 3)
        #expect(scores.indices.filter { scores[$0] == -.infinity } == [3, 5])
        scores = [Float](repeating: 0, count: 8)
        LogitsProcessing.noRepeatNGram(&scores, tokens: [4, 6, 4], size: 1)
        #expect(scores.indices.filter { scores[$0] == -.infinity } == [4, 6])
        scores = [Float](repeating: 0, count: 8)
        LogitsProcessing.noRepeatNGram(&scores, tokens: [4, 6], size: 3)
        #expect(!scores.contains(-.infinity))
    }

    @Test("extreme settings saturate instead of trapping; negative EOS ids are passed over")
    func extremes() {
        var config = GenerationConfig()
        config.minNewTokens = .max
        config.eosTokenIDs = [-1, 3]
        config.exponentialDecayLengthPenalty = .init(start: .min, factor: 1.01)
        config.forcedEOSTokenIDs = [-5]
        let processors = LogitsProcessorList(config: config, eos: [-1, 3], prompts: [[1, 2]], budget: .max)
        let scores = processors([0.5, -1, 2, 4, 1], row: 0, tokens: [1, 2, 7], seen: [1, 2, 7])
        #expect(scores[3] == -.infinity && scores.filter { $0 == -.infinity }.count == 1)
    }

    @Test("a max_length the prompt already reaches is an error, as in transformers")
    func maxLengthReached() throws {
        let generator = Generator(model: try Mamba2ForCausalLM(directory: modelFixtures.appendingPathComponent("g1-tied")))
        var config = GenerationConfig()
        config.maxLength = 3
        #expect(throws: GenerationError.self) { try generator.generate([[4, 5, 6]], config: config) }
        config.maxLength = 5
        #expect(try generator.generate([[4, 5, 6]], config: config).tokens[0].count <= 2)
    }

    @Test("max_time stops every row after the token that passes it")
    func maxTime() throws {
        let generator = Generator(model: try Mamba2ForCausalLM(directory: modelFixtures.appendingPathComponent("g1-tied")))
        var config = GenerationConfig()
        config.maxNewTokens = 40
        config.eosTokenIDs = []
        config.maxTime = 1e-9
        let result = try generator.generate([[5, 6, 7], [8, 9, 10]], config: config)
        #expect(result.tokens.map(\.count) == [1, 1])
        #expect(result.finishReasons == [.length, .length])
    }

    @Test("settings that select another search are refused by name when generating; off values, or removing them, are accepted",
          arguments: [("num_beams", "4"), ("num_beam_groups", "2"), ("num_return_sequences", "3"), ("penalty_alpha", "0.6"),
                      ("guidance_scale", "1.5"), ("top_h", "0.3"), ("dola_layers", "\"high\""), ("watermarking_config", "{}"),
                      ("constraints", "[]"), ("force_words_ids", "[[1]]"), ("token_healing", "true")])
    func unsupported(key: String, value: String) throws {
        let url = scratchURL("unsupported-\(key).json")
        // Sampling for top_h (it acts only then), greedy for the others (penalty_alpha's mode).
        try Data("{\"do_sample\": \(key == "top_h"), \"\(key)\": \(value)}".utf8).write(to: url)
        var config = try GenerationConfig(file: url)
        #expect(throws: GenerationError.unsupportedSetting(file: url.path, name: key, value: value)) { try config.validate() }
        config.unsupported.removeAll { $0.name == key }
        try config.validate()
        let off = ["num_beams": "1", "num_beam_groups": "1", "num_return_sequences": "1", "penalty_alpha": "0", "guidance_scale": "1",
                   "token_healing": "false"][key] ?? "null"
        try Data("{\"\(key)\": \(off)}".utf8).write(to: url)
        try GenerationConfig(file: url).validate()
    }

    @Test("penalty_alpha acts only in greedy decoding with top-k > 1, top_h only when sampling")
    func modeSettings() throws {
        let url = scratchURL("modes.json")
        try Data("{\"do_sample\": true, \"penalty_alpha\": 0.6, \"top_h\": 0.4}".utf8).write(to: url)
        var config = try GenerationConfig(file: url)
        #expect(throws: GenerationError.unsupportedSetting(file: url.path, name: "top_h", value: "0.4")) { try config.validate() }
        config.doSample = false
        #expect(throws: GenerationError.unsupportedSetting(file: url.path, name: "penalty_alpha", value: "0.6")) { try config.validate() }
        config.topK = 1
        try config.validate()
    }

    @Test("malformed processor settings in a file name the key", arguments: [
        ("bad_words_ids", "[1, 2]"), ("bad_words_ids", "[[1.5]]"), ("sequence_bias", "[[1, 2.0]]"), ("sequence_bias", "{\"1\": 2}"),
        ("exponential_decay_length_penalty", "[1]"), ("suppress_tokens", "3"), ("forced_eos_token_id", "\"x\""),
        ("no_repeat_ngram_size", "2.5"), ("remove_invalid_values", "\"yes\""),
    ])
    func malformed(key: String, value: String) throws {
        let url = scratchURL("malformed-\(key).json")
        try Data("{\"\(key)\": \(value)}".utf8).write(to: url)
        do {
            _ = try GenerationConfig(file: url)
            Issue.record("\(key) = \(value) was accepted")
        } catch let error as GenerationError {
            guard case let .malformedFile(file, reason) = error else { Issue.record("\(error)"); return }
            #expect(file == url.path)
            #expect(reason.contains(key), "\(reason)")
        }
    }

    @Test("out-of-range processor settings are invalid settings named by key")
    func invalid() throws {
        let generator = Generator(model: try Mamba2ForCausalLM(directory: modelFixtures.appendingPathComponent("g1-tied")))
        let cases: [(String, (inout GenerationConfig) -> Void)] = [
            ("typical_p", { $0.typicalP = 0 }), ("epsilon_cutoff", { $0.epsilonCutoff = 1 }), ("eta_cutoff", { $0.etaCutoff = -0.1 }),
            ("no_repeat_ngram_size", { $0.noRepeatNGramSize = -1 }), ("min_new_tokens", { $0.minNewTokens = -2 }),
            ("bad_words_ids", { $0.badWordsIDs = [[]] }), ("bad_words_ids", { $0.badWordsIDs = [[3, 50]] }),
            ("sequence_bias", { $0.sequenceBias = [.init(tokens: [-1], bias: 1)] }), ("suppress_tokens", { $0.suppressTokens = [50] }),
            ("forced_eos_token_id", { $0.forcedEOSTokenIDs = [] }), ("forced_bos_token_id", { $0.forcedBOSTokenID = 99 }),
            ("exponential_decay_length_penalty", { $0.exponentialDecayLengthPenalty = .init(start: 2, factor: .infinity) }),
            ("max_time", { $0.maxTime = -1 }), ("encoder_repetition_penalty", { $0.encoderRepetitionPenalty = 0 }),
            ("encoder_no_repeat_ngram_size", { $0.encoderNoRepeatNGramSize = -1 }),
        ]
        for (name, change) in cases {
            var config = GenerationConfig()
            config.maxNewTokens = 2
            change(&config)
            do {
                _ = try generator.generate([[3, 4]], config: config)
                Issue.record("\(name): accepted")
            } catch let GenerationError.invalidSetting(setting, _) {
                #expect(setting == name)
            }
        }
    }
}
