import Foundation

/// transformers' `GenerationConfig`, for the settings of greedy and sampled decoding, with
/// transformers' defaults. Read from `generation_config.json`; a call's arguments override it.
/// Settings of another search (beams, contrastive search, guidance, …) that a file turns on are
/// kept in `unsupported` and refused by name when generating, never ignored.
public struct GenerationConfig: Sendable, Equatable {
    /// `max_new_tokens`: tokens to generate (wins over `max_length`).
    public var maxNewTokens: Int?
    /// `max_length`: prompt (padded) plus new tokens; unset (and no `max_new_tokens`), 20 new
    /// tokens, as transformers 5.x.
    public var maxLength: Int?
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
    /// `typical_p`, default 1 (disabled): locally typical sampling's probability mass.
    public var typicalP: Float = 1
    /// `epsilon_cutoff`, default 0 (disabled): tokens less likely than this are removed.
    public var epsilonCutoff: Float = 0
    /// `eta_cutoff`, default 0 (disabled): as `epsilon_cutoff`, the cutoff lowered when the
    /// distribution's entropy is high.
    public var etaCutoff: Float = 0
    /// `repetition_penalty`, default 1 (disabled).
    public var repetitionPenalty: Float = 1
    /// `encoder_repetition_penalty`, default 1 (disabled): the prompt's tokens (its padding
    /// included) have their scores multiplied by it when positive, divided when negative. In
    /// double precision: transformers scales by its reciprocal, taken in Python floats.
    public var encoderRepetitionPenalty: Double = 1
    /// `no_repeat_ngram_size`, default 0 (disabled): no n-gram of this many tokens occurs twice in
    /// a row's tokens (prompt included).
    public var noRepeatNGramSize = 0
    /// `encoder_no_repeat_ngram_size`, default 0 (disabled): no n-gram of the prompt (its
    /// padding included) is generated again.
    public var encoderNoRepeatNGramSize = 0
    /// `bad_words_ids`: token sequences never generated (a sequence of one EOS id alone is not
    /// banned, as in transformers).
    public var badWordsIDs: [[Int]]?
    /// `sequence_bias`: added to a token's score when it would complete the sequence.
    public var sequenceBias: [SequenceBias] = []
    /// `min_length`, default 0: EOS is banned while the (padded) prompt and the new tokens are
    /// shorter than this.
    public var minLength = 0
    /// `min_new_tokens`: EOS is banned for this many new tokens (wins over `min_length`).
    public var minNewTokens: Int?
    /// `forced_bos_token_id`: the first token when the prompt is one token long.
    public var forcedBOSTokenID: Int?
    /// `forced_eos_token_id`: the last token the budget allows (one id or several).
    public var forcedEOSTokenIDs: [Int]?
    /// `remove_invalid_values`, default false: NaN scores become 0 and ±∞ the largest finite ones.
    public var removeInvalidValues = false
    /// `exponential_decay_length_penalty`: EOS scores raised by `factor^i` after `start` new tokens.
    public var exponentialDecayLengthPenalty: LengthPenalty?
    /// `suppress_tokens`: tokens never generated.
    public var suppressTokens: [Int] = []
    /// `begin_suppress_tokens`: tokens not generated as the first new token.
    public var beginSuppressTokens: [Int] = []
    /// `max_time`: seconds from the call's start (the prompt's pass included, as transformers
    /// counts) after which every row stops at its next token (finish reason `length`).
    public var maxTime: Double?
    /// Settings a file turned on that select what this package does not implement: `validate()`
    /// refuses them by name. Remove one to generate without it, knowingly.
    public var unsupported: [UnsupportedSetting] = []
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

    /// One `sequence_bias` entry: `bias` is added to the score of `tokens.last` when the row's
    /// tokens end with the others.
    public struct SequenceBias: Sendable, Equatable {
        public var tokens: [Int]
        public var bias: Float
        public init(tokens: [Int], bias: Float) { (self.tokens, self.bias) = (tokens, bias) }
    }

    /// A `generation_config.json` setting this package does not implement, as the file gave it.
    public struct UnsupportedSetting: Sendable, Equatable {
        public var file: String
        /// The transformers key and its value as JSON text.
        public var name: String, value: String
        /// The value when it is a number, for the settings that act only in some modes.
        var number: Double?

        public init(file: String, name: String, value: String) {
            (self.file, self.name, self.value) = (file, name, value)
            number = Double(value)
        }

        /// Whether it changes what `config` generates: contrastive search's `penalty_alpha` acts
        /// only in greedy decoding with top-k > 1, `top_h` only when sampling.
        func acts(in config: GenerationConfig) -> Bool {
            switch name {
            case "penalty_alpha": (number ?? 0) > 0 && !config.doSample && config.topK > 1
            case "top_h": config.doSample
            default: true
            }
        }
    }

    /// `exponential_decay_length_penalty` `(start, factor)`; the factor in double precision, as
    /// transformers raises it to a power.
    public struct LengthPenalty: Sendable, Equatable {
        public var start: Int
        public var factor: Double
        public init(start: Int, factor: Double) { (self.start, self.factor) = (start, factor) }
    }

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
        minP: Float? = nil, repetitionPenalty: Float? = nil, minNewTokens: Int? = nil, noRepeatNGramSize: Int? = nil,
        stopStrings: [String]? = nil, seed: UInt64? = nil
    ) -> GenerationConfig {
        var config = self
        if let maxNewTokens { config.maxNewTokens = maxNewTokens }
        if let doSample { config.doSample = doSample }
        if let temperature { config.temperature = temperature }
        if let topK { config.topK = topK }
        if let topP { config.topP = topP }
        if let minP { config.minP = minP }
        if let repetitionPenalty { config.repetitionPenalty = repetitionPenalty }
        if let minNewTokens { config.minNewTokens = minNewTokens }
        if let noRepeatNGramSize { config.noRepeatNGramSize = noRepeatNGramSize }
        if let stopStrings { config.stopStrings = stopStrings }
        if let seed { config.seed = seed }
        return config
    }

    /// How many tokens to generate after a prompt of `promptLength` (padded) tokens.
    public func newTokenBudget(promptLength: Int) -> Int {
        maxNewTokens ?? maxLength.map { max(0, $0 - promptLength) } ?? 20
    }

    /// Throws for settings transformers rejects, values outside a setting's range (also where
    /// transformers would skip the processor without a word), and the `unsupported` ones.
    public func validate() throws {
        if let maxNewTokens, maxNewTokens < 0 {
            throw GenerationError.invalidSetting(name: "max_new_tokens", reason: "must be ≥ 0, got \(maxNewTokens)")
        }
        if let maxLength, maxLength < 0 { throw GenerationError.invalidSetting(name: "max_length", reason: "must be ≥ 0, got \(maxLength)") }
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
        for (name, penalty) in [("repetition_penalty", Double(repetitionPenalty)), ("encoder_repetition_penalty", encoderRepetitionPenalty)]
        where !(penalty.isFinite && penalty > 0) {
            throw GenerationError.invalidSetting(name: name, reason: "must be a finite number > 0, got \(penalty)")
        }
        guard typicalP > 0, typicalP <= 1 else { throw GenerationError.invalidSetting(name: "typical_p", reason: "must be in (0, 1], got \(typicalP)") }
        for (name, cutoff) in [("epsilon_cutoff", epsilonCutoff), ("eta_cutoff", etaCutoff)] where !(cutoff >= 0 && cutoff < 1) {
            throw GenerationError.invalidSetting(name: name, reason: "must be in [0, 1), got \(cutoff)")
        }
        let counts = [
            ("no_repeat_ngram_size", noRepeatNGramSize), ("encoder_no_repeat_ngram_size", encoderNoRepeatNGramSize),
            ("min_length", minLength), ("min_new_tokens", minNewTokens ?? 0),
        ]
        for (name, value) in counts where value < 0 {
            throw GenerationError.invalidSetting(name: name, reason: "must be ≥ 0, got \(value)")
        }
        if let badWordsIDs {
            guard !badWordsIDs.isEmpty, badWordsIDs.allSatisfy({ !$0.isEmpty }) else {
                throw GenerationError.invalidSetting(name: "bad_words_ids", reason: "must be a non-empty list of non-empty lists of token ids")
            }
        }
        if sequenceBias.contains(where: { $0.tokens.isEmpty || $0.bias.isNaN }) {
            throw GenerationError.invalidSetting(name: "sequence_bias", reason: "each entry needs a non-empty token list and a bias")
        }
        for (name, ids) in namedTokenIDs {
            if let negative = ids.first(where: { $0 < 0 }) { throw GenerationError.invalidSetting(name: name, reason: "token id \(negative) is negative") }
        }
        if forcedEOSTokenIDs?.isEmpty == true {
            throw GenerationError.invalidSetting(name: "forced_eos_token_id", reason: "must name at least one token")
        }
        if let penalty = exponentialDecayLengthPenalty, !penalty.factor.isFinite {
            throw GenerationError.invalidSetting(name: "exponential_decay_length_penalty", reason: "needs a finite factor, got \(penalty.factor)")
        }
        if let maxTime, !(maxTime >= 0 && maxTime.isFinite) {
            throw GenerationError.invalidSetting(name: "max_time", reason: "must be a finite number of seconds ≥ 0, got \(maxTime)")
        }
        if let setting = unsupported.first(where: { $0.acts(in: self) }) {
            throw GenerationError.unsupportedSetting(file: setting.file, name: setting.name, value: setting.value)
        }
        if stopStrings.contains("") { throw GenerationError.invalidSetting(name: "stop_strings", reason: "a stop string must not be empty") }
    }

    /// The token ids the settings name, by transformers key.
    private var namedTokenIDs: [(name: String, ids: [Int])] {
        [
            ("bad_words_ids", badWordsIDs?.flatMap { $0 } ?? []), ("sequence_bias", sequenceBias.flatMap(\.tokens)),
            ("suppress_tokens", suppressTokens), ("begin_suppress_tokens", beginSuppressTokens),
            ("forced_bos_token_id", forcedBOSTokenID.map { [$0] } ?? []), ("forced_eos_token_id", forcedEOSTokenIDs ?? []),
        ]
    }

    /// `validate()`, then for this model and prompt: token ids a `vocabularySize`-token model
    /// cannot score, and, as transformers does, a `max_length` the (padded) prompt already reaches.
    func validate(vocabularySize: Int, promptLength: Int) throws {
        try validate()
        if maxNewTokens == nil, let maxLength, promptLength >= maxLength {
            throw GenerationError.invalidSetting(
                name: "max_length", reason: "is \(maxLength) and the prompt already has \(promptLength) tokens: set max_new_tokens or a larger max_length")
        }
        for (name, ids) in namedTokenIDs {
            if let outside = ids.first(where: { $0 >= vocabularySize }) {
                throw GenerationError.invalidSetting(name: name, reason: "token id \(outside) is outside the model's \(vocabularySize)-token vocabulary")
            }
        }
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
        func flag(_ key: String) throws -> Bool? {
            guard let value = fields[key], !(value is NSNull) else { return nil }
            guard let flag = value as? Bool else { throw GenerationError.malformedFile(file: url.path, reason: "\(key) must be true or false") }
            return flag
        }
        // A list of token ids; numbers that are not integers fail.
        func ids(_ value: Any, _ key: String) throws -> [Int] {
            guard let list = value as? [Any] else { throw GenerationError.malformedFile(file: url.path, reason: "\(key) must be a list of token ids") }
            return try list.map { item in
                guard let number = item as? NSNumber, let id = Int(exactly: number.doubleValue) else {
                    throw GenerationError.malformedFile(file: url.path, reason: "\(key) must hold integer token ids")
                }
                return id
            }
        }
        func idList(_ key: String) throws -> [Int]? {
            guard let value = fields[key], !(value is NSNull) else { return nil }
            return try ids(value, key)
        }
        func idOrList(_ key: String) throws -> [Int]? {
            guard let value = fields[key], !(value is NSNull) else { return nil }
            if value is [Any] { return try ids(value, key) }
            return try ids([value], key)
        }
        for (key, isOff) in Self.otherSearchSettings {
            guard let value = fields[key], !(value is NSNull), !isOff(value) else { continue }
            let text = (try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]))
                .flatMap { String(data: $0, encoding: .utf8) } ?? "\(value)"
            unsupported.append(UnsupportedSetting(file: url.path, name: key, value: text))
        }
        maxNewTokens = try integer("max_new_tokens")
        maxLength = try integer("max_length")
        doSample = try flag("do_sample") ?? doSample
        temperature = try number("temperature").map(Float.init) ?? temperature
        topK = try integer("top_k") ?? topK
        topP = try number("top_p").map(Float.init) ?? topP
        minP = try number("min_p").map(Float.init)
        typicalP = try number("typical_p").map(Float.init) ?? typicalP
        epsilonCutoff = try number("epsilon_cutoff").map(Float.init) ?? epsilonCutoff
        etaCutoff = try number("eta_cutoff").map(Float.init) ?? etaCutoff
        repetitionPenalty = try number("repetition_penalty").map(Float.init) ?? repetitionPenalty
        encoderRepetitionPenalty = try number("encoder_repetition_penalty") ?? encoderRepetitionPenalty
        noRepeatNGramSize = try integer("no_repeat_ngram_size") ?? noRepeatNGramSize
        encoderNoRepeatNGramSize = try integer("encoder_no_repeat_ngram_size") ?? encoderNoRepeatNGramSize
        if let value = fields["bad_words_ids"], !(value is NSNull) {
            guard let lists = value as? [Any] else { throw GenerationError.malformedFile(file: url.path, reason: "bad_words_ids must be a list of lists of token ids") }
            badWordsIDs = try lists.map { try ids($0, "bad_words_ids") }
        }
        if let value = fields["sequence_bias"], !(value is NSNull) {
            // The list form transformers takes from JSON: `[[[ids…], bias], …]` (a dict's tuple keys
            // would be strings there, which transformers cannot use either).
            guard let entries = value as? [Any], !entries.isEmpty else {
                throw GenerationError.malformedFile(file: url.path, reason: "sequence_bias must be a non-empty list of [token ids, bias] pairs")
            }
            sequenceBias = try entries.map { entry in
                guard let pair = entry as? [Any], pair.count == 2, let bias = pair[1] as? NSNumber else {
                    throw GenerationError.malformedFile(file: url.path, reason: "sequence_bias must be a list of [token ids, bias] pairs")
                }
                return SequenceBias(tokens: try ids(pair[0], "sequence_bias"), bias: bias.floatValue)
            }
        }
        minLength = try integer("min_length") ?? minLength
        minNewTokens = try integer("min_new_tokens")
        forcedBOSTokenID = try integer("forced_bos_token_id")
        forcedEOSTokenIDs = try idOrList("forced_eos_token_id")
        removeInvalidValues = try flag("remove_invalid_values") ?? removeInvalidValues
        if let value = fields["exponential_decay_length_penalty"], !(value is NSNull) {
            guard let pair = value as? [Any], pair.count == 2, let start = pair[0] as? NSNumber, let factor = pair[1] as? NSNumber,
                  let startIndex = Int(exactly: start.doubleValue) else {
                throw GenerationError.malformedFile(file: url.path, reason: "exponential_decay_length_penalty must be [start index, decay factor]")
            }
            exponentialDecayLengthPenalty = LengthPenalty(start: startIndex, factor: factor.doubleValue)
        }
        suppressTokens = try idList("suppress_tokens") ?? suppressTokens
        beginSuppressTokens = try idList("begin_suppress_tokens") ?? beginSuppressTokens
        maxTime = try number("max_time")
        padTokenID = try integer("pad_token_id")
        bosTokenID = try integer("bos_token_id")
        if let value = fields["eos_token_id"] {
            eosTokenIDs = value is NSNull ? [] : try idOrList("eos_token_id")
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

extension GenerationConfig {
    /// transformers `generation_config.json` keys that select what this package does not do
    /// (another search, guidance, watermarks, several sequences per prompt), each with a test for
    /// the values that leave it off. One a file turns on goes to `unsupported`: generating without
    /// it would not be what transformers generates. Beam search's length settings, outputs,
    /// caches, `renormalize_logits` (log-softmax: the same arg-max and distribution) and assisted
    /// decoding (`prompt_lookup_num_tokens`, `assistant_*`, `speculation_type`, `use_mtp`: the
    /// same greedy tokens) change
    /// nothing that greedy or sampled decoding here would generate, and are passed over.
    static let otherSearchSettings: [(key: String, isOff: @Sendable (Any) -> Bool)] = [
        ("num_beams", { ($0 as? NSNumber)?.doubleValue == 1 }),
        ("num_beam_groups", { ($0 as? NSNumber)?.doubleValue == 1 }),
        ("num_return_sequences", { ($0 as? NSNumber)?.doubleValue == 1 }),
        ("penalty_alpha", { ($0 as? NSNumber)?.doubleValue == 0 }),
        ("guidance_scale", { ($0 as? NSNumber)?.doubleValue == 1 }),
        ("top_h", { _ in false }),
        ("dola_layers", { _ in false }),
        ("watermarking_config", { _ in false }),
        ("constraints", { _ in false }),
        ("force_words_ids", { _ in false }),
        ("token_healing", { ($0 as? Bool) == false }),
    ]
}
