import Foundation

/// transformers' `GenerationConfig`, for the settings Mamba-2 decoding uses, with transformers'
/// defaults. Read from `generation_config.json`; a call's arguments override it.
public struct GenerationConfig: Sendable, Equatable {
    /// `max_new_tokens`: tokens to generate (wins over `max_length`).
    public var maxNewTokens: Int?
    /// `max_length`, default 20: prompt (padded) plus new tokens.
    public var maxLength = 20
    /// `do_sample`, default false (greedy).
    public var doSample = false
    /// `temperature`, default 1.
    public var temperature: Float = 1
    /// `top_k`, default 50 (0 disables).
    public var topK = 50
    /// `top_p`, default 1 (disabled).
    public var topP: Float = 1
    /// `min_p`, default none.
    public var minP: Float?
    /// `repetition_penalty`, default 1 (disabled).
    public var repetitionPenalty: Float = 1
    /// `eos_token_id`: one id or several; nil (unset) means the model's, `[]` means none.
    public var eosTokenIDs: [Int]?
    /// `pad_token_id`: what finished rows emit (transformers falls back to the first EOS id).
    public var padTokenID: Int?
    /// `bos_token_id`.
    public var bosTokenID: Int?
    /// `stop_strings`: stop a row once its new text contains one of these.
    public var stopStrings: [String] = []
    /// Seed of the sampler's generator (a random seed when nil).
    public var seed: UInt64?

    public init() {}

    /// The defaults transformers' text-generation pipeline uses for a model without a
    /// generation config: 256 new tokens, sampling at temperature 0.7.
    public static var pipelineDefaults: GenerationConfig {
        var config = GenerationConfig()
        config.maxNewTokens = 256
        config.doSample = true
        config.temperature = 0.7
        return config
    }

    /// This config with the given settings replaced (nil keeps the current value).
    public func overriding(
        maxNewTokens: Int? = nil, doSample: Bool? = nil, temperature: Float? = nil, topK: Int? = nil, topP: Float? = nil,
        minP: Float? = nil, repetitionPenalty: Float? = nil, stopStrings: [String]? = nil, seed: UInt64? = nil
    ) -> GenerationConfig {
        var config = self
        if let maxNewTokens { config.maxNewTokens = maxNewTokens }
        if let doSample { config.doSample = doSample }
        if let temperature { config.temperature = temperature }
        if let topK { config.topK = topK }
        if let topP { config.topP = topP }
        if let minP { config.minP = minP }
        if let repetitionPenalty { config.repetitionPenalty = repetitionPenalty }
        if let stopStrings { config.stopStrings = stopStrings }
        if let seed { config.seed = seed }
        return config
    }

    /// How many tokens to generate after a prompt of `promptLength` (padded) tokens.
    public func newTokenBudget(promptLength: Int) -> Int {
        maxNewTokens ?? max(0, maxLength - promptLength)
    }

    /// Throws for settings transformers rejects (and a few it only warns about).
    public func validate() throws {
        if let maxNewTokens, maxNewTokens < 0 {
            throw GenerationError.invalidSetting(name: "max_new_tokens", reason: "must be ≥ 0, got \(maxNewTokens)")
        }
        guard maxLength >= 0 else { throw GenerationError.invalidSetting(name: "max_length", reason: "must be ≥ 0, got \(maxLength)") }
        guard temperature.isFinite, temperature >= 0 else {
            throw GenerationError.invalidSetting(name: "temperature", reason: "must be a finite number ≥ 0, got \(temperature)")
        }
        if doSample && temperature == 0 {
            throw GenerationError.invalidSetting(name: "temperature", reason: "must be > 0 when sampling (use greedy decoding for temperature 0)")
        }
        guard topK >= 0 else { throw GenerationError.invalidSetting(name: "top_k", reason: "must be ≥ 0, got \(topK)") }
        guard topP > 0, topP <= 1 else { throw GenerationError.invalidSetting(name: "top_p", reason: "must be in (0, 1], got \(topP)") }
        if let minP, !(0...1).contains(minP) {
            throw GenerationError.invalidSetting(name: "min_p", reason: "must be in [0, 1], got \(minP)")
        }
        guard repetitionPenalty.isFinite, repetitionPenalty > 0 else {
            throw GenerationError.invalidSetting(name: "repetition_penalty", reason: "must be a finite number > 0, got \(repetitionPenalty)")
        }
        if stopStrings.contains("") { throw GenerationError.invalidSetting(name: "stop_strings", reason: "a stop string must not be empty") }
    }
}

extension GenerationConfig {
    /// Reads `generation_config.json` from a model folder, or returns nil when there is none.
    public init?(directory: URL) throws {
        let url = directory.appendingPathComponent("generation_config.json")
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        try self.init(file: url)
    }

    public init(file url: URL) throws {
        self.init()
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: try Data(contentsOf: url))
        } catch {
            throw GenerationError.malformedFile(file: url.path, reason: "not valid JSON")
        }
        guard let fields = object as? [String: Any] else {
            throw GenerationError.malformedFile(file: url.path, reason: "the top level must be a JSON object")
        }
        func number(_ key: String) throws -> Double? {
            guard let value = fields[key], !(value is NSNull) else { return nil }
            guard let number = value as? NSNumber else {
                throw GenerationError.malformedFile(file: url.path, reason: "\(key) must be a number")
            }
            return number.doubleValue
        }
        func integer(_ key: String) throws -> Int? {
            guard let value = try number(key) else { return nil }
            guard let integer = Int(exactly: value) else { throw GenerationError.malformedFile(file: url.path, reason: "\(key) must be an integer") }
            return integer
        }
        maxNewTokens = try integer("max_new_tokens")
        maxLength = try integer("max_length") ?? maxLength
        if let value = fields["do_sample"], !(value is NSNull) {
            guard let flag = value as? Bool else { throw GenerationError.malformedFile(file: url.path, reason: "do_sample must be true or false") }
            doSample = flag
        }
        temperature = try number("temperature").map(Float.init) ?? temperature
        topK = try integer("top_k") ?? topK
        topP = try number("top_p").map(Float.init) ?? topP
        minP = try number("min_p").map(Float.init)
        repetitionPenalty = try number("repetition_penalty").map(Float.init) ?? repetitionPenalty
        padTokenID = try integer("pad_token_id")
        bosTokenID = try integer("bos_token_id")
        if let value = fields["eos_token_id"] {
            if value is NSNull {
                eosTokenIDs = []
            } else if let list = value as? [NSNumber] {
                eosTokenIDs = list.map(\.intValue)
            } else if let single = value as? NSNumber {
                eosTokenIDs = [single.intValue]
            } else {
                throw GenerationError.malformedFile(file: url.path, reason: "eos_token_id must be an integer or a list of integers")
            }
        }
        if let value = fields["stop_strings"], !(value is NSNull) {
            if let list = value as? [String] {
                stopStrings = list
            } else if let single = value as? String {
                stopStrings = [single]
            } else {
                throw GenerationError.malformedFile(file: url.path, reason: "stop_strings must be a string or a list of strings")
            }
        }
    }
}
