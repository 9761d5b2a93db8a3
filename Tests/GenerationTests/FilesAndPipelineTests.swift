import DefaultModel
import Foundation
import Testing
@testable import Generation
import Mamba2
import SafeTensors
import Tensors

@Suite("generation config, state files and the pipeline")
struct FilesAndPipelineTests {
    @Test("generation_config.json gives the defaults; the call's settings override them")
    func generationConfig() throws {
        let config = try #require(try GenerationConfig(directory: DefaultModel.directory))
        #expect(config.doSample && config.temperature == 0.7 && config.topK == 50 && config.topP == 0.95)
        #expect(config.repetitionPenalty == 1.1 && config.maxNewTokens == 128)
        #expect(config.eosTokenIDs == [0] && config.padTokenID == 1)
        #expect(try GenerationConfig(directory: modelFixtures.appendingPathComponent("g1-mamba-ssm")) == nil)

        let file = temporaryURL("generation_config.json")
        try Data(#"{"temperature": "hot"}"#.utf8).write(to: file)
        #expect(throws: GenerationError.malformedFile(file: file.path, reason: "temperature must be a number")) { try GenerationConfig(file: file) }
        try Data("{".utf8).write(to: file)
        #expect(throws: GenerationError.malformedFile(file: file.path, reason: "not valid JSON")) { try GenerationConfig(file: file) }
        try Data(#"{"eos_token_id": [1, 2], "max_length": 30, "stop_strings": "END"}"#.utf8).write(to: file)
        let parsed = try GenerationConfig(file: file)
        #expect(parsed.eosTokenIDs == [1, 2] && parsed.maxLength == 30 && parsed.stopStrings == ["END"])
        #expect(parsed.newTokenBudget(promptLength: 12) == 18)
    }

    @Test("bad or mismatched state files are named errors")
    func badStateFiles() throws {
        let small = try Mamba2ForCausalLM(directory: modelFixtures.appendingPathComponent("g1-tied"))
        let other = try Mamba2ForCausalLM(directory: modelFixtures.appendingPathComponent("g2-fp32"))
        let generator = Generator(model: small)
        let file = temporaryURL("state")
        try StateFile.write(try generator.prefill([[1, 2, 3]]), for: small.config, to: file)
        #expect(try StateFile.read(file, for: small.config).history == [[1, 2, 3]])
        #expect(throws: GenerationError.stateMismatch(file: file.path, reason: "saved for head_dim = 5, the model has 8")) {
            try StateFile.read(file, for: other.config)
        }

        let foreign = temporaryURL("foreign")
        try SafeTensorsWriter.write(["x": WeightView(Tensor(zeros: [1]))], to: foreign)
        #expect(throws: GenerationError.malformedFile(file: foreign.path, reason: "not a swift-mamba2 state file (metadata format is missing)")) {
            try StateFile.read(foreign, for: small.config)
        }

        let truncated = temporaryURL("truncated")
        try Data(try Data(contentsOf: file).prefix(100)).write(to: truncated)
        #expect(throws: SafeTensorsError.self) { try StateFile.read(truncated, for: small.config) }

        var session = try generator.prefill([[1, 2, 3]])
        session.history = [[1, 2, 999]]
        let badHistory = temporaryURL("history")
        try StateFile.write(session, for: small.config, to: badHistory)
        #expect(throws: GenerationError.malformedFile(file: badHistory.path, reason: "token history holds \"999\", not a token id")) {
            try StateFile.read(badHistory, for: small.config)
        }
    }

    @Test("the pipeline returns the prompt and its continuation, like transformers")
    func pipeline() throws {
        let pipeline = try TextGenerationPipeline(model: DefaultModel.directory)
        let full = try pipeline("def fibonacci(n):", maxNewTokens: 8, doSample: false)
        let tail = try pipeline("def fibonacci(n):", maxNewTokens: 8, doSample: false, returnFullText: false)
        #expect(full == "def fibonacci(n):" + tail)
        let seeded = try pipeline(["import os", "x = "], maxNewTokens: 6, seed: 3)
        #expect(seeded == (try pipeline(["import os", "x = "], maxNewTokens: 6, seed: 3)))
        #expect(seeded[0].hasPrefix("import os") && seeded[1].hasPrefix("x = "))
    }

    @Test("without generation_config.json the pipeline uses transformers' pipeline defaults")
    func pipelineDefaults() throws {
        let directory = temporaryURL("model")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for name in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: DefaultModel.directory.appendingPathComponent(name), to: directory.appendingPathComponent(name))
        }
        let pipeline = try TextGenerationPipeline(model: directory)
        #expect(pipeline.generator.defaults.maxNewTokens == 256)
        #expect(pipeline.generator.defaults.doSample && pipeline.generator.defaults.temperature == 0.7)
    }
}

@Suite("generation edge cases from review")
struct GenerationEdgeCaseTests {
    @Test("an unsettled session cannot be saved; ragged continuations are refused")
    func sessions() throws {
        let generator = Generator(model: try Mamba2ForCausalLM(directory: modelFixtures.appendingPathComponent("g1-tied")))
        var config = GenerationConfig()
        config.maxNewTokens = 3
        let result = try generator.generate([[1, 2], [3, 4]], config: config)
        #expect(result.session.pending != nil)
        #expect(throws: GenerationError.invalidInput("the session's last tokens are not yet in its state: save Generator.settle(session)")) {
            try StateFile.write(result.session, for: generator.model.config, to: temporaryURL("pending"))
        }
        #expect(throws: GenerationError.invalidInput("a continuation must add the same number of tokens to every row")) {
            try generator.extend(result.session, with: [[], [5, 6]])
        }
        let extended = try generator.extend(result.session, with: [[5], [6]])
        #expect(extended.history[0].suffix(1) == [5] && extended.pending == nil)
    }

    @Test("an unset EOS falls back to the model's, as transformers merges configs")
    func eosFallback() throws {
        let model = try Mamba2ForCausalLM(directory: modelFixtures.appendingPathComponent("g1-tied"))
        var config = GenerationConfig()
        config.maxNewTokens = 12
        let free = try Generator(model: model, defaults: { var d = GenerationConfig(); d.eosTokenIDs = [-1]; return d }()).generate([[7, 8, 9]], config: config).tokens[0]
        var defaults = GenerationConfig()
        defaults.eosTokenIDs = [free[0]]
        let stopped = try Generator(model: model, defaults: defaults).generate([[7, 8, 9]], config: config)
        #expect(stopped.tokens[0] == [free[0]] && stopped.finishReasons == [.stop])
    }
}
