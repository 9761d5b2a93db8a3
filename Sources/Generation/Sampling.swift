import Foundation

/// The logits processors of transformers' `generate`, in its order: repetition penalty, then
/// (when sampling) temperature, top-k, top-p, min-p. Each works on one row of scores `[v]`;
/// removed tokens become −∞.
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

    /// The processed scores of one row for `config`.
    static func process(_ scores: [Float], seen: Set<Int>, config: GenerationConfig) -> [Float] {
        var scores = scores
        repetitionPenalty(&scores, seen: seen, penalty: config.repetitionPenalty)
        guard config.doSample else { return scores }
        temperature(&scores, config.temperature)
        topK(&scores, config.topK)
        topP(&scores, config.topP)
        if let minP = config.minP { self.minP(&scores, minP) }
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
