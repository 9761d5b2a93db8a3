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

    /// Generates after each prompt (as one left-padded batch). Unset arguments take the model's
    /// generation config. With `returnFullText` the prompt is included, as transformers does.
    public func callAsFunction(
        _ prompts: [String],
        maxNewTokens: Int? = nil, doSample: Bool? = nil, temperature: Float? = nil, topK: Int? = nil,
        topP: Float? = nil, minP: Float? = nil, repetitionPenalty: Float? = nil, stopStrings: [String]? = nil,
        seed: UInt64? = nil, returnFullText: Bool = true
    ) throws -> [String] {
        let config = generator.defaults.overriding(
            maxNewTokens: maxNewTokens, doSample: doSample, temperature: temperature, topK: topK, topP: topP, minP: minP,
            repetitionPenalty: repetitionPenalty, stopStrings: stopStrings, seed: seed)
        let batch = try generator.encode(prompts)
        let result = try generator.generate(batch.inputIDs, attentionMask: batch.attentionMask, config: config)
        return try zip(prompts, result.tokens).map { prompt, tokens in
            let text = try generator.tokenizer!.decode(tokens, skipSpecialTokens: true, skipUnknownIDs: true)
            return returnFullText ? prompt + text : text
        }
    }

    /// One prompt.
    public func callAsFunction(_ prompt: String, maxNewTokens: Int? = nil, doSample: Bool? = nil, seed: UInt64? = nil, returnFullText: Bool = true) throws -> String {
        try self([prompt], maxNewTokens: maxNewTokens, doSample: doSample, seed: seed, returnFullText: returnFullText)[0]
    }
}
