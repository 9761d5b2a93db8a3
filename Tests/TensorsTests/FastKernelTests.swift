import Testing
@testable import Tensors

/// Every fast kernel against its reference twin, over odd sizes (tails of the 16-lane loops,
/// the 4 × 4 blocks and the 64-row blocks) and every weight dtype.
@Suite("fast kernels equal their reference twins")
struct FastKernelTests {
    @Test("every instruction set this CPU runs (portable C included) equals the reference")
    func everyInstructionSet() {
        for isa in Fast.availableInstructionSets {
            Fast.withInstructionSet(isa) {
                #expect(Fast.instructionSet == isa)
                checkAll()
            }
        }
    }

    func checkAll() {
        linear(m: 5, k: 33, n: 9)
        linear(m: 70, k: 100, n: 7)
        linear(m: 3, k: 64, n: 9)
        linear(m: 9, k: 96, n: 5)
        // Decoding's matrix-vector kernels: rows taken from four quarters, a tail of rows and of k.
        linear(m: 1, k: 100, n: 39)
        linear(m: 2, k: 77, n: 21)
        // Batched decoding: passes of three input rows, of two for the last two or four, the second
        // prefetching the next rows.
        linear(m: 8, k: 100, n: 19)
        linear(m: 7, k: 40, n: 33)
        norms(rows: 5, d: 36, group: 12)
        conv(b: 2, l: 9, c: 70, k: 4)
        // Decoding's conv: one token, state shift and SiLU in one pass, a tail of channels.
        conv(b: 2, l: 1, c: 70, k: 4)
        conv(b: 1, l: 1, c: 21, k: 2)
        silu()
        scan(chunkSize: 4)
    }

    @Test("linear", arguments: [(1, 1, 1), (1, 16, 5), (3, 15, 9), (5, 33, 4), (70, 100, 7), (4, 48, 8), (2, 1536, 13), (1, 32, 3), (1, 768, 70), (1, 1537, 43), (3, 64, 9), (70, 96, 13), (4, 256, 17), (6, 72, 17), (8, 100, 19), (11, 36, 30), (16, 40, 23)])
    func linear(m: Int, k: Int, n: Int) {
        var generator = SeededGenerator(seed: UInt64(m * 10_000 + k * 100 + n))
        let x = randomTensor([m, k], using: &generator)
        let w = randomTensor([n, k], using: &generator)
        let bias = WeightView(randomTensor([n], using: &generator), as: .bfloat16)
        // int8 needs rows of whole 32-element blocks.
        for dtype in DType.allCases where dtype != .int8 || k % WeightView.quantizationBlock == 0 {
            let weight = WeightView(w, as: dtype)
            for threads in [1, 2] {
                let fast = Fast.linear(x, weight: weight, bias: bias, threads: threads)
                let reference = Reference.linear(x, weight: weight, bias: bias)
                let d = difference(fast, reference)
                #expect(d.max <= 1e-4 * Float(k).squareRoot(), "\(m)×\(k)×\(n) \(dtype) threads \(threads): max \(d.max) at \(d.at)")
            }
            #expect(Fast.linear(x, weight: weight, threads: 1).shape == [m, n])
        }
    }

    @Test("RMSNorm and gated RMSNorm", arguments: [(1, 7, 7), (5, 36, 12), (3, 64, 16), (2, 33, 33), (2, 1024, 128)])
    func norms(rows: Int, d: Int, group: Int) {
        var generator = SeededGenerator(seed: UInt64(rows * 100 + d))
        let x = randomTensor([rows, d], in: -3...3, using: &generator)
        let z = randomTensor([rows, d], in: -3...3, using: &generator)
        let w = WeightView(randomTensor([d], in: 0.5...1.5, using: &generator), as: .float16)
        let plain = difference(Fast.rmsNorm(x, weight: w, epsilon: 1e-5, groupSize: group), Reference.rmsNorm(x, weight: w, epsilon: 1e-5, groupSize: group))
        let gated = difference(
            Fast.gatedRMSNorm(x, gate: z, weight: w, epsilon: 1e-6, groupSize: group),
            Reference.gatedRMSNorm(x, gate: z, weight: w, epsilon: 1e-6, groupSize: group))
        #expect(plain.max <= 1e-5, "plain: \(plain.max)")
        #expect(gated.max <= 1e-5, "gated: \(gated.max)")
    }

    @Test("causal conv with SiLU, continuing from a state", arguments: [(1, 1, 3, 4), (2, 1, 70, 4), (1, 1, 150, 4), (2, 9, 70, 4), (1, 2, 5, 3), (2, 17, 130, 2)])
    func conv(b: Int, l: Int, c: Int, k: Int) {
        var generator = SeededGenerator(seed: UInt64(b * 1000 + l * 10 + c))
        let x = randomTensor([b, l, c], using: &generator)
        let weight = WeightView(randomTensor([c, 1, k], using: &generator))
        let bias = WeightView(randomTensor([c], using: &generator))
        let state = randomTensor([b, k - 1, c], using: &generator)
        for threads in [1, 2] {
            let fast = Fast.causalConv1dSiLU(x, weight: weight, bias: bias, state: state, threads: threads)
            let reference = Reference.causalConv1d(x, weight: weight, bias: bias, state: state)
            #expect(difference(fast.output, reference.output.map(Reference.silu)).max <= 1e-5)
            #expect(fast.state == reference.state)
        }
        let noBias = Fast.causalConv1dSiLU(x, weight: weight, bias: nil, state: state)
        #expect(difference(noBias.output, Reference.causalConv1d(x, weight: weight, bias: nil, state: state).output.map(Reference.silu)).max <= 1e-5)
    }

    @Test("silu matches x·sigmoid(x) over a wide range, including the vector exp's clamps")
    func silu() {
        var values: [Float] = stride(from: -120, through: 120, by: 0.37).map { Float($0) } + [0, -0.0, 1e-8, 88.7, -88.7, 200, -200]
        let expected = values.map(Reference.silu)
        values.withUnsafeMutableBufferPointer { Fast.silu($0.baseAddress!, count: $0.count) }
        for (fast, reference) in zip(values, expected) {
            #expect(abs(fast - reference) <= 1e-6 * max(1, abs(reference)), "\(fast) vs \(reference)")
        }
    }

    @Test("chunked SSD and recurrence", arguments: [1, 3, 4, 7, 64])
    func scan(chunkSize: Int) {
        var generator = SeededGenerator(seed: UInt64(chunkSize))
        let inputs = ReferenceKernelTests.scanInputs(batch: 2, length: 11, heads: 6, headDim: 5, groups: 3, stateSize: 17, seed: 29)
        let initial = randomTensor([2, 6, 5, 17], using: &generator)
        let reference = Reference.ssdChunked(inputs, chunkSize: chunkSize, initialState: initial)
        for threads in [1, 2] {
            let fast = Fast.ssdChunked(inputs, chunkSize: chunkSize, initialState: initial, threads: threads)
            let dy = difference(fast.y, reference.y)
            let ds = difference(fast.state, reference.state)
            #expect(dy.max <= 1e-5, "chunk \(chunkSize) y: \(dy.max) at \(dy.at)")
            #expect(ds.max <= 1e-5, "chunk \(chunkSize) state: \(ds.max) at \(ds.at)")
        }
        let step = Fast.ssmRecurrence(inputs, initialState: initial)
        let sequential = Reference.ssmRecurrence(inputs, initialState: initial)
        #expect(difference(step.y, sequential.y).max <= 1e-5)
        #expect(difference(step.state, sequential.state).max <= 1e-5)
    }
}

@Suite("the fused decode step equals its unfused reference twin")
struct FusedMixerStepTests {
    @Test("conv + SiLU, dt, every head's step and the gated norm in one call", arguments: [(6, 5, 7, 3, 4, true), (4, 8, 16, 2, 4, false), (3, 3, 5, 1, 2, true), (4, 3, 36, 2, 4, true), (2, 2, 260, 1, 2, false), (35, 2, 16, 5, 4, true)])
    func mixerStep(heads h: Int, headDim p: Int, stateSize n: Int, groups g: Int, kernel k: Int, bias: Bool) {
        var generator = SeededGenerator(seed: UInt64(h * 1000 + p * 100 + n))
        let e = h * p
        let convDim = e + 2 * g * n
        let width = e + convDim + h
        let projected = randomTensor([width], in: -2...2, using: &generator)  // [z, xBC, dt]
        let convWeight = randomTensor([convDim, k], in: -0.5...0.5, using: &generator)
        let convBias = bias ? randomTensor([convDim], using: &generator) : nil
        let convState = randomTensor([1, k - 1, convDim], using: &generator)
        let ssmState = randomTensor([1, h, p, n], using: &generator)
        let dtBias = (0..<h).map { _ in Float.random(in: -4...4, using: &generator) }
        let A = (0..<h).map { _ in -Float.random(in: 0.5...4, using: &generator) }
        let D = (0..<h).map { _ in Float.random(in: 0.5...1.5, using: &generator) }
        let norm = randomTensor([e], in: 0.5...1.5, using: &generator)
        let limit: ClosedRange<Float> = 0.01...2  // clamps at both ends for some heads

        // The reference twin: the unfused steps.
        let xBCIn = Tensor(shape: [1, 1, convDim], scalars: Array(projected.scalars[e..<(e + convDim)]))
        let conv = Reference.causalConv1d(xBCIn, weight: WeightView(convWeight), bias: convBias.map { WeightView($0) }, state: convState)
        let xBC = conv.output.map(Reference.silu)
        let dt = (0..<h).map { head in min(max(Reference.softplus(projected.scalars[e + convDim + head] + dtBias[head]), limit.lowerBound), limit.upperBound) }
        let inputs = SSMInputs(
            x: Tensor(shape: [1, 1, h, p], scalars: Array(xBC.scalars[0..<e])), dt: Tensor(shape: [1, 1, h], scalars: dt), A: A,
            B: Tensor(shape: [1, 1, g, n], scalars: Array(xBC.scalars[e..<(e + g * n)])),
            C: Tensor(shape: [1, 1, g, n], scalars: Array(xBC.scalars[(e + g * n)...])), D: D)
        let scan = Reference.ssmRecurrence(inputs, initialState: ssmState)
        let normed = Reference.gatedRMSNorm(
            scan.y.reshaped([1, e]), gate: Tensor(shape: [1, e], scalars: Array(projected.scalars[0..<e])),
            weight: WeightView(norm), epsilon: 1e-5, groupSize: e / g)

        let taps = Fast.tapMajor(WeightView(convWeight), channels: convDim, kernel: k)
        /// The fused step on these states (the SSM state in `dtype`); returns its output.
        func fused(conv: inout [Float], ssm: UnsafeMutableRawPointer, dtype: DType, threads: Int) -> [Float] {
            var (scratchX, scratchY, out) = ([Float](repeating: 0, count: convDim), [Float](repeating: 0, count: e), [Float](repeating: 0, count: e))
            conv.withUnsafeMutableBufferPointer { convPointer in
                Fast.mixerStep(
                    projected: projected.scalars, innerSize: e, convDim: convDim, heads: h, headDim: p, stateSize: n, groups: g,
                    convTaps: taps, convBias: convBias?.scalars, kernel: k, convState: convPointer.baseAddress!, dtBias: dtBias,
                    A: A, D: D, dtLimit: limit, ssmState: ssm, ssmDType: dtype, normWeight: norm.scalars, epsilon: 1e-5,
                    normGroup: e / g, xBC: &scratchX, y: &scratchY, out: &out, threads: threads)
            }
            return out
        }
        // One thread, and the heads split over the pool's threads (more than the cores: capped).
        for isa in Fast.availableInstructionSets {
            for threads in [1, 2, h + 1] {
                Fast.withInstructionSet(isa) {
                    var (fusedConv, fusedSSM) = (convState.scalars, ssmState.scalars)
                    let out = fusedSSM.withUnsafeMutableBytes { fused(conv: &fusedConv, ssm: $0.baseAddress!, dtype: .float32, threads: threads) }
                    #expect(difference(Tensor(shape: [1, e], scalars: out), normed).max <= 1e-4, "\(isa) threads \(threads): output")
                    #expect(difference(Tensor(shape: [1, h, p, n], scalars: fusedSSM), scan.state).max <= 1e-5, "\(isa) threads \(threads): SSM state")
                    #expect(difference(Tensor(shape: [1, k - 1, convDim], scalars: fusedConv), conv.state).max == 0, "\(isa) threads \(threads): conv state")
                }
            }
        }

        // The SSM state kept in bf16: widened, stepped in fp32 (y from the fp32 values), rounded
        // once. The reference twin: the same recurrence from the widened state, then rounded.
        let bits = ssmState.scalars.map(HalfConversion.bfloat16(from:))
        let widened = Tensor(shape: [1, h, p, n], scalars: bits.map(HalfConversion.float(fromBFloat16:)))
        let halfScan = Reference.ssmRecurrence(inputs, initialState: widened)
        let halfNormed = Reference.gatedRMSNorm(
            halfScan.y.reshaped([1, e]), gate: Tensor(shape: [1, e], scalars: Array(projected.scalars[0..<e])),
            weight: WeightView(norm), epsilon: 1e-5, groupSize: e / g)
        for isa in Fast.availableInstructionSets {
            for threads in [1, 2] {
                Fast.withInstructionSet(isa) {
                    var (fusedConv, fusedSSM) = (convState.scalars, bits)
                    let out = fusedSSM.withUnsafeMutableBytes { fused(conv: &fusedConv, ssm: $0.baseAddress!, dtype: .bfloat16, threads: threads) }
                    #expect(difference(Tensor(shape: [1, e], scalars: out), halfNormed).max <= 1e-4, "\(isa) threads \(threads): output, bf16 state")
                    // Rounded as the reference's fp32 values round, but for values the two fp32
                    // computations put on either side of a rounding boundary: one bf16 step apart.
                    var apart = 0
                    for (index, value) in halfScan.state.scalars.enumerated() {
                        let stored = HalfConversion.float(fromBFloat16: fusedSSM[index])
                        if stored != HalfConversion.float(fromBFloat16: HalfConversion.bfloat16(from: value)) {
                            apart += 1
                            #expect(abs(stored - value) <= abs(value) * 0x1p-8, "\(isa) threads \(threads): state \(index) \(stored) for \(value)")
                        }
                    }
                    #expect(apart <= fusedSSM.count / 50, "\(isa) threads \(threads): \(apart) of \(fusedSSM.count) state values rounded apart")
                    #expect(fusedSSM != bits, "\(isa): the bf16 state was updated")
                }
            }
        }
    }
}

extension FusedMixerStepTests {
    @Test("a NaN that reaches the step leaves a NaN in the bf16 state, whatever its payload, on every instruction set")
    func nanInBFloat16State() {
        let (h, p, n, g, k) = (4, 3, 36, 2, 4)
        let e = h * p
        let convDim = e + 2 * g * n
        // [z, xBC, dt]: group 0's B is a NaN with every payload bit set. Rounded without care,
        // (bits + 0x7FFF + 1) >> 16 carries out of that NaN's exponent and stores −0.
        var projected = [Float](repeating: 0.5, count: e + convDim + h)
        for j in 0..<n { projected[e + e + j] = Float(bitPattern: 0x7FFF_FFFF) }
        let taps = [Float](repeating: 0, count: (k - 1) * convDim) + [Float](repeating: 1, count: convDim)  // the current input only
        for isa in Fast.availableInstructionSets {
            Fast.withInstructionSet(isa) {
                var convState = [Float](repeating: 0, count: (k - 1) * convDim)
                var state = [UInt16](repeating: HalfConversion.bfloat16(from: 0.25), count: h * p * n)
                var (xBC, y, out) = ([Float](repeating: 0, count: convDim), [Float](repeating: 0, count: e), [Float](repeating: 0, count: e))
                state.withUnsafeMutableBytes { ssm in
                    Fast.mixerStep(
                        projected: projected, innerSize: e, convDim: convDim, heads: h, headDim: p, stateSize: n, groups: g,
                        convTaps: taps, convBias: nil, kernel: k, convState: &convState, dtBias: [Float](repeating: 0, count: h),
                        A: [Float](repeating: -1, count: h), D: [Float](repeating: 1, count: h), dtLimit: 0...100, ssmState: ssm.baseAddress!,
                        ssmDType: .bfloat16, normWeight: [Float](repeating: 1, count: e), epsilon: 1e-5, normGroup: e / g,
                        xBC: &xBC, y: &y, out: &out)
                }
                let perGroup = h / g * p * n
                #expect(state[..<perGroup].allSatisfy { HalfConversion.float(fromBFloat16: $0).isNaN }, "\(isa): group 0's state")
                #expect(state[perGroup...].allSatisfy { HalfConversion.float(fromBFloat16: $0).isFinite }, "\(isa): group 1's state")
            }
        }
    }
}

@Suite("bf16 state conversions")
struct BFloat16ConversionTests {
    @Test("widening and rounding 8 at a time equal HalfConversion on every instruction set: ties to even, subnormals, infinities, NaN")
    func conversions() {
        var generator = SeededGenerator(seed: 16)
        var values: [Float] = [0, -0, 1, -1, .infinity, -.infinity, .nan, -.nan, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
                               .leastNonzeroMagnitude, .leastNormalMagnitude, Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000),
                               Float(bitPattern: 0x3F80_7FFF), Float(bitPattern: 0x7F7F_FFFF), Float(bitPattern: 0x7FC0_0001), Float(bitPattern: 0x7F80_0001)]
        values += (0..<101).map { _ in Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &generator)) }
        let expected = values.map(HalfConversion.bfloat16(from:))
        for isa in Fast.availableInstructionSets {
            Fast.withInstructionSet(isa) {
                var rounded = [UInt16](repeating: 0, count: values.count)
                var widened = [Float](repeating: 0, count: values.count)
                Fast.roundToBFloat16(values, count: values.count, into: &rounded)
                Fast.widenBFloat16(rounded, count: rounded.count, into: &widened)
                #expect(rounded == expected, "\(isa)")
                #expect(zip(widened, expected).allSatisfy { $0.bitPattern == HalfConversion.float(fromBFloat16: $1).bitPattern }, "\(isa)")
            }
        }
    }
}

@Suite("read probes")
struct ReadProbeTests {
    @Test("a read probe over memory owned elsewhere reads whole cache lines of each region, in 4 MB slices")
    func readProbeRegions() {
        let megabyte = 1 << 20
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 10 * megabyte, alignment: 64)
        defer { memory.deallocate() }
        memory.initializeMemory(as: UInt8.self, repeating: 0x3F)
        let base = UnsafeRawPointer(memory.baseAddress!)
        let regions = [
            // Starts 1 byte past a line: 5 MB less the two partial lines, two slices.
            UnsafeRawBufferPointer(start: base + 1, count: 5 * megabyte),
            // Three whole lines and parts of two more.
            UnsafeRawBufferPointer(start: base + 6 * megabyte + 60, count: 200),
            // Within one line: nothing to read.
            UnsafeRawBufferPointer(start: base + 8 * megabyte + 1, count: 62),
            // On a line's start: all of it.
            UnsafeRawBufferPointer(start: base + 9 * megabyte, count: 128),
        ]
        let probe = Fast.ReadProbe(reading: regions)
        #expect(probe.bytes == 5 * megabyte - 64 + 3 * 64 + 128)
        for streams in Fast.ReadProbe.patterns {
            let rate = probe.read(streams: streams, threads: 2)
            #expect(rate > 0 && rate.isFinite, "\(streams) streams: \(rate)")
        }
        let nothing = Fast.ReadProbe(reading: [UnsafeRawBufferPointer(start: nil, count: 0)])
        #expect(nothing.bytes == 0 && nothing.read(streams: 8, threads: 2) == 0)
        #expect(Fast.ReadProbe(bytes: 5 * megabyte).bytes == 4 * megabyte)
    }
}
