import Foundation

/// The logits processors of transformers' `generate` (`LogitsProcessorList` runs them in its
/// order). Each works on one row of scores `[v]`; removed tokens become −∞.
public enum LogitsProcessing {
    /// `RepetitionPenaltyLogitsProcessor`: every token seen so far has its score divided by the
    /// penalty when positive, multiplied when negative.
    public static func repetitionPenalty(_ scores: inout [Float], seen: Set<Int>, penalty: Float) {
        guard penalty != 1 else { return }
        for token in seen where token >= 0 && token < scores.count {
            let score = scores[token]
            scores[token] = score < 0 ? score * penalty : score / penalty
        }
    }

    /// `TemperatureLogitsWarper`.
    public static func temperature(_ scores: inout [Float], _ temperature: Float) {
        guard temperature != 1 else { return }
        for index in scores.indices { scores[index] /= temperature }
    }

    /// `TopKLogitsWarper`: keeps tokens scoring at least the k-th highest score (ties kept).
    public static func topK(_ scores: inout [Float], _ k: Int) {
        guard k > 0, k < scores.count else { return }
        let threshold = kthLargest(scores, k)
        for index in scores.indices where scores[index] < threshold { scores[index] = -.infinity }
    }

    /// `values.sorted(by: >)[k − 1]` (equal values counted apart) without sorting them all: a
    /// min-heap of the k largest so far, so a 50,280-token vocabulary costs one comparison per
    /// score and a few heap steps, not a sort, on every sampled token.
    static func kthLargest(_ values: [Float], _ k: Int) -> Float {
        var heap: [Float] = []  // [k], heap[0] the smallest kept
        heap.reserveCapacity(k)
        func siftDown(from start: Int) {
            var parent = start
            while true {
                let left = 2 * parent + 1, right = left + 1
                var smallest = parent
                if left < heap.count, heap[left] < heap[smallest] { smallest = left }
                if right < heap.count, heap[right] < heap[smallest] { smallest = right }
                if smallest == parent { return }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
        for value in values {
            if heap.count < k {
                heap.append(value)
                var child = heap.count - 1
                while child > 0, heap[child] < heap[(child - 1) / 2] {
                    heap.swapAt(child, (child - 1) / 2)
                    child = (child - 1) / 2
                }
            } else if value > heap[0] {
                heap[0] = value
                siftDown(from: 0)
            }
        }
        return heap[0]
    }

    /// `TopPLogitsWarper`: keeps the smallest set of most likely tokens whose probability reaches
    /// `p` (sorted ascending, tokens with cumulative probability ≤ 1 − p removed; the most likely
    /// token always kept). Tokens already at −∞ (after top-k, most of them) have probability 0
    /// and come first in that order, so they change neither the sum nor the cumulative
    /// probabilities: only the others are sorted.
    public static func topP(_ scores: inout [Float], _ p: Float) {
        guard p < 1 else { return }
        let order = scores.indices.filter { scores[$0] != -.infinity }.sorted { scores[$0] < scores[$1] }
        let probabilities = softmax(order.map { scores[$0] })
        var cumulative: Float = 0
        for (rank, index) in order.enumerated() where rank < order.count - 1 {
            cumulative += probabilities[rank]
            if cumulative <= 1 - p { scores[index] = -.infinity }
        }
    }

    /// `MinPLogitsWarper`: removes tokens whose probability is below `minP` times the top one's.
    public static func minP(_ scores: inout [Float], _ minP: Float) {
        let probabilities = softmax(scores)
        guard let top = probabilities.max() else { return }
        let threshold = minP * top
        let best = probabilities.indices.max { probabilities[$0] < probabilities[$1] }!
        for index in scores.indices where probabilities[index] < threshold && index != best { scores[index] = -.infinity }
    }

    /// Softmax in fp32 with the maximum subtracted (−∞ gives 0, without calling `exp`: after
    /// top-k most scores are −∞).
    public static func softmax(_ scores: [Float]) -> [Float] {
        guard let maximum = scores.max(), maximum > -.infinity else { return scores.map { _ in 0 } }
        let exponentials = scores.map { $0 == -.infinity ? 0 : exp($0 - maximum) }
        let sum = exponentials.reduce(0, +)
        return exponentials.map { $0 / sum }
    }

    /// `SequenceBiasLogitsProcessor` (`NoBadWordsLogitsProcessor` with biases of −∞): each
    /// sequence's bias goes to its last token when the row's tokens end with the others. A
    /// token's biases are summed in `biases`' order before they are added, as transformers does.
    public static func sequenceBias(_ scores: inout [Float], tokens: [Int], biases: [GenerationConfig.SequenceBias]) {
        var total: [Int: Float] = [:]
        for entry in biases where !entry.tokens.isEmpty {
            let prefix = entry.tokens.dropLast()
            guard prefix.count <= tokens.count, tokens.suffix(prefix.count).elementsEqual(prefix) else { continue }
            total[entry.tokens.last!, default: 0] += entry.bias
        }
        for (token, bias) in total where scores.indices.contains(token) { scores[token] += bias }
    }

    /// transformers' order of `sequence_bias` entries: one per sequence (the last given wins, at
    /// the place of the first), single tokens first, then the longer ones by length in the order
    /// each length first appears.
    static func biasOrder(_ entries: [GenerationConfig.SequenceBias]) -> [GenerationConfig.SequenceBias] {
        var latest: [[Int]: Float] = [:]
        var sequences: [[Int]] = []
        for entry in entries {
            if latest.updateValue(entry.bias, forKey: entry.tokens) == nil { sequences.append(entry.tokens) }
        }
        var lengths: [Int] = []
        for sequence in sequences where sequence.count > 1 && !lengths.contains(sequence.count) { lengths.append(sequence.count) }
        return ([1] + lengths).flatMap { length in
            sequences.filter { $0.count == length }.map { GenerationConfig.SequenceBias(tokens: $0, bias: latest[$0]!) }
        }
    }

    /// `EncoderRepetitionPenaltyLogitsProcessor`: the prompt's tokens have their scores divided by
    /// 1 / penalty when positive, multiplied by it when negative (favoured for a penalty > 1).
    public static func encoderRepetitionPenalty(_ scores: inout [Float], prompt: Set<Int>, penalty: Double) {
        guard penalty != 1 else { return }
        let inverse = Float(1 / penalty)  // transformers stores 1 / penalty, then scales by it
        for token in prompt where token >= 0 && token < scores.count {
            let score = scores[token]
            scores[token] = score < 0 ? score * inverse : score / inverse
        }
    }

    /// `EncoderNoRepeatNGramLogitsProcessor`: bans the tokens that follow the row's last n − 1
    /// tokens in `promptNGrams` (each (n − 1)-token prefix of the prompt, the tokens after it).
    public static func encoderNoRepeatNGram(_ scores: inout [Float], tokens: [Int], size n: Int, promptNGrams: [[Int]: [Int]]) {
        guard n > 0, tokens.count >= n - 1, let banned = promptNGrams[Array(tokens.suffix(n - 1))] else { return }
        suppress(&scores, banned)
    }

    /// Each (n − 1)-token prefix of `tokens`, with the tokens that follow it.
    static func nGrams(_ tokens: [Int], size n: Int) -> [[Int]: [Int]] {
        guard n > 0, tokens.count >= n else { return [:] }
        var next: [[Int]: [Int]] = [:]
        for start in 0...(tokens.count - n) { next[Array(tokens[start..<(start + n - 1)]), default: []].append(tokens[start + n - 1]) }
        return next
    }

    /// `NoRepeatNGramLogitsProcessor`: bans every token that would complete an n-gram already in
    /// the row's tokens (n = 1 bans every token seen).
    public static func noRepeatNGram(_ scores: inout [Float], tokens: [Int], size n: Int) {
        guard n > 0, tokens.count >= n else { return }
        let prefix = tokens.suffix(n - 1)
        for start in 0...(tokens.count - n) where tokens[start..<(start + n - 1)].elementsEqual(prefix) {
            let banned = tokens[start + n - 1]
            if scores.indices.contains(banned) { scores[banned] = -.infinity }
        }
    }

    /// Sets `tokens` to −∞ (`SuppressTokensLogitsProcessor`; the EOS ids of `MinLength…`).
    public static func suppress(_ scores: inout [Float], _ tokens: [Int]) {
        for token in tokens where scores.indices.contains(token) { scores[token] = -.infinity }
    }

    /// `ForcedBOS…`/`ForcedEOSTokenLogitsProcessor`: every score −∞ but `tokens`' 0.
    public static func force(_ scores: inout [Float], _ tokens: [Int]) {
        for index in scores.indices { scores[index] = -.infinity }
        for token in tokens where scores.indices.contains(token) { scores[token] = 0 }
    }

    /// `InfNanRemoveLogitsProcessor`: NaN becomes 0 and ±∞ the largest finite values.
    public static func removeInvalidValues(_ scores: inout [Float]) {
        for index in scores.indices {
            let score = scores[index]
            if score.isNaN {
                scores[index] = 0
            } else if score.isInfinite {
                scores[index] = score > 0 ? .greatestFiniteMagnitude : -.greatestFiniteMagnitude
            }
        }
    }

    /// `ExponentialDecayLengthPenalty`, `steps` tokens past its start: each finite EOS score
    /// gains |score| · (factor^steps − 1).
    public static func exponentialDecay(_ scores: inout [Float], eos: [Int], factor: Double, steps: Int) {
        let growth = Float(pow(factor, Double(steps)) - 1)
        for token in eos where scores.indices.contains(token) && scores[token].isFinite {
            scores[token] += abs(scores[token]) * growth
        }
    }

    /// `TypicalLogitsWarper`: keeps the tokens whose surprisal is closest to the entropy, in that
    /// order, until their probability reaches `mass` (the closest always kept). −∞ tokens are
    /// infinitely far and come last, so only the others are sorted.
    public static func typical(_ scores: inout [Float], mass: Float) {
        guard mass < 1 else { return }
        let finite = scores.indices.filter { scores[$0] != -.infinity }
        guard finite.count > 1 else { return }
        let maximum = finite.map { scores[$0] }.max()!
        let logSum = log(finite.reduce(Float(0)) { $0 + exp(scores[$1] - maximum) })
        let normalized = finite.map { scores[$0] - maximum - logSum }  // log-softmax
        let entropy = -normalized.reduce(Float(0)) { $0 + $1 * exp($1) }
        let shifted = normalized.map { abs(-$0 - entropy) }
        let order = finite.indices.sorted { shifted[$0] < shifted[$1] }
        let probabilities = softmax(order.map { scores[finite[$0]] })
        // torch's cumsum on the CPU sums in double.
        var cumulative = 0.0
        var below = 0
        for probability in probabilities {
            cumulative += Double(probability)
            if Float(cumulative) < mass { below += 1 }
        }
        let threshold = shifted[order[min(below, order.count - 1)]]
        // The closest token is never past the threshold: transformers' min_tokens_to_keep (1) holds.
        for position in order where shifted[position] > threshold { scores[finite[position]] = -.infinity }
    }

    /// `EpsilonLogitsWarper`: removes tokens less likely than `epsilon`, the best one always kept.
    public static func epsilonCutoff(_ scores: inout [Float], _ epsilon: Float) {
        cutoff(&scores, softmax(scores), epsilon)
    }

    /// `EtaLogitsWarper`: as `epsilonCutoff` with the cutoff min(ε, √ε · e^(−entropy)).
    public static func etaCutoff(_ scores: inout [Float], _ epsilon: Float) {
        let probabilities = softmax(scores)
        guard let maximum = scores.max(), maximum > -.infinity else { return }
        let logSum = log(scores.reduce(Float(0)) { $0 + ($1 == -.infinity ? 0 : exp($1 - maximum)) })
        // torch's `Categorical.entropy` clamps −∞ log-probabilities to the lowest finite value,
        // which probability 0 then cancels.
        var entropy: Float = 0
        for (score, probability) in zip(scores, probabilities) where score != -.infinity {
            entropy -= (score - maximum - logSum) * probability
        }
        cutoff(&scores, probabilities, min(epsilon, epsilon.squareRoot() * exp(-entropy)))
    }

    private static func cutoff(_ scores: inout [Float], _ probabilities: [Float], _ threshold: Float) {
        guard let best = scores.max() else { return }
        for index in scores.indices where probabilities[index] < threshold && scores[index] < best { scores[index] = -.infinity }
    }
}

/// The processors of one `generate` call, built once from its config, EOS ids, prompts and
/// budget, and run on each row's scores in transformers' order (`_get_logits_processor`):
/// sequence bias, encoder repetition penalty, repetition penalty, no-repeat n-grams, the
/// prompt's n-grams, bad words, minimum length, forced BOS/EOS, invalid values, length penalty,
/// suppressed tokens; then, when sampling, temperature, top-k, top-p, min-p, typical, epsilon,
/// eta.
///
/// A row's tokens are its prompt as transformers' `input_ids` hold it (left padding included),
/// then its new tokens; lengths count the padding too, as transformers' do. Only the repetition
/// penalty leaves the padding out (`seen`), as transformers 5.x does.
struct LogitsProcessorList {
    let config: GenerationConfig
    let eos: [Int]
    /// Each row's prompt, padding included; the longest is transformers' `input_ids_seq_length`.
    let prompts: [[Int]]
    let promptLength: Int
    /// transformers' `max_length` (prompt and budget) and `min_length` (`min_new_tokens` counted
    /// after the prompt replaces it: `_prepare_generated_length`).
    let maxLength: Int, minLength: Int
    /// The length at which `begin_suppress_tokens` act: the first new token, or the second after
    /// a forced BOS on a one-token prompt.
    let beginIndex: Int
    /// `sequence_bias`, and `bad_words_ids` as biases of −∞ (without a lone EOS id), in
    /// transformers' order (`LogitsProcessing.biasOrder`).
    private let biases: [GenerationConfig.SequenceBias], badWords: [GenerationConfig.SequenceBias]
    /// Per row: the prompt's tokens and its n-grams, for the encoder processors.
    private let promptTokens: [Set<Int>], promptNGrams: [[[Int]: [Int]]]

    init(config: GenerationConfig, eos: [Int], prompts: [[Int]], budget: Int) {
        self.config = config
        self.eos = eos
        self.prompts = prompts
        let promptLength = prompts.map(\.count).max() ?? 0
        self.promptLength = promptLength
        // Saturating: a budget or a minimum of Int.max means "no limit", not a trap.
        func sum(_ a: Int, _ b: Int) -> Int { a.addingReportingOverflow(b).overflow ? .max : a + b }
        maxLength = sum(promptLength, budget)
        minLength = config.minNewTokens.map { sum($0, promptLength) } ?? config.minLength
        beginIndex = promptLength > 1 || config.forcedBOSTokenID == nil ? promptLength : promptLength + 1
        biases = LogitsProcessing.biasOrder(config.sequenceBias)
        let banned = (config.badWordsIDs ?? []).filter { words in !eos.contains { [$0] == words } }
        badWords = LogitsProcessing.biasOrder(banned.map { .init(tokens: $0, bias: -.infinity) })
        promptTokens = config.encoderRepetitionPenalty == 1 ? [] : prompts.map(Set.init)
        promptNGrams = prompts.map { LogitsProcessing.nGrams($0, size: config.encoderNoRepeatNGramSize) }
    }

    /// The processed scores `[v]` of row `row`, whose tokens are `tokens` (its prompt as in
    /// `prompts`, then its new tokens); `seen` holds them without the padding.
    func callAsFunction(_ scores: [Float], row: Int, tokens: [Int], seen: Set<Int>) -> [Float] {
        let newTokens = tokens.count - prompts[row].count
        let length = promptLength + newTokens  // transformers' cur_len
        var scores = scores
        if !biases.isEmpty { LogitsProcessing.sequenceBias(&scores, tokens: tokens, biases: biases) }
        if !promptTokens.isEmpty {
            LogitsProcessing.encoderRepetitionPenalty(&scores, prompt: promptTokens[row], penalty: config.encoderRepetitionPenalty)
        }
        LogitsProcessing.repetitionPenalty(&scores, seen: seen, penalty: config.repetitionPenalty)
        LogitsProcessing.noRepeatNGram(&scores, tokens: tokens, size: config.noRepeatNGramSize)
        let size = config.encoderNoRepeatNGramSize
        LogitsProcessing.encoderNoRepeatNGram(&scores, tokens: tokens, size: size, promptNGrams: promptNGrams[row])
        if !badWords.isEmpty { LogitsProcessing.sequenceBias(&scores, tokens: tokens, biases: badWords) }
        if length < minLength { LogitsProcessing.suppress(&scores, eos) }
        if let bos = config.forcedBOSTokenID, length == 1 { LogitsProcessing.force(&scores, [bos]) }
        if let forced = config.forcedEOSTokenIDs, length == maxLength - 1 { LogitsProcessing.force(&scores, forced) }
        if config.removeInvalidValues { LogitsProcessing.removeInvalidValues(&scores) }
        // newTokens − start, saturated: a start far below 0 is "from the first token on".
        if let penalty = config.exponentialDecayLengthPenalty {
            let (steps, overflow) = newTokens.subtractingReportingOverflow(penalty.start)
            if overflow || steps > 0 {
                LogitsProcessing.exponentialDecay(&scores, eos: eos, factor: penalty.factor, steps: overflow ? .max : steps)
            }
        }
        LogitsProcessing.suppress(&scores, config.suppressTokens)
        if length == beginIndex { LogitsProcessing.suppress(&scores, config.beginSuppressTokens) }
        guard config.doSample else { return scores }
        LogitsProcessing.temperature(&scores, config.temperature)
        LogitsProcessing.topK(&scores, config.topK)
        LogitsProcessing.topP(&scores, config.topP)
        if let minP = config.minP { LogitsProcessing.minP(&scores, minP) }
        LogitsProcessing.typical(&scores, mass: config.typicalP)
        if config.epsilonCutoff > 0 { LogitsProcessing.epsilonCutoff(&scores, config.epsilonCutoff) }
        if config.etaCutoff > 0 { LogitsProcessing.etaCutoff(&scores, config.etaCutoff) }
        return scores
    }
}

/// xoshiro256** seeded through SplitMix64: reproducible sampling for a given seed on every
/// platform.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var mixer = seed
        func next() -> UInt64 {
            mixer &+= 0x9E37_79B9_7F4A_7C15
            var z = mixer
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (next(), next(), next(), next())
    }

    public mutating func next() -> UInt64 {
        let result = ((state.1 &* 5) << 7 | (state.1 &* 5) >> 57) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = state.3 << 45 | state.3 >> 19
        return result
    }
}

/// Picks the next token of one row: the arg-max when greedy (the first of equal maxima, as
/// torch's `argmax`), else a draw from the softmax of the processed scores.
struct TokenSampler {
    var generator: SeededGenerator

    mutating func next(_ scores: [Float], sample: Bool) -> Int {
        guard sample else {
            var best = 0
            for index in scores.indices where scores[index] > scores[best] { best = index }
            return best
        }
        let probabilities = LogitsProcessing.softmax(scores)
        let draw = Float(Double(generator.next() >> 11) * 0x1p-53)
        var cumulative: Float = 0
        var last = 0
        for (index, probability) in probabilities.enumerated() where probability > 0 {
            cumulative += probability
            last = index
            if draw < cumulative { return index }
        }
        return last
    }
}
