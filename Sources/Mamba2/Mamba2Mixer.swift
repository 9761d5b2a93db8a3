import Foundation
import Tensors

/// How the mixer runs the selective scan. Every form computes the same function (tests hold
/// them equal); they differ in the order of the arithmetic and in its cost.
public enum SSMScan: Sendable, Equatable {
    /// Each forward path's own choice (the default): the reference path runs the chunked SSD with
    /// the config's `chunk_size`, as transformers' `torch_forward` does; the fast path runs the
    /// recurrence, which on a CPU is the cheaper form (3·p·n operations per token and head against
    /// the chunked form's q·(n + p) + 2·p·n, the head's state staying in L1/L2), as llama.cpp's
    /// CPU scan does.
    case automatic
    /// As transformers' `torch_forward`: the chunked SSD for several tokens (with the config's
    /// `chunk_size`, or this one), the recurrent form for a single token.
    case chunked(chunkSize: Int? = nil)
    /// Token by token through the recurrence: the independent oracle for the chunked form.
    case sequential
}

/// The Mamba-2 mixer (transformers' `Mamba2Mixer.torch_forward`), step by step on the reference
/// kernels.
struct Mamba2Mixer: Sendable {
    let config: Mamba2Config
    let weights: Mamba2MixerWeights

    /// - hiddenStates: `[b, l, d]`; mask: `[b, l]` of 0/1 (nil for none); state: this layer's.
    /// - returns `[b, l, d]`, and advances `state` past these `l` tokens.
    func callAsFunction(_ hiddenStates: Tensor, mask: Tensor?, state: inout Mamba2State.Layer, scan: SSMScan) -> Tensor {
        let (b, l) = (hiddenStates.shape[0], hiddenStates.shape[1])
        let (e, h, p, g, n) = (config.intermediateSize, config.numHeads, config.headDim, config.nGroups, config.stateSize)

        // 1. Gated MLP's linear projection. Padding positions are zeroed first.
        let input = mask.map { hiddenStates.scalingPositions(by: $0) } ?? hiddenStates  // [b, l, d]
        let projected = Reference.linear(input, weight: weights.inProj, bias: weights.inProjBias)  // [b, l, e + conv_dim + h]
        let parts = projected.split(lastAxis: [e, config.convDim, h])
        let (gate, xBC, dtRaw) = (parts[0], parts[1], parts[2])  // z [b, l, e], xBC [b, l, conv_dim], dt [b, l, h]

        // 2. Convolution sequence transformation. Masking the conv input as well keeps the
        // `in_proj` bias of padding positions out of the first real tokens (transformers leaks it).
        let convInput = mask.map { xBC.scalingPositions(by: $0) } ?? xBC  // [b, l, conv_dim]
        let convolved = Reference.causalConv1d(
            convInput, weight: weights.conv1dWeight, bias: weights.conv1dBias, state: state.conv)
        state.conv = convolved.state  // [b, k - 1, conv_dim]
        var activated = convolved.output.map(Reference.silu)  // [b, l, conv_dim]
        if let mask { activated = activated.scalingPositions(by: mask) }
        let xBCParts = activated.split(lastAxis: [e, g * n, g * n])
        let x = xBCParts[0].reshaped([b, l, h, p])  // [b, l, h, p]
        let B = xBCParts[1].reshaped([b, l, g, n])  // [b, l, g, n]
        let C = xBCParts[2].reshaped([b, l, g, n])  // [b, l, g, n]

        // 3. SSM transformation. A = −exp(A_log) in fp32; dt = clamp(softplus(dt + dt_bias)).
        // A padding position gets dt = 0: it neither decays nor feeds the state.
        let A = weights.aLog.floats().map { -exp($0) }  // [h]
        let dtBias = weights.dtBias.floats()  // [h]
        var dt = dtRaw  // [b, l, h]
        for index in 0..<dt.count {
            let step = Reference.softplus(dtRaw.scalars[index] + dtBias[index % h])
            dt.scalars[index] = min(max(step, config.timeStepLimit.lowerBound), config.timeStepLimit.upperBound)
        }
        if let mask { dt = dt.scalingPositions(by: mask) }
        let inputs = SSMInputs(x: x, dt: dt, A: A, B: B, C: C, D: weights.d.floats())
        let scanned: (y: Tensor, state: Tensor)
        switch scan {
        case .automatic where l == 1, .chunked where l == 1, .sequential:
            scanned = Reference.ssmRecurrence(inputs, initialState: state.ssm)
        case .automatic:
            scanned = Reference.ssdChunked(inputs, chunkSize: config.chunkSize, initialState: state.ssm)
        case let .chunked(chunkSize):
            scanned = Reference.ssdChunked(inputs, chunkSize: chunkSize ?? config.chunkSize, initialState: state.ssm)
        }
        state.ssm = scanned.state  // [b, h, p, n]
        let y = scanned.y.reshaped([b, l, e])  // [b, l, e]
        let normed = Reference.gatedRMSNorm(
            y, gate: gate, weight: weights.norm, epsilon: config.layerNormEpsilon, groupSize: config.normGroupSize)  // [b, l, e]

        // 4. Final linear projection.
        return Reference.linear(normed, weight: weights.outProj, bias: weights.outProjBias)  // [b, l, d]
    }
}
