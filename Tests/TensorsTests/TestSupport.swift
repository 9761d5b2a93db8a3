import Tensors

/// A small deterministic generator (SplitMix64), so tests need no global random state.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func randomTensor(_ shape: [Int], in range: ClosedRange<Float> = -1...1, using generator: inout SeededGenerator) -> Tensor {
    Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in Float.random(in: range, using: &generator) })
}

/// Max and mean |a − b| and where the max is, for readable failures.
func difference(_ a: Tensor, _ b: Tensor) -> (max: Float, mean: Float, at: Int) {
    precondition(a.shape == b.shape, "compare \(a.shape) with \(b.shape)")
    var (maximum, sum, at): (Float, Float, Int) = (0, 0, 0)
    for i in 0..<a.count {
        let delta = abs(a.scalars[i] - b.scalars[i])
        sum += delta
        if delta > maximum || delta.isNaN { (maximum, at) = (delta, i) }
    }
    return (maximum, sum / Float(max(a.count, 1)), at)
}
