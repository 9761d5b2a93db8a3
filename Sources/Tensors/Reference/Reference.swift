import Foundation

/// Plain-loop kernels: the oracle every fast kernel is compared against. Readable first; each
/// function documents its math and shapes. Shapes are validated by the caller (the model checks
/// every weight once at load), so these only assert their invariants.
public enum Reference {}

extension Reference {
    /// `y = x · Wᵀ + bias` over the last axis.
    /// - x: `[..., k]`, weight: `[n, k]`, bias: `[n]` → `[..., n]`.
    public static func linear(_ x: Tensor, weight: WeightView, bias: WeightView? = nil) -> Tensor {
        precondition(weight.shape.count == 2 && x.shape.last == weight.shape[1], "linear: x \(x.shape) vs weight \(weight.shape)")
        if weight.scales != nil { return quantizedLinear(x, weight: weight, bias: bias) }
        let (n, k) = (weight.shape[0], weight.shape[1])
        let m = x.count / max(k, 1)
        var out = [Float](repeating: 0, count: m * n)
        var row = [Float](repeating: 0, count: k)
        x.scalars.withUnsafeBufferPointer { xs in
            row.withUnsafeMutableBufferPointer { row in
                for j in 0..<n {
                    // Widen one weight row once, then reuse it for every input row.
                    weight.widen(from: j * k, into: row)
                    let b = bias?[j] ?? 0
                    for i in 0..<m {
                        var sum: Float = 0
                        for c in 0..<k { sum += xs[i * k + c] * row[c] }
                        out[i * n + j] = sum + b
                    }
                }
            }
        }
        return Tensor(shape: Array(x.shape.dropLast()) + [n], scalars: out)
    }

    /// `linear` for block-quantized int8 weights (W8A8, llama.cpp's Q8_0 × Q8_0): each block of
    /// 32 activations is quantized as the weights are, and contributes
    /// `scale_w · scale_x · Σ q_w · q_x` (an exact integer sum), the weights read in value order.
    static func quantizedLinear(_ x: Tensor, weight: WeightView, bias: WeightView?) -> Tensor {
        let (n, k) = (weight.shape[0], weight.shape[1])
        let block = WeightView.quantizationBlock
        let (m, blocks) = (x.count / max(k, 1), k / block)
        // [m, k] int8 activations and [m, k / 32] their scales.
        var xq = [Int8](repeating: 0, count: m * k)
        var xs = [Float](repeating: 0, count: m * blocks)
        for row in 0..<m {
            for b in 0..<blocks {
                let start = row * k + b * block
                xs[row * blocks + b] = WeightView.quantizeBlock(x.scalars[start..<(start + block)]) { xq[start + $0] = $1 }
            }
        }
        var out = [Float](repeating: 0, count: m * n)
        let q = weight.bytes
        let scales = weight.scales!
        for j in 0..<n {
            let b = bias?[j] ?? 0
            for row in 0..<m {
                var sum: Float = 0
                for blockIndex in 0..<blocks {
                    var integer: Int32 = 0
                    for c in (blockIndex * block)..<((blockIndex + 1) * block) { integer += Int32(Int8(bitPattern: q[weight.int8Offset(j * k + c)])) * Int32(xq[row * k + c]) }
                    // Scales in a mapped file need not be 4-byte aligned.
                    let scale = scales.loadUnaligned(fromByteOffset: (j * blocks + blockIndex) * 4, as: Float.self)
                    sum += Float(integer) * (scale * xs[row * blocks + blockIndex])
                }
                out[row * n + j] = sum + b
            }
        }
        return Tensor(shape: Array(x.shape.dropLast()) + [n], scalars: out)
    }

    /// Rows of `table` picked by `ids`: `[vocab, d]` → `[ids.count, d]`.
    public static func embedding(_ ids: [Int], table: WeightView) -> Tensor {
        let d = table.shape[1]
        var out = [Float](repeating: 0, count: ids.count * d)
        out.withUnsafeMutableBufferPointer { out in
            for (row, id) in ids.enumerated() {
                table.widen(from: id * d, into: UnsafeMutableBufferPointer(rebasing: out[(row * d)..<((row + 1) * d)]))
            }
        }
        return Tensor(shape: [ids.count, d], scalars: out)
    }

    /// `x / sqrt(mean(x²) + ε) · weight` over groups of `groupSize` along the last axis (one group
    /// spanning the axis is plain RMSNorm).
    /// - x: `[..., d]`, weight: `[d]` → `[..., d]`.
    public static func rmsNorm(_ x: Tensor, weight: WeightView, epsilon: Float, groupSize: Int? = nil) -> Tensor {
        let d = x.shape.last ?? 0
        let group = groupSize ?? d
        precondition(weight.count == d && group > 0 && d % group == 0, "rmsNorm: x \(x.shape), weight \(weight.shape), group \(group)")
        var out = x.scalars
        for start in stride(from: 0, to: x.count, by: group) {
            var sumOfSquares: Float = 0
            for i in start..<(start + group) { sumOfSquares += x.scalars[i] * x.scalars[i] }
            let scale = 1 / (sumOfSquares / Float(group) + epsilon).squareRoot()
            for i in start..<(start + group) { out[i] = x.scalars[i] * scale * weight[i % d] }
        }
        return Tensor(shape: x.shape, scalars: out)
    }

    /// Gated RMSNorm as mamba_ssm's `RMSNormGated(norm_before_gate=False)`: `rmsNorm(y · silu(z))`,
    /// normalized per group of `groupSize` channels.
    /// - y, z: `[..., e]`, weight: `[e]` → `[..., e]`.
    public static func gatedRMSNorm(_ y: Tensor, gate z: Tensor, weight: WeightView, epsilon: Float, groupSize: Int) -> Tensor {
        precondition(y.shape == z.shape, "gatedRMSNorm: y \(y.shape) vs z \(z.shape)")
        var gated = y
        for i in 0..<y.count { gated.scalars[i] = y.scalars[i] * silu(z.scalars[i]) }
        return rmsNorm(gated, weight: weight, epsilon: epsilon, groupSize: groupSize)
    }

    /// `x · sigmoid(x)`.
    @inlinable
    public static func silu(_ x: Float) -> Float { x / (1 + exp(-x)) }

    /// `log(1 + eˣ)`, linear above 20 as torch's `softplus(beta=1, threshold=20)`.
    @inlinable
    public static func softplus(_ x: Float) -> Float { x > 20 ? x : log1p(exp(x)) }
}
