import CKernels
import Dispatch
import Foundation

/// The fast twins of `Reference`'s kernels, with the same signatures (plus a thread count), on
/// the C kernels of `CKernels`: AVX-512 where the CPU has it, portable C elsewhere. Pointer-level
/// entry points let the model's fast path reuse its buffers.
public enum Fast {
    /// The kernels' implementations, by the instructions they use. `avx512VNNI` differs from
    /// `avx512` in the int8 products only (vpdpbusd).
    public enum InstructionSet: Int32, CaseIterable, Sendable {
        case portable, avx2, avx512, avx512VNNI
    }

    /// The instruction set the kernels dispatch to on this thread: the CPU's best, unless
    /// `withInstructionSet` caps it.
    public static var instructionSet: InstructionSet { InstructionSet(rawValue: ck_isa()) ?? .portable }

    /// The instruction sets this CPU can run, portable first.
    public static var availableInstructionSets: [InstructionSet] {
        InstructionSet.allCases.filter { $0.rawValue <= ck_detected_isa() }
    }

    /// Runs `body` with the kernels capped at `isa`, so tests can check every implementation the
    /// machine can run. The cap holds for the calling thread and for the threads of the
    /// `parallelFor` calls and CKernels' pool jobs it starts, never for other threads (tasks,
    /// Dispatch work of its own): tests that run beside it keep the CPU's best.
    public static func withInstructionSet<Result>(_ isa: InstructionSet, _ body: () throws -> Result) rethrows -> Result {
        let saved = ck_thread_isa_cap()
        ck_set_thread_isa_cap(isa.rawValue)
        defer { ck_set_thread_isa_cap(saved) }
        return try body()
    }

    /// All cores by default. Read once: Foundation reads it from files on Linux (cgroup limits),
    /// too slow for `parallelFor`, which checks it on every call.
    public static let defaultThreads = ProcessInfo.processInfo.activeProcessorCount

    /// Runs `body(range)` over consecutive slices of `0..<count` on `threads` threads. Each thread
    /// takes the next of about four slices per thread as it becomes free, so a thread that starts
    /// late costs little: nobody waits on half of the work. Every index is in exactly one slice.
    /// The threads are CKernels' spinning pool when it is free and there are no more threads
    /// than cores (a spinning worker must not wait for a core), otherwise Dispatch's.
    public static func parallelFor(_ count: Int, threads: Int, _ body: (Range<Int>) -> Void) {
        let parts = max(1, min(threads, count))
        guard parts > 1 else {
            if count > 0 { body(0..<count) }
            return
        }
        let slices = min(count, parts * 4)
        var next: Int64 = 0
        // The slices touch disjoint memory.
        withUnsafeMutablePointer(to: &next) { counter in
            runParticipants(parts) { _ in
                while true {
                    let slice = Int(ck_fetch_increment(counter))
                    guard slice < slices else { return }
                    body((count * slice / slices)..<(count * (slice + 1) / slices))
                }
            }
        }
    }

    /// Runs `body(plan, participant)` once on each of up to `threads` threads, over a plan that
    /// shares out the rows `0..<n` of a product of `m` input rows (weight rows of `k` values in
    /// `dtype`, `CK_Q8` included; `ck_rows_plan_init`), for `ck_gemv_rows` or `ck_gemv_q8_rows`: each
    /// thread reads its own range, then takes what is left of the others' from their far ends,
    /// so the threads finish together.
    static func parallelRows(m: Int, n: Int, k: Int, dtype: Int32, threads: Int, _ body: (OpaquePointer, Int32) -> Void) {
        let participants = max(1, min(threads, n))
        withUnsafeTemporaryAllocation(byteCount: Int(ck_rows_plan_size(Int32(participants))), alignment: 64) { bytes in
            let plan = OpaquePointer(bytes.baseAddress!)
            // A plan for several threads counts under 2³² steps a range; beyond, one thread takes
            // every row (a plan for one always holds).
            if participants > 1, ck_rows_plan_init(plan, Int64(m), Int64(n), Int64(k), dtype, Int32(participants)) != 0 {
                runParticipants(participants) { body(plan, $0) }
            } else {
                _ = ck_rows_plan_init(plan, Int64(m), Int64(n), Int64(k), dtype, 1)
                body(plan, 0)
            }
        }
    }

    /// Runs `body(participant)` for participants `0..<count` (2 or more), on CKernels' spinning
    /// pool when it is free and there are no more participants than cores (a spinning worker
    /// must not wait for a core), otherwise on Dispatch's threads, all under the caller's
    /// instruction-set cap. Returns when every call has.
    private static func runParticipants(_ count: Int, _ body: (Int32) -> Void) {
        withoutActuallyEscaping(body) { body in
            var job = ParticipantJob(body: body, isaCap: ck_thread_isa_cap())
            if count <= defaultThreads, withUnsafeMutablePointer(to: &job, { ck_pool_run(Int32(count), runParticipantJob, $0) }) != 0 {
                return
            }
            let shared = UncheckedSendable(job)
            DispatchQueue.concurrentPerform(iterations: count) { shared.value.run(Int32($0)) }
        }
    }

    static func code(_ dtype: DType) -> Int32 {
        switch dtype {
        case .float32: Int32(CK_F32)
        case .bfloat16: Int32(CK_BF16)
        case .float16: Int32(CK_F16)
        case .int8: preconditionFailure("int8 weights go through ck_gemv_q8")
        }
    }

    /// How many `parallelFor` and `parallelRows` calls have run on the spinning pool (the rest
    /// went through Dispatch).
    static var pooledJobs: Int { Int(ck_pool_jobs()) }

    /// DRAM read bandwidth in bytes per second: the best of `repeats` parallel passes over a
    /// buffer far larger than the caches, for each of `ReadProbe.patterns`: one sequential run
    /// per thread, and 4 or 8 runs read side by side within each 4 MB slice (the pattern of the
    /// matrix-vector kernels, which this machine's memory serves up to a quarter faster than
    /// one run). The bound a benchmark quotes must be the best the machine does, whatever the
    /// pattern.
    public static func measureReadBandwidth(bytes: Int = 1 << 30, threads: Int = defaultThreads, repeats: Int = 5) -> Double {
        let probe = ReadProbe(bytes: bytes)
        var best = 0.0
        for streams in ReadProbe.patterns {
            for _ in 0..<repeats { best = max(best, probe.read(streams: streams, threads: threads)) }
        }
        return best
    }

    /// Memory kept for repeated reads by all threads, in 4 MB slices: a buffer of its own far
    /// larger than the caches (each read measures the memory's read bandwidth at that moment), or
    /// memory owned elsewhere, such as a model's weights (each read times a plain pass over those
    /// very bytes, in their pages).
    public final class ReadProbe {
        /// The access patterns: 1, one sequential run per thread; 4 or 8, that many runs side by
        /// side within each 4 MB slice.
        public static let patterns: [Int32] = [1, 4, 8]
        static let sliceBytes = 4 << 20
        private let buffer: UnsafeMutableRawBufferPointer?
        /// `[slices]`: at most 4 MB each, starting and ending on 64-byte boundaries (whole
        /// floats for `ck_sum`, whole cache lines).
        private let slices: [UnsafeRawBufferPointer]
        /// The bytes one read touches.
        public let bytes: Int

        /// A buffer of its own: `bytes` rounded down to whole slices, at least one.
        public convenience init(bytes: Int = 1 << 30) {
            let count = max(1, bytes / Self.sliceBytes) * Self.sliceBytes
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 64)
            buffer.bindMemory(to: Float.self).initialize(repeating: 1)
            self.init(regions: [UnsafeRawBufferPointer(buffer)], owning: buffer)
        }

        /// Reads `regions` in order, which the caller keeps alive and unchanged; each loses the
        /// partial cache lines at its ends (under 128 bytes).
        public convenience init(reading regions: [UnsafeRawBufferPointer]) {
            self.init(regions: regions, owning: nil)
        }

        private init(regions: [UnsafeRawBufferPointer], owning buffer: UnsafeMutableRawBufferPointer?) {
            var slices: [UnsafeRawBufferPointer] = []
            for region in regions {
                guard let base = region.baseAddress else { continue }
                let start = (Int(bitPattern: base) + 63) & ~63
                let end = (Int(bitPattern: base) + region.count) & ~63
                var offset = start
                while offset < end {
                    let count = min(Self.sliceBytes, end - offset)
                    slices.append(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: offset), count: count))
                    offset += count
                }
            }
            self.buffer = buffer
            self.slices = slices
            self.bytes = slices.reduce(0) { $0 + $1.count }
        }

        deinit { buffer?.deallocate() }

        /// Bytes per second of one parallel pass over the slices in pattern `streams` (one
        /// thread's neighbouring slices of contiguous memory make one sequential run).
        public func read(streams: Int32, threads: Int = defaultThreads) -> Double {
            guard bytes > 0 else { return 0 }
            let slices = self.slices
            let start = DispatchTime.now()
            parallelFor(slices.count, threads: threads) { range in
                var sum: Float = 0
                for slice in slices[range] {
                    sum += ck_sum(slice.baseAddress!.assumingMemoryBound(to: Float.self), Int64(slice.count / 4), streams)
                }
                if sum == -1 { print("") }  // keeps the read from being optimized away
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
            return Double(bytes) / seconds
        }
    }

    // MARK: Linear

    /// `y[r, :] = x[r, :] · Wᵀ + bias` for `m` rows, the output columns split across threads.
    /// - x: `[m, k]`, weight: `[n, k]`, bias: `[n]` fp32, y: `[m, n]` (row stride `ldy`).
    public static func linear(
        x: UnsafePointer<Float>, rows m: Int, weight: WeightView, bias: UnsafePointer<Float>?,
        y: UnsafeMutablePointer<Float>, ldy: Int, threads: Int
    ) {
        let (n, k) = (weight.shape[0], weight.shape[1])
        let base = weight.bytes.baseAddress!
        if weight.dtype == .int8 {
            guard let scales = weight.scales?.baseAddress?.assumingMemoryBound(to: Float.self) else {
                preconditionFailure("int8 weight \(weight.shape) without block scales")
            }
            let q = base.assumingMemoryBound(to: Int8.self)
            // The activations quantized once (on the C side's stack up to 32 KB), then shared by
            // every thread: integer dot products, 16 input rows at a time against each weight row,
            // which beat widening the weights for the fp32 block kernels at every size measured
            // (130m int8: batch-4 decode 1.7–2.0×, 512-token prefill 1.2–1.3×; 7B 64-token prefill 1.5×).
            var product = QuantizedProduct(m: m, n: n, k: k, q: q, scales: scales, bias: bias, y: y, ldy: ldy, threads: threads)
            let done = withUnsafeMutablePointer(to: &product) { ck_q8_with_quantized_rows(x, Int64(m), Int64(k), runQuantizedProduct, $0) }
            precondition(done != 0, "out of memory for \(m) × \(k) quantized activations")
            return
        }
        let dtype = code(weight.dtype)
        // Decoding (up to CK_GEMV_BATCH input rows): each thread streams a range of its own,
        // then helps finish the others' (parallelRows).
        if m <= CK_GEMV_BATCH {
            parallelRows(m: m, n: n, k: k, dtype: dtype, threads: threads) { plan, thread in
                ck_gemv_rows(x, Int64(m), Int64(k), base, dtype, bias, y, Int64(ldy), plan, thread)
            }
            return
        }
        // Split by blocks of 4 output columns so the 4 × 4 micro-kernel stays whole.
        parallelFor((n + 3) / 4, threads: threads) { range in
            ck_linear(x, Int64(m), Int64(k), base, dtype, bias, y, Int64(ldy), Int64(range.lowerBound * 4), Int64(min(n, range.upperBound * 4)))
        }
    }

    /// Same as `Reference.linear`.
    public static func linear(_ x: Tensor, weight: WeightView, bias: WeightView? = nil, threads: Int = defaultThreads) -> Tensor {
        let (n, k) = (weight.shape[0], weight.shape[1])
        precondition(x.shape.last == k, "linear: x \(x.shape) vs weight \(weight.shape)")
        let m = x.count / max(k, 1)
        var out = [Float](repeating: 0, count: m * n)
        let biasValues = bias?.floats()
        x.scalars.withUnsafeBufferPointer { xs in
            out.withUnsafeMutableBufferPointer { ys in
                if let biasValues {
                    biasValues.withUnsafeBufferPointer { linear(x: xs.baseAddress!, rows: m, weight: weight, bias: $0.baseAddress, y: ys.baseAddress!, ldy: n, threads: threads) }
                } else {
                    linear(x: xs.baseAddress!, rows: m, weight: weight, bias: nil, y: ys.baseAddress!, ldy: n, threads: threads)
                }
            }
        }
        return Tensor(shape: Array(x.shape.dropLast()) + [n], scalars: out)
    }

    // MARK: Norms and activations

    /// Same as `Reference.rmsNorm`.
    public static func rmsNorm(_ x: Tensor, weight: WeightView, epsilon: Float, groupSize: Int? = nil) -> Tensor {
        normalize(x, gate: nil, weight: weight, epsilon: epsilon, groupSize: groupSize ?? (x.shape.last ?? 1))
    }

    /// Same as `Reference.gatedRMSNorm`.
    public static func gatedRMSNorm(_ y: Tensor, gate z: Tensor, weight: WeightView, epsilon: Float, groupSize: Int) -> Tensor {
        normalize(y, gate: z, weight: weight, epsilon: epsilon, groupSize: groupSize)
    }

    private static func normalize(_ x: Tensor, gate: Tensor?, weight: WeightView, epsilon: Float, groupSize: Int) -> Tensor {
        let d = x.shape.last ?? 0
        var out = x.scalars
        let w = weight.floats()
        x.scalars.withUnsafeBufferPointer { xs in
            out.withUnsafeMutableBufferPointer { ys in
                w.withUnsafeBufferPointer { ws in
                    if let gate {
                        gate.scalars.withUnsafeBufferPointer { zs in
                            ck_rmsnorm(xs.baseAddress, zs.baseAddress, ws.baseAddress, epsilon, Int64(x.count / max(d, 1)), Int64(d), Int64(groupSize), ys.baseAddress)
                        }
                    } else {
                        ck_rmsnorm(xs.baseAddress, nil, ws.baseAddress, epsilon, Int64(x.count / max(d, 1)), Int64(d), Int64(groupSize), ys.baseAddress)
                    }
                }
            }
        }
        return Tensor(shape: x.shape, scalars: out)
    }

    /// Pointer-level RMSNorm: `rows` rows of `width`, normalized per group; with `gate`, of
    /// `x · silu(gate)`.
    public static func rmsNorm(
        x: UnsafePointer<Float>, gate: UnsafePointer<Float>?, weight: UnsafePointer<Float>, epsilon: Float,
        rows: Int, width: Int, groupSize: Int, y: UnsafeMutablePointer<Float>
    ) {
        ck_rmsnorm(x, gate, weight, epsilon, Int64(rows), Int64(width), Int64(groupSize), y)
    }

    /// `x · sigmoid(x)` in place.
    public static func silu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        ck_silu(x, Int64(count))
    }

    // MARK: Convolution

    /// `Reference.causalConv1d` followed by SiLU. weight: `[c, k]` or `[c, 1, k]`.
    public static func causalConv1dSiLU(_ x: Tensor, weight: WeightView, bias: WeightView?, state: Tensor, threads: Int = defaultThreads) -> (output: Tensor, state: Tensor) {
        let (b, l, c) = (x.shape[0], x.shape[1], x.shape[2])
        let k = weight.shape.last!
        let taps = tapMajor(weight, channels: c, kernel: k)
        let biasValues = bias?.floats()
        var output = Tensor(zeros: [b, l, c])
        var newState = state
        for batch in 0..<b {
            x.scalars.withUnsafeBufferPointer { xs in
                output.scalars.withUnsafeMutableBufferPointer { ys in
                    newState.scalars.withUnsafeMutableBufferPointer { ss in
                        taps.withUnsafeBufferPointer { ws in
                            convSiLU(
                                x: xs.baseAddress! + batch * l * c, length: l, ldx: c, tapMajorWeight: ws.baseAddress!,
                                bias: biasValues, kernel: k, channels: c, state: ss.baseAddress! + batch * (k - 1) * c,
                                y: ys.baseAddress! + batch * l * c, ldy: c, threads: threads)
                        }
                    }
                }
            }
        }
        return (output, newState)
    }

    /// Conv weights `[c, 1, k]` rearranged tap-major `[k, c]` for the kernel.
    public static func tapMajor(_ weight: WeightView, channels c: Int, kernel k: Int) -> [Float] {
        let w = weight.floats()
        var taps = [Float](repeating: 0, count: k * c)
        for channel in 0..<c {
            for tap in 0..<k { taps[tap * c + channel] = w[channel * k + tap] }
        }
        return taps
    }

    /// One sequence's conv + SiLU, channels split across threads.
    public static func convSiLU(
        x: UnsafePointer<Float>, length l: Int, ldx: Int, tapMajorWeight: UnsafePointer<Float>, bias: [Float]?,
        kernel k: Int, channels c: Int, state: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>, ldy: Int, threads: Int
    ) {
        let blocks = (c + 63) / 64
        let body = { (biasPointer: UnsafePointer<Float>?) in
            parallelFor(blocks, threads: threads) { range in
                ck_conv_silu(x, Int64(l), Int64(ldx), tapMajorWeight, biasPointer, Int64(k), Int64(c), state, y, Int64(ldy),
                             Int64(range.lowerBound * 64), Int64(min(c, range.upperBound * 64)))
            }
        }
        if let bias { bias.withUnsafeBufferPointer { body($0.baseAddress) } } else { body(nil) }
    }

    /// One sequence's single-token mixer step after its input projection, in one kernel call
    /// (`ck_mixer_step`): conv + SiLU, dt, every head's recurrent step, the gated RMSNorm. The
    /// same as `causalConv1dSiLU` with a length of 1, `ssmRecurrence` over the heads and
    /// `gatedRMSNorm`, which the tests hold it to.
    /// - projected: `[e + conv_dim + h]` (`[z, xBC, dt]`); convState: `[k − 1, conv_dim]`;
    ///   ssmState: `[h, p, n]` in `ssmDType`, fp32 or bf16 (both states updated); xBC:
    ///   `[conv_dim]` and y: `[e]` scratch; out: `[e]`.
    /// - threads: the heads' steps split over up to this many of the pool's threads (at most
    ///   one per core; one thread when the pool is busy, as inside another parallel call).
    public static func mixerStep(
        projected: UnsafePointer<Float>, innerSize e: Int, convDim: Int, heads h: Int, headDim p: Int, stateSize n: Int, groups: Int,
        convTaps: [Float], convBias: [Float]?, kernel k: Int, convState: UnsafeMutablePointer<Float>,
        dtBias: [Float], A: [Float], D: [Float], dtLimit: ClosedRange<Float>, ssmState: UnsafeMutableRawPointer, ssmDType: DType = .float32,
        normWeight: [Float], epsilon: Float, normGroup: Int,
        xBC: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, threads: Int = 1
    ) {
        precondition(ssmDType == .float32 || ssmDType == .bfloat16, "an SSM state is F32 or BF16, not \(ssmDType.rawValue)")
        convTaps.withUnsafeBufferPointer { taps in
            dtBias.withUnsafeBufferPointer { dtBias in
                A.withUnsafeBufferPointer { A in
                    D.withUnsafeBufferPointer { D in
                        normWeight.withUnsafeBufferPointer { weight in
                            let step = { (bias: UnsafePointer<Float>?) in
                                ck_mixer_step(
                                    projected, Int64(e), Int64(convDim), Int64(h), Int64(p), Int64(n), Int64(groups),
                                    taps.baseAddress!, bias, Int64(k), convState, dtBias.baseAddress!, A.baseAddress!, D.baseAddress!,
                                    dtLimit.lowerBound, dtLimit.upperBound, ssmState, code(ssmDType), weight.baseAddress!, epsilon, Int64(normGroup),
                                    xBC, y, out, Int32(clamping: min(threads, defaultThreads)))
                            }
                            if let convBias { convBias.withUnsafeBufferPointer { step($0.baseAddress) } } else { step(nil) }
                        }
                    }
                }
            }
        }
    }

    /// bf16 bits to fp32, exactly (`HalfConversion.float(fromBFloat16:)` on 8 values at a time).
    public static func widenBFloat16(_ source: UnsafePointer<UInt16>, count: Int, into destination: UnsafeMutablePointer<Float>) {
        ck_bf16_widen(source, Int64(count), destination)
    }

    /// fp32 to bf16 bits, rounded to nearest even (`HalfConversion.bfloat16(from:)`, NaN included).
    public static func roundToBFloat16(_ source: UnsafePointer<Float>, count: Int, into destination: UnsafeMutablePointer<UInt16>) {
        ck_bf16_round(source, Int64(count), destination)
    }

    // MARK: Selective scan

    /// Same as `Reference.ssdChunked`; heads run in parallel.
    public static func ssdChunked(_ s: SSMInputs, chunkSize q: Int, initialState: Tensor, threads: Int = defaultThreads) -> (y: Tensor, state: Tensor) {
        scan(s, chunkSize: q, initialState: initialState, threads: threads)
    }

    /// Same as `Reference.ssmRecurrence`.
    public static func ssmRecurrence(_ s: SSMInputs, initialState: Tensor, threads: Int = defaultThreads) -> (y: Tensor, state: Tensor) {
        scan(s, chunkSize: nil, initialState: initialState, threads: threads)
    }

    private static func scan(_ s: SSMInputs, chunkSize: Int?, initialState: Tensor, threads: Int) -> (y: Tensor, state: Tensor) {
        let (b, l, h, p, g, n) = (s.batch, s.length, s.heads, s.headDim, s.groups, s.stateSize)
        var y = Tensor(zeros: [b, l, h, p])
        var state = initialState
        let D = s.D ?? [Float](repeating: 0, count: h)
        s.x.scalars.withUnsafeBufferPointer { xs in
            s.dt.scalars.withUnsafeBufferPointer { dts in
                s.B.scalars.withUnsafeBufferPointer { Bs in
                    s.C.scalars.withUnsafeBufferPointer { Cs in
                        y.scalars.withUnsafeMutableBufferPointer { ys in
                            state.scalars.withUnsafeMutableBufferPointer { ss in
                                let heads = SSMHeads(
                                    x: xs.baseAddress!, ldx: h * p, dt: dts.baseAddress!, lddt: h, B: Bs.baseAddress!, C: Cs.baseAddress!,
                                    ldbc: g * n, length: l, heads: h, headDim: p, groups: g, stateSize: n, A: s.A, D: D,
                                    state: ss.baseAddress!, y: ys.baseAddress!, ldy: h * p)
                                heads.run(batch: b, chunkSize: chunkSize, threads: threads)
                            }
                        }
                    }
                }
            }
        }
        return (y, state)
    }
}

/// The work of one `runParticipants`, called once by every thread that runs it.
private struct ParticipantJob {
    let body: (Int32) -> Void
    /// The caller's instruction-set cap, which the threads take on while they run its work (the
    /// pool's workers already have it; Dispatch's threads need it here).
    let isaCap: Int32

    func run(_ participant: Int32) {
        let saved = ck_thread_isa_cap()
        ck_set_thread_isa_cap(isaCap)
        defer { ck_set_thread_isa_cap(saved) }
        body(participant)
    }
}

/// One product with int8 weights, for `ck_q8_with_quantized_rows`' callback.
private struct QuantizedProduct {
    let m: Int, n: Int, k: Int
    let q: UnsafePointer<Int8>, scales: UnsafePointer<Float>, bias: UnsafePointer<Float>?
    let y: UnsafeMutablePointer<Float>, ldy: Int
    let threads: Int
}

private let runQuantizedProduct: ck_q8_body = { context, xq, xs in
    let p = context!.assumingMemoryBound(to: QuantizedProduct.self).pointee
    // Rows shared out by a plan, whatever the number of input rows: each run of weights is then
    // read from memory once for all of them.
    Fast.parallelRows(m: p.m, n: p.n, k: p.k, dtype: Int32(CK_Q8), threads: p.threads) { plan, thread in
        ck_gemv_q8_rows(xq, xs, Int64(p.m), Int64(p.k), p.q, p.scales, p.bias, p.y, Int64(p.ldy), plan, thread)
    }
}

private let runParticipantJob: ck_job = { context, participant in
    context!.assumingMemoryBound(to: ParticipantJob.self).pointee.run(participant)
}

/// A value handed to the threads of `runParticipants`, which joins them before returning.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// Strided views of one batch's scan inputs, for the per-head kernels. Sequence `r` of the batch
/// starts `r · length` rows in; heads `[i·h/g, (i+1)·h/g)` read group `i`'s B and C.
public struct SSMHeads: @unchecked Sendable {
    public var x: UnsafePointer<Float>, ldx: Int
    public var dt: UnsafePointer<Float>, lddt: Int
    public var B: UnsafePointer<Float>, C: UnsafePointer<Float>, ldbc: Int
    public var length: Int, heads: Int, headDim: Int, groups: Int, stateSize: Int
    public var A: [Float], D: [Float]
    /// `[b, h, p, n]`.
    public var state: UnsafeMutablePointer<Float>
    public var y: UnsafeMutablePointer<Float>, ldy: Int

    public init(
        x: UnsafePointer<Float>, ldx: Int, dt: UnsafePointer<Float>, lddt: Int, B: UnsafePointer<Float>, C: UnsafePointer<Float>,
        ldbc: Int, length: Int, heads: Int, headDim: Int, groups: Int, stateSize: Int, A: [Float], D: [Float],
        state: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        (self.x, self.ldx, self.dt, self.lddt, self.B, self.C, self.ldbc) = (x, ldx, dt, lddt, B, C, ldbc)
        (self.length, self.heads, self.headDim, self.groups, self.stateSize) = (length, heads, headDim, groups, stateSize)
        (self.A, self.D, self.state, self.y, self.ldy) = (A, D, state, y, ldy)
    }

    /// Every (sequence, head) of `batch` sequences; `chunkSize` nil runs the recurrence
    /// (`ck_ssm_scan`: the per-token step, four tokens per pass over the state; also used for
    /// single-token steps).
    public func run(batch: Int, chunkSize: Int?, threads: Int) {
        let (l, h, p, n) = (length, heads, headDim, stateSize)
        let headsPerGroup = h / groups
        let recurrent = chunkSize == nil || l == 1
        // A chunk longer than the sequence computes the same as one of the sequence's length.
        let q = min(chunkSize ?? 1, l)
        let workspace = recurrent ? 0 : Int(ck_ssd_workspace(Int64(q), Int64(p), Int64(n)))
        Fast.parallelFor(batch * h, threads: threads) { range in
            // Decoding steps (the recurrence) need no workspace, so allocate nothing per token.
            let work: UnsafeMutablePointer<Float>? = recurrent ? nil : .allocate(capacity: workspace)
            defer { work?.deallocate() }
            for task in range {
                let (row, head) = (task / h, task % h)
                let group = head / headsPerGroup
                let xh = x + row * l * ldx + head * p
                let dth = dt + row * l * lddt + head
                let Bh = B + row * l * ldbc + group * n
                let Ch = C + row * l * ldbc + group * n
                let sh = state + (row * h + head) * p * n
                let yh = y + row * l * ldy + head * p
                if recurrent {
                    ck_ssm_scan(xh, Int64(ldx), dth, Int64(lddt), Bh, Ch, Int64(ldbc), Int64(l), A[head], D[head], Int64(p), Int64(n), sh, yh, Int64(ldy))
                } else {
                    ck_ssd_chunked(xh, Int64(ldx), dth, Int64(lddt), Bh, Ch, Int64(ldbc), Int64(l), Int64(p), Int64(n), Int64(q),
                                   A[head], D[head], sh, yh, Int64(ldy), work!)
                }
            }
        }
    }
}
