extension Reference {
    /// Depthwise causal 1-D convolution over time, continuing from the previous `k - 1` inputs.
    ///
    /// `out[t, c] = bias[c] + Σⱼ weight[c, j] · window[t + j, c]`, where `window` is `state`
    /// followed by `x` (so `window[t + k - 1] = x[t]`). The new state is the last `k - 1` rows of
    /// the window: a zero state means the sequence starts here (zero left padding), and a sequence
    /// shorter than `k - 1` keeps part of the old state.
    /// - x: `[b, l, c]`, weight: `[c, k]` (or `[c, 1, k]`), bias: `[c]`, state: `[b, k - 1, c]`
    /// - returns output `[b, l, c]` (before any activation) and the new state `[b, k - 1, c]`.
    public static func causalConv1d(
        _ x: Tensor, weight: WeightView, bias: WeightView?, state: Tensor
    ) -> (output: Tensor, state: Tensor) {
        let (b, l, c) = (x.shape[0], x.shape[1], x.shape[2])
        let k = weight.shape.last!
        precondition(weight.count == c * k && state.shape == [b, k - 1, c], "causalConv1d: x \(x.shape), weight \(weight.shape), state \(state.shape)")
        let w = weight.floats()  // [c, k]
        var output = Tensor(zeros: [b, l, c])
        var newState = Tensor(zeros: [b, k - 1, c])
        for batch in 0..<b {
            // window: [k - 1 + l, c]
            let window = Array(state.scalars[(batch * (k - 1) * c)..<((batch + 1) * (k - 1) * c)])
                + x.scalars[(batch * l * c)..<((batch + 1) * l * c)]
            for t in 0..<l {
                for channel in 0..<c {
                    var sum = bias?[channel] ?? 0
                    for j in 0..<k { sum += w[channel * k + j] * window[(t + j) * c + channel] }
                    output.scalars[(batch * l + t) * c + channel] = sum
                }
            }
            let keep = (k - 1) * c
            for i in 0..<keep {
                newState.scalars[batch * keep + i] = window[window.count - keep + i]
            }
        }
        return (output, newState)
    }
}
