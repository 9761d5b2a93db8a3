import Foundation
import Mamba2
import SafeTensors
import Tokenizers

/// transformers' `pipeline("text-generation", model=…)`: prompts in, generated text out.
public struct TextGenerationPipeline: Sendable {
    public let generator: Generator

    /// Loads a model folder, its weights mapped or read into memory; without a
    /// `generation_config.json` the pipeline uses transformers' pipeline defaults (256 new tokens,
    /// sampling at temperature 0.7).
    public init(model directory: URL, residency: WeightResidency = .mapped) throws {
        let model = try Mamba2ForCausalLM(directory: directory, residency: residency)
        let tokenizer = try Tokenizer(url: directory)
        let defaults = try GenerationConfig(directory: directory) ?? .pipelineDefaults
        generator = Generator(model: model, tokenizer: tokenizer, defaults: defaults)
    }

    public init(generator: Generator) {
        self.generator = generator
    }

    /// Generates after each prompt, one at a time as transformers' pipeline does by default (no
    /// padding for the logits processors to see). Unset arguments take the model's generation
    /// config; a seed gives prompt i the seed + i. With `returnFullText` the prompt is included,
    /// as transformers does.
    public func callAsFunction(
        _ prompts: [String],
        maxNewTokens: Int? = nil, doSample: Bool? = nil, temperature: Float? = nil, topK: Int? = nil,
        topP: Float? = nil, minP: Float? = nil, repetitionPenalty: Float? = nil, stopStrings: [String]? = nil,
        seed: UInt64? = nil, returnFullText: Bool = true
    ) throws -> [String] {
        let config = generator.defaults.overriding(
            maxNewTokens: maxNewTokens, doSample: doSample, temperature: temperature, topK: topK, topP: topP, minP: minP,
            repetitionPenalty: repetitionPenalty, stopStrings: stopStrings, seed: seed)
        return try prompts.enumerated().map { index, prompt in
            var config = config
            config.seed = config.seed.map { $0 &+ UInt64(index) }
            let tokens = try generator.generate(generator.encode([prompt]).inputIDs, config: config).tokens[0]
            let text = try generator.tokenizer!.decode(tokens, skipSpecialTokens: true, skipUnknownIDs: true)
            return returnFullText ? prompt + text : text
        }
    }

    /// One prompt.
    public func callAsFunction(_ prompt: String, maxNewTokens: Int? = nil, doSample: Bool? = nil, seed: UInt64? = nil, returnFullText: Bool = true) throws -> String {
        try self([prompt], maxNewTokens: maxNewTokens, doSample: doSample, seed: seed, returnFullText: returnFullText)[0]
    }
}
