import Foundation

/// Inputs of the selective state-space scan shared by the chunked and the sequential forms.
///
/// Notation (docs/notation.md): `b` batch, `l` length, `h` heads, `p` head dim, `g` groups,
/// `n` state size. Heads `[i·h/g, (i+1)·h/g)` share group `i`'s `B` and `C`.
public struct SSMInputs: Sendable {
    /// `[b, l, h, p]` the (convolved) inputs, not yet multiplied by `dt`.
    public var x: Tensor
    /// `[b, l, h]` step sizes, already `softplus(dt + dt_bias)` and clamped.
    public var dt: Tensor
    /// `[h]` the decay rates `A = -exp(A_log)`.
    public var A: [Float]
    /// `[b, l, g, n]` input projections.
    public var B: Tensor
    /// `[b, l, g, n]` output projections.
    public var C: Tensor
    /// `[h]` the skip connection, or nil for none.
    public var D: [Float]?

    public init(x: Tensor, dt: Tensor, A: [Float], B: Tensor, C: Tensor, D: [Float]?) {
        precondition(x.rank == 4 && dt.shape == Array(x.shape.prefix(3)) && A.count == x.shape[2], "SSM: x \(x.shape), dt \(dt.shape), A \(A.count)")
        precondition(B.rank == 4 && B.shape == C.shape && B.shape[0...1] == x.shape[0...1] && x.shape[2] % B.shape[2] == 0, "SSM: x \(x.shape), B \(B.shape), C \(C.shape)")
        precondition(D == nil || D!.count == A.count, "SSM: D has \(D!.count) heads, A has \(A.count)")
        self.x = x
        self.dt = dt
        self.A = A
        self.B = B
        self.C = C
        self.D = D
    }

    var batch: Int { x.shape[0] }
    var length: Int { x.shape[1] }
    var heads: Int { x.shape[2] }
    var headDim: Int { x.shape[3] }
    var groups: Int { B.shape[2] }
    var stateSize: Int { B.shape[3] }
}

extension Reference {
    /// The chunked SSD ("Transformers are SSMs", Listing 1; transformers' `torch_forward`), in its
    /// four numbered steps, starting from `initialState` `[b, h, p, n]`.
    ///
    /// The sequence is padded to a multiple of `chunkSize` with `dt = 0` and `x = B = 0`, so the
    /// padding decays nothing and adds nothing to the final state.
    /// - returns y `[b, l, h, p]` (including the `D` skip) and the final state `[b, h, p, n]`.
    public static func ssdChunked(_ s: SSMInputs, chunkSize q: Int, initialState: Tensor) -> (y: Tensor, state: Tensor) {
        let (bs, l, h, p, g, n) = (s.batch, s.length, s.heads, s.headDim, s.groups, s.stateSize)
        precondition(q > 0 && initialState.shape == [bs, h, p, n], "ssdChunked: chunk \(q), state \(initialState.shape)")
        let chunks = (l + q - 1) / q
        let headsPerGroup = h / g
        var y = Tensor(zeros: [bs, l, h, p])
        var finalState = Tensor(zeros: [bs, h, p, n])

        for b in 0..<bs {
            for head in 0..<h {
                let group = head / headsPerGroup
                // Per-position views of this (b, head), zero past the end (the padding).
                func x(_ t: Int, _ i: Int) -> Float { t < l ? s.x.scalars[((b * l + t) * h + head) * p + i] : 0 }
                func dt(_ t: Int) -> Float { t < l ? s.dt.scalars[(b * l + t) * h + head] : 0 }
                func B(_ t: Int, _ j: Int) -> Float { t < l ? s.B.scalars[((b * l + t) * g + group) * n + j] : 0 }
                func C(_ t: Int, _ j: Int) -> Float { t < l ? s.C.scalars[((b * l + t) * g + group) * n + j] : 0 }
                // Discretize: xdt = x·dt, a = A·dt. [c, q]
                let a = (0..<(chunks * q)).map { s.A[head] * dt($0) }
                // segsum(v)[i][j] = Σ_{k=j+1..i} v[k] for j ≤ i (−∞ above the diagonal).
                func segsum(_ v: [Float], _ i: Int, _ j: Int) -> Float {
                    j > i ? -.infinity : (j + 1 > i ? 0 : v[(j + 1)...i].reduce(0, +))
                }
                // A_cumsum per chunk: [c, q]
                var cumsum = [Float](repeating: 0, count: chunks * q)
                for c in 0..<chunks {
                    var running: Float = 0
                    for i in 0..<q { running += a[c * q + i]; cumsum[c * q + i] = running }
                }

                // 2. The state each chunk contributes on its own: states[c] = Σ_t B_t·decay_t·xdt_t. [c, p, n]
                var chunkStates = [Float](repeating: 0, count: chunks * p * n)
                for c in 0..<chunks {
                    let last = cumsum[c * q + q - 1]
                    for t in 0..<q {
                        let pos = c * q + t
                        let decay = exp(last - cumsum[pos]) * dt(pos)
                        for i in 0..<p {
                            let xv = x(pos, i) * decay
                            for j in 0..<n { chunkStates[(c * p + i) * n + j] += B(pos, j) * xv }
                        }
                    }
                }

                // 3. Inter-chunk recurrence: the state entering each chunk, and the final state.
                // totals = pad(A_cumsum[..., -1], (1, 0)); startState[c] = Σ_{z≤c} exp(segsum(totals)[c][z]) · states'[z]
                // with states' = [initial, states[0], …]. [c + 1, p, n]
                let totals = [0] + (0..<chunks).map { cumsum[$0 * q + q - 1] }
                let initial = Array(initialState.scalars[((b * h + head) * p * n)..<((b * h + head + 1) * p * n)])
                var startStates = [Float](repeating: 0, count: (chunks + 1) * p * n)
                for c in 0...chunks {
                    for z in 0...c {
                        let decay = exp(segsum(totals, c, z))
                        for e in 0..<(p * n) {
                            let source = z == 0 ? initial[e] : chunkStates[(z - 1) * p * n + e]
                            startStates[c * p * n + e] += decay * source
                        }
                    }
                }
                for e in 0..<(p * n) {
                    finalState.scalars[(b * h + head) * p * n + e] = startStates[chunks * p * n + e]
                }

                for c in 0..<chunks {
                    for t in 0..<q where c * q + t < l {
                        let pos = c * q + t
                        for i in 0..<p {
                            // 1. Diagonal block: Y_diag = Σ_{s≤t} (C_t·B_s) · exp(segsum(a)[t][s]) · xdt_s
                            var diagonal: Float = 0
                            for u in 0...t {
                                let source = c * q + u
                                var cb: Float = 0
                                for j in 0..<n { cb += C(pos, j) * B(source, j) }
                                diagonal += cb * exp(segsum(a, pos, source)) * x(source, i) * dt(source)
                            }
                            // 4. Off-diagonal: Y_off = exp(A_cumsum_t) · C_t · startState[c]
                            var offDiagonal: Float = 0
                            for j in 0..<n { offDiagonal += C(pos, j) * startStates[(c * p + i) * n + j] }
                            offDiagonal *= exp(cumsum[pos])
                            let skip = (s.D?[head] ?? 0) * x(pos, i)
                            y.scalars[((b * l + pos) * h + head) * p + i] = diagonal + offDiagonal + skip
                        }
                    }
                }
            }
        }
        return (y, finalState)
    }

    /// The selective scan one token at a time: the independent oracle for the chunked form, and
    /// the recurrent decode step (transformers' `selective_state_update`).
    ///
    /// `S ← exp(dt·A)·S + dt·x ⊗ B`, `y = S·C + D·x`, per head, with `S` `[p, n]`.
    /// - returns y `[b, l, h, p]` and the final state `[b, h, p, n]`.
    public static func ssmRecurrence(_ s: SSMInputs, initialState: Tensor) -> (y: Tensor, state: Tensor) {
        let (bs, l, h, p, g, n) = (s.batch, s.length, s.heads, s.headDim, s.groups, s.stateSize)
        precondition(initialState.shape == [bs, h, p, n], "ssmRecurrence: state \(initialState.shape)")
        let headsPerGroup = h / g
        var y = Tensor(zeros: [bs, l, h, p])
        var state = initialState
        for b in 0..<bs {
            for t in 0..<l {
                for head in 0..<h {
                    let group = head / headsPerGroup
                    let dt = s.dt.scalars[(b * l + t) * h + head]
                    let dA = exp(dt * s.A[head])
                    let bBase = ((b * l + t) * g + group) * n
                    for i in 0..<p {
                        let x = s.x.scalars[((b * l + t) * h + head) * p + i]
                        let sBase = ((b * h + head) * p + i) * n
                        var out: Float = 0
                        for j in 0..<n {
                            let updated = state.scalars[sBase + j] * dA + dt * s.B.scalars[bBase + j] * x
                            state.scalars[sBase + j] = updated
                            out += updated * s.C.scalars[bBase + j]
                        }
                        y.scalars[((b * l + t) * h + head) * p + i] = out + (s.D?[head] ?? 0) * x
                    }
                }
            }
        }
        return (y, state)
    }
}
