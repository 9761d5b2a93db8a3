import Foundation
import Testing
@testable import Tensors

@Suite("Reference kernels")
struct ReferenceKernelTests {
    /// Random scan inputs in Mamba-2's ranges: dt in (0.001, 0.5], A in [−16, −1].
    static func scanInputs(batch: Int, length: Int, heads: Int, headDim: Int, groups: Int, stateSize: Int, seed: UInt64) -> SSMInputs {
        var generator = SeededGenerator(seed: seed)
        return SSMInputs(
            x: randomTensor([batch, length, heads, headDim], using: &generator),
            dt: randomTensor([batch, length, heads], in: 0.001...0.5, using: &generator),
            A: (0..<heads).map { _ in -Float.random(in: 1...16, using: &generator) },
            B: randomTensor([batch, length, groups, stateSize], using: &generator),
            C: randomTensor([batch, length, groups, stateSize], using: &generator),
            D: (0..<heads).map { _ in Float.random(in: 0.5...1.5, using: &generator) })
    }

    @Test("chunked SSD equals the sequential recurrence", arguments: [1, 3, 4, 7, 11, 64])
    func chunkedEqualsSequential(chunkSize: Int) {
        var generator = SeededGenerator(seed: 7)
        let inputs = Self.scanInputs(batch: 2, length: 11, heads: 6, headDim: 3, groups: 3, stateSize: 5, seed: 11)
        let initial = randomTensor([2, 6, 3, 5], using: &generator)
        let chunked = Reference.ssdChunked(inputs, chunkSize: chunkSize, initialState: initial)
        let sequential = Reference.ssmRecurrence(inputs, initialState: initial)
        let dy = difference(chunked.y, sequential.y)
        let ds = difference(chunked.state, sequential.state)
        #expect(dy.max <= 1e-5, "y: max \(dy.max) mean \(dy.mean) at \(dy.at)")
        #expect(ds.max <= 1e-5, "state: max \(ds.max) mean \(ds.mean) at \(ds.at)")
    }

    @Test("a scan split in two through its state equals one scan")
    func scanContinuation() {
        let inputs = Self.scanInputs(batch: 1, length: 9, heads: 2, headDim: 2, groups: 1, stateSize: 4, seed: 3)
        let zero = Tensor(zeros: [1, 2, 2, 4])
        let whole = Reference.ssdChunked(inputs, chunkSize: 4, initialState: zero)
        func part(_ range: Range<Int>) -> SSMInputs {
            func cut(_ t: Tensor) -> Tensor {
                let inner = t.count / t.shape[1]
                return Tensor(shape: [1, range.count] + t.shape.dropFirst(2), scalars: Array(t.scalars[(range.lowerBound * inner)..<(range.upperBound * inner)]))
            }
            return SSMInputs(x: cut(inputs.x), dt: cut(inputs.dt), A: inputs.A, B: cut(inputs.B), C: cut(inputs.C), D: inputs.D)
        }
        let first = Reference.ssdChunked(part(0..<5), chunkSize: 4, initialState: zero)
        let second = Reference.ssdChunked(part(5..<9), chunkSize: 4, initialState: first.state)
        let joined = Tensor(shape: [1, 9, 2, 2], scalars: first.y.scalars + second.y.scalars)
        #expect(difference(joined, whole.y).max <= 1e-5)
        #expect(difference(second.state, whole.state).max <= 1e-5)
    }

    @Test("causal conv continued through its state equals one pass; short inputs keep old state")
    func convContinuation() {
        var generator = SeededGenerator(seed: 5)
        let (c, k) = (3, 4)
        let x = randomTensor([2, 7, c], using: &generator)
        let weight = WeightView(randomTensor([c, 1, k], using: &generator))
        let bias = WeightView(randomTensor([c], using: &generator))
        let zero = Tensor(zeros: [2, k - 1, c])
        let whole = Reference.causalConv1d(x, weight: weight, bias: bias, state: zero)
        var state = zero
        var outputs: [[Float]] = [[], []]
        for t in 0..<7 {
            var scalars: [Float] = []
            for b in 0..<2 {
                let start = (b * 7 + t) * c
                scalars += x.scalars[start..<(start + c)]
            }
            let step = Tensor(shape: [2, 1, c], scalars: scalars)
            let result = Reference.causalConv1d(step, weight: weight, bias: bias, state: state)
            state = result.state
            for b in 0..<2 { outputs[b] += result.output.scalars[(b * c)..<((b + 1) * c)] }
        }
        #expect(difference(Tensor(shape: [2, 7, c], scalars: outputs[0] + outputs[1]), whole.output).max <= 1e-6)
        #expect(state == whole.state)
        // By hand: out[t, ch] = bias + Σⱼ w[ch, j]·window[t + j], window = zeros(k−1) ++ x.
        let w = weight.floats()
        let expected = bias[1] + w[1 * k + 2] * x[0, 0, 1] + w[1 * k + 3] * x[0, 1, 1]
        #expect(abs(whole.output[0, 1, 1] - expected) <= 1e-6)
    }

    @Test("gated RMSNorm normalizes each group of channels on its own")
    func gatedNormPerGroup() {
        let y = Tensor(shape: [1, 4], scalars: [1, 2, 30, 40])
        let z = Tensor(shape: [1, 4], scalars: [10, 10, 10, 10])
        let weight = WeightView(Tensor(shape: [4], scalars: [1, 1, 2, 2]))
        let normed = Reference.gatedRMSNorm(y, gate: z, weight: weight, epsilon: 0, groupSize: 2)
        let gate = Reference.silu(10)
        let first = ((1 * gate) * (1 * gate) + (2 * gate) * (2 * gate)) / 2
        let second = ((30 * gate) * (30 * gate) + (40 * gate) * (40 * gate)) / 2
        let expected: [Float] = [gate / first.squareRoot(), 2 * gate / first.squareRoot(), 2 * 30 * gate / second.squareRoot(), 2 * 40 * gate / second.squareRoot()]
        for i in 0..<4 { #expect(abs(normed.scalars[i] - expected[i]) <= 1e-5) }
    }

    @Test("linear reads fp32, bf16 and fp16 weights alike")
    func linearDTypes() {
        let x = Tensor(shape: [2, 3], scalars: [1, 2, 3, -1, 0.5, 2])
        let w = Tensor(shape: [2, 3], scalars: [0.5, -1, 2, 0.25, 1, -0.5])
        let bias = WeightView(Tensor(shape: [2], scalars: [1, -1]))
        for dtype in [DType.float32, .bfloat16, .float16] {
            let y = Reference.linear(x, weight: WeightView(w, as: dtype), bias: bias)
            #expect(y.shape == [2, 2])
            #expect(y.scalars == [5.5, -0.25, 4, -1.75])
        }
    }

    @Test("softplus follows torch's threshold")
    func softplus() {
        #expect(Reference.softplus(25) == 25)
        #expect(abs(Reference.softplus(0) - log(2)) < 1e-7)
        #expect(abs(Reference.softplus(-30) - exp(-30)) < 1e-12)
    }
}
