import Foundation
import Tensors

/// Which implementation runs the model: the readable reference (transformers' `torch_forward`,
/// step by step on `Reference` kernels) or the fused, multi-threaded SIMD path (our answer to
/// `cuda_kernels_forward`). Tests hold them equal.
public enum ForwardPath: String, Sendable, CaseIterable {
    case reference
    case fast
}

/// One layer's weights as the fast path uses them: matrices stay in their stored dtype (views into
/// the mapped file); the small vectors are widened to fp32 once, and the conv taps made tap-major.
struct FastLayerWeights: Sendable {
    let norm: [Float]  // [d]
    let inProj: WeightView  // [e + conv_dim + h, d]
    let inProjBias: [Float]?  // [e + conv_dim + h]
    let convTaps: [Float]  // [k, conv_dim]
    let convBias: [Float]?  // [conv_dim]
    let dtBias: [Float]  // [h]
    let A: [Float]  // [h], −exp(A_log)
    let D: [Float]  // [h]
    let gatedNorm: [Float]  // [e]
    let outProj: WeightView  // [d, e]
    let outProjBias: [Float]?  // [d]
}

/// Reusable buffers of one forward call, grown to the largest batch × length seen.
final class FastWorkspace {
    var normed: [Float] = []  // [R, d]
    var projected: [Float] = []  // [R, e + conv_dim + h]
    var xBC: [Float] = []  // [R, conv_dim]
    var dt: [Float] = []  // [R, h]
    var y: [Float] = []  // [R, e]
    var gated: [Float] = []  // [R, e]
    var out: [Float] = []  // [R, d]

    func reserve(rows: Int, config: Mamba2Config) {
        func grow(_ buffer: inout [Float], _ count: Int) {
            if buffer.count < count { buffer = [Float](repeating: 0, count: count) }
        }
        grow(&normed, rows * config.hiddenSize)
        grow(&projected, rows * config.inProjSize)
        grow(&xBC, rows * config.convDim)
        grow(&dt, rows * config.numHeads)
        grow(&y, rows * config.intermediateSize)
        grow(&gated, rows * config.intermediateSize)
        grow(&out, rows * config.hiddenSize)
    }
}

/// The fast forward: the same numbered steps as `Mamba2Mixer`, fused over preallocated buffers
/// and run on `Fast` kernels across threads.
final class Mamba2FastForward: @unchecked Sendable {
    let config: Mamba2Config
    let layers: [FastLayerWeights]
    let normF: [Float]
    private var pool: [FastWorkspace] = []
    private let lock = NSLock()

    init(config: Mamba2Config, weights: Mamba2Weights) {
        self.config = config
        layers = weights.layers.map { block in
            let mixer = block.mixer
            return FastLayerWeights(
                norm: block.norm.floats(), inProj: mixer.inProj, inProjBias: mixer.inProjBias?.floats(),
                convTaps: Fast.tapMajor(mixer.conv1dWeight, channels: config.convDim, kernel: config.convKernel),
                convBias: mixer.conv1dBias?.floats(), dtBias: mixer.dtBias.floats(), A: mixer.aLog.floats().map { -exp($0) },
                D: mixer.d.floats(), gatedNorm: mixer.norm.floats(), outProj: mixer.outProj, outProjBias: mixer.outProjBias?.floats())
        }
        normF = weights.normF.floats()
    }

    private func workspace() -> FastWorkspace {
        lock.lock()
        defer { lock.unlock() }
        return pool.popLast() ?? FastWorkspace()
    }

    private func recycle(_ workspace: FastWorkspace) {
        lock.lock()
        pool.append(workspace)
        lock.unlock()
    }

    /// The longest chunk the fast path's chunked scan (`.chunked()`, asked for by name) uses when
    /// the caller names no size. The chunked SSD's result does not depend on the chunk size (tests
    /// hold it to the token-by-token recurrence), but its arithmetic per token grows with it
    /// (q·n + q·p for the intra-chunk products, against 2·p·n for the state passing): with the
    /// published chunk of 256, the scan was 40% of a 512-token prefill; chunks of 64 do the same
    /// work in under half the operations, and the recurrence (`.automatic`) in fewer still.
    static let largestChunk = 64

    /// - hidden: `[b, l, d]` embeddings; mask: `[b, l]`; state advanced in place.
    /// - returns the `norm_f` output `[b, l, d]` and, when `collect`, every block's output.
    func callAsFunction(_ hidden: Tensor, mask: Tensor?, state: inout Mamba2State, scan: SSMScan, threads: Int, collect: Bool) -> (Tensor, [Tensor]) {
        let (b, l) = (hidden.shape[0], hidden.shape[1])
        let rows = b * l
        let (d, e, h, k) = (config.hiddenSize, config.intermediateSize, config.numHeads, config.convKernel)
        let (convDim, width) = (config.convDim, config.inProjSize)
        let chunkSize: Int? = switch scan {
        case .automatic, .sequential: nil
        case let .chunked(size): size ?? min(config.chunkSize, Self.largestChunk)
        }
        // Padded single-token steps take the unfused path: one row is too small for the conv to
        // pay for waking a second thread; the scan pays once its state (read and written every
        // step) is large: ≥ 1 MB per layer, as Codestral-7B's 4 MB, not mamba2-130m's 0.8 MB.
        let smallThreads = rows == 1 ? 1 : threads
        let smallState = h * config.headDim * config.stateSize * 4 < 1 << 20
        let scanThreads = rows == 1 && smallState ? 1 : threads
        let work = workspace()
        defer { recycle(work) }
        work.reserve(rows: rows, config: config)
        var residual = hidden.scalars  // [R, d]
        var collected: [Tensor] = []
        let maskValues = mask?.scalars  // [R]
        // A one-token step of unpadded sequences takes the fused kernel: with at least as many
        // sequences as threads one sequence per thread at a time, otherwise each sequence's heads
        // split over the threads (the state is read and written every step: two cores move it
        // faster; 130m decode 1.04× in interleaved runs).
        let fusedStep = l == 1 && (maskValues?.allSatisfy { $0 == 1 } ?? true)

        /// Zeroes `count` values at `offset` of every padding row of a buffer with rows of `stride`.
        func zeroPadding(_ buffer: UnsafeMutablePointer<Float>, stride: Int, offset: Int, count: Int) {
            guard let maskValues else { return }
            for row in 0..<rows where maskValues[row] == 0 {
                (buffer + row * stride + offset).update(repeating: 0, count: count)
            }
        }

        for (index, layer) in layers.enumerated() {
            residual.withUnsafeMutableBufferPointer { residualBuffer in
                work.normed.withUnsafeMutableBufferPointer { normed in
                work.projected.withUnsafeMutableBufferPointer { projected in
                work.xBC.withUnsafeMutableBufferPointer { xBC in
                work.dt.withUnsafeMutableBufferPointer { dt in
                work.y.withUnsafeMutableBufferPointer { y in
                work.gated.withUnsafeMutableBufferPointer { gated in
                work.out.withUnsafeMutableBufferPointer { out in
                    let (H, N, P, X, DT, Y, G, O) = (
                        residualBuffer.baseAddress!, normed.baseAddress!, projected.baseAddress!, xBC.baseAddress!,
                        dt.baseAddress!, y.baseAddress!, gated.baseAddress!, out.baseAddress!)

                    // Block RMSNorm, then 1. gated MLP's linear projection (padding rows zeroed first).
                    layer.norm.withUnsafeBufferPointer { Fast.rmsNorm(x: H, gate: nil, weight: $0.baseAddress!, epsilon: config.layerNormEpsilon, rows: rows, width: d, groupSize: d, y: N) }
                    zeroPadding(N, stride: d, offset: 0, count: d)
                    withOptionalPointer(layer.inProjBias) { bias in
                        Fast.linear(x: N, rows: rows, weight: layer.inProj, bias: bias, y: P, ldy: width, threads: threads)
                    }

                    if fusedStep {
                        // 2.–3. and the gated norm, fused, for a single-token step: the sequences
                        // of a batch spread over the threads, or a lone sequence's heads.
                        Self.withStatePointers(&state.layers[index]) { convState, ssmState, ssmDType in
                            Fast.parallelFor(b, threads: b >= threads ? threads : 1) { sequences in
                                for sequence in sequences {
                                    Fast.mixerStep(
                                        projected: P + sequence * width, innerSize: e, convDim: convDim, heads: h, headDim: config.headDim,
                                        stateSize: config.stateSize, groups: config.nGroups, convTaps: layer.convTaps,
                                        convBias: layer.convBias, kernel: k, convState: convState + sequence * (k - 1) * convDim,
                                        dtBias: layer.dtBias, A: layer.A, D: layer.D, dtLimit: config.timeStepLimit,
                                        ssmState: ssmState + sequence * h * config.headDim * config.stateSize * ssmDType.size, ssmDType: ssmDType,
                                        normWeight: layer.gatedNorm, epsilon: config.layerNormEpsilon, normGroup: config.normGroupSize,
                                        xBC: X + sequence * convDim, y: Y + sequence * e, out: G + sequence * e,
                                        threads: b >= threads ? 1 : threads)
                                }
                            }
                        }
                    } else {
                        // 2. Convolution (+ SiLU) over [x, B, C], with padding zeroed before and after.
                        zeroPadding(P, stride: width, offset: e, count: convDim)
                        layer.convTaps.withUnsafeBufferPointer { taps in
                            state.layers[index].conv.scalars.withUnsafeMutableBufferPointer { convState in
                                for sequence in 0..<b {
                                    Fast.convSiLU(
                                        x: P + sequence * l * width + e, length: l, ldx: width, tapMajorWeight: taps.baseAddress!,
                                        bias: layer.convBias, kernel: k, channels: convDim,
                                        state: convState.baseAddress! + sequence * (k - 1) * convDim,
                                        y: X + sequence * l * convDim, ldy: convDim, threads: smallThreads)
                                }
                            }
                        }
                        zeroPadding(X, stride: convDim, offset: 0, count: convDim)

                        // 3. SSM: dt = clamp(softplus(dt + dt_bias)) (0 at padding), then the scan per head.
                        for row in 0..<rows {
                            let keep: Float = maskValues?[row] ?? 1
                            for head in 0..<h {
                                let step = Reference.softplus(P[row * width + e + convDim + head] + layer.dtBias[head])
                                DT[row * h + head] = min(max(step, config.timeStepLimit.lowerBound), config.timeStepLimit.upperBound) * keep
                            }
                        }
                        Self.withFloatSSMState(&state.layers[index].ssmStorage) { ssm in
                            SSMHeads(
                                x: X, ldx: convDim, dt: DT, lddt: h, B: X + e, C: X + e + config.nGroups * config.stateSize,
                                ldbc: convDim, length: l, heads: h, headDim: config.headDim, groups: config.nGroups,
                                stateSize: config.stateSize, A: layer.A, D: layer.D, state: ssm, y: Y, ldy: e
                            ).run(batch: b, chunkSize: chunkSize, threads: scanThreads)
                        }

                        // Gated RMSNorm: norm(y · silu(z)) per group, z read in place from the projection.
                        layer.gatedNorm.withUnsafeBufferPointer { weight in
                            for row in 0..<rows {
                                Fast.rmsNorm(x: Y + row * e, gate: P + row * width, weight: weight.baseAddress!, epsilon: config.layerNormEpsilon, rows: 1, width: e, groupSize: config.normGroupSize, y: G + row * e)
                            }
                        }

                    }

                    // 4. Final linear projection, and the residual.
                    withOptionalPointer(layer.outProjBias) { bias in
                        Fast.linear(x: G, rows: rows, weight: layer.outProj, bias: bias, y: O, ldy: d, threads: threads)
                    }
                    for i in 0..<(rows * d) { H[i] += O[i] }
                }}}}}}}
            }
            if collect { collected.append(Tensor(shape: [b, l, d], scalars: residual)) }
        }
        var final = [Float](repeating: 0, count: rows * d)
        residual.withUnsafeBufferPointer { x in
            final.withUnsafeMutableBufferPointer { y in
                normF.withUnsafeBufferPointer { Fast.rmsNorm(x: x.baseAddress!, gate: nil, weight: $0.baseAddress!, epsilon: config.layerNormEpsilon, rows: rows, width: d, groupSize: d, y: y.baseAddress!) }
            }
        }
        let output = Tensor(shape: [b, l, d], scalars: final)
        if collect { collected.append(output) }
        return (output, collected)
    }
}

extension Mamba2FastForward {
    /// A layer's conv state `[b, k − 1, conv_dim]` and SSM state `[b, h, p, n]` (stored in the
    /// dtype passed along), both writable.
    static func withStatePointers<R>(_ layer: inout Mamba2State.Layer, _ body: (UnsafeMutablePointer<Float>, UnsafeMutableRawPointer, DType) -> R) -> R {
        let dtype = layer.ssmStorage.dtype
        return layer.conv.scalars.withUnsafeMutableBufferPointer { conv in
            layer.ssmStorage.withUnsafeMutableRawPointer { ssm in body(conv.baseAddress!, ssm, dtype) }
        }
    }

    /// The SSM state `[b, h, p, n]` in fp32 for the scans: in place when stored so, else widened
    /// into a copy that is rounded back afterwards (the scan computes in fp32, the stored state
    /// is rounded once per call, as mamba_ssm's kernels do).
    static func withFloatSSMState<R>(_ storage: inout SSMStateStorage, _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
        let (dtype, count) = (storage.dtype, storage.count)
        return storage.withUnsafeMutableRawPointer { raw in
            if dtype == .float32 { return body(raw.assumingMemoryBound(to: Float.self)) }
            let bits = raw.assumingMemoryBound(to: UInt16.self)
            let values = UnsafeMutablePointer<Float>.allocate(capacity: count)  // [b, h, p, n]
            defer { values.deallocate() }
            Fast.widenBFloat16(bits, count: count, into: values)
            let result = body(values)
            Fast.roundToBFloat16(values, count: count, into: bits)
            return result
        }
    }
}

/// Calls `body` with a pointer to `values`, or nil.
func withOptionalPointer<R>(_ values: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let values else { return body(nil) }
    return values.withUnsafeBufferPointer { body($0.baseAddress) }
}
