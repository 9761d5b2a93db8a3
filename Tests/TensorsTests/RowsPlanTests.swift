import CKernels
import Dispatch
import Testing
@testable import Tensors

/// The plans that share a matrix-vector product's rows out among threads (`ck_rows_plan_init`):
/// whichever of a plan's threads come, in whatever order, every row is computed, as one thread's
/// call computes it. The participants run here one after another on the test's thread, so a
/// thread that comes after the others have stolen its range, or never comes, is certain.
@Suite("row plans compute every row, whichever threads come")
struct RowsPlanTests {
    /// Participants `order` of a `threads`-thread plan for rows `0..<n` and `m` input rows, one
    /// after another.
    static func run(m: Int, n: Int, k: Int, dtype: Int32, threads: Int, order: [Int32], _ participant: (OpaquePointer, Int32) -> Void) throws {
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: Int(ck_rows_plan_size(Int32(threads))), alignment: 64)
        defer { bytes.deallocate() }
        let plan = OpaquePointer(bytes)
        try #require(ck_rows_plan_init(plan, Int64(m), Int64(n), Int64(k), dtype, Int32(threads)) == 1)
        for thread in order { participant(plan, thread) }
    }

    /// Adds 1 to `counts[row]` for every row of one run (`ck_rows_plan_next`'s base, part, i0, i1).
    static func mark(_ run: [Int64], parts: Int, in counts: UnsafeMutableBufferPointer<Int>) {
        let (base, part, i0, i1) = (Int(run[0]), Int(run[1]), Int(run[2]), Int(run[3]))
        for u in 0..<(part > 0 ? parts : 1) {
            for i in i0..<i1 { counts[base + u * part + i] += 1 }
        }
    }

    @Test("every row is taken exactly once, whatever the order of the threads' claims and whichever never comes",
          arguments: [1, 2, 3, 5, 8])
    func interleavings(threads: Int) throws {
        var generator = SeededGenerator(seed: UInt64(threads))
        for _ in 0..<300 {
            let n = Int.random(in: 0...400, using: &generator)
            // From runs of hundreds of steps down to one step a claim (rows of 20,000 values).
            let k = [32, 256, 4096, 20_000].randomElement(using: &generator)!
            let dtype = [CK_F32, CK_BF16, CK_Q8].randomElement(using: &generator)!
            let absent = Int.random(in: -1..<threads, using: &generator)  // −1: all come
            let bytes = UnsafeMutableRawPointer.allocate(byteCount: Int(ck_rows_plan_size(Int32(threads))), alignment: 64)
            defer { bytes.deallocate() }
            let plan = OpaquePointer(bytes)
            try #require(ck_rows_plan_init(plan, 1, Int64(n), Int64(k), Int32(dtype), Int32(threads)) == 1)
            let parts = Int(ck_rows_plan_parts(plan))
            let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(n, 1))
            defer { counts.deallocate() }
            counts.initialize(repeating: 0)
            var phases = [Int32](repeating: 0, count: threads)
            var coming = (0..<threads).filter { $0 != absent || threads == 1 }
            var run = [Int64](repeating: 0, count: 4)
            while let thread = coming.randomElement(using: &generator) {
                if ck_rows_plan_next(plan, Int32(thread), &phases[thread], &run) == 0 {
                    coming.removeAll { $0 == thread }
                } else {
                    Self.mark(run, parts: parts, in: counts)
                }
            }
            #expect(Array(counts.prefix(n)) == Array(repeating: 1, count: n), "n \(n), k \(k), dtype \(dtype), \(threads) threads, absent \(absent)")
        }
    }

    @Test("threads running at once on the pool take every row exactly once")
    func concurrent() {
        for n in [7, 64, 203, 1000] {
            for k in [64, 20_000] {
                let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: n)
                defer { counts.deallocate() }
                counts.initialize(repeating: 0)
                Fast.parallelRows(m: 1, n: n, k: k, dtype: Int32(CK_F32), threads: 2) { plan, thread in
                    let parts = Int(ck_rows_plan_parts(plan))
                    var phase: Int32 = 0
                    var run = [Int64](repeating: 0, count: 4)
                    while ck_rows_plan_next(plan, thread, &phase, &run) != 0 {
                        // A few microseconds a run, so the threads overlap and steal from each other.
                        let start = DispatchTime.now().uptimeNanoseconds
                        while DispatchTime.now().uptimeNanoseconds - start < 3_000 {}
                        Self.mark(run, parts: parts, in: counts)
                    }
                }
                #expect(Array(counts) == Array(repeating: 1, count: n), "n \(n), k \(k)")
            }
        }
    }

    @Test("plans read eight streams where the kernels do (one input row: floats on AVX-512, int8 with VNNI), else four (one portable)")
    func parts() throws {
        for isa in Fast.availableInstructionSets {
            try Fast.withInstructionSet(isa) {
                for (m, dtype) in [(1, CK_F32), (1, CK_BF16), (1, CK_F16), (1, CK_Q8), (4, CK_F32), (4, CK_Q8), (16, CK_Q8)] {
                    let eighths: Fast.InstructionSet = dtype == CK_Q8 ? .avx512VNNI : .avx512
                    let expected = m == 1 && isa.rawValue >= eighths.rawValue ? 8 : isa == .portable ? 1 : 4
                    let bytes = UnsafeMutableRawPointer.allocate(byteCount: Int(ck_rows_plan_size(2)), alignment: 64)
                    defer { bytes.deallocate() }
                    let plan = OpaquePointer(bytes)
                    try #require(ck_rows_plan_init(plan, Int64(m), 64, 256, Int32(dtype), 2) == 1)
                    #expect(Int(ck_rows_plan_parts(plan)) == expected, "\(isa), \(m) input rows, dtype \(dtype)")
                }
            }
        }
    }

    /// One thread of three (it takes the others' ranges and last rows), all three in turn (the
    /// later ones find nothing left), two in reverse, one of more threads than rows.
    static let schedules: [(threads: Int, order: [Int32])] = [(3, [1]), (3, [0, 2, 1]), (2, [1, 0]), (8, [7, 0])]

    @Test("float weights, one input row (the same bits as one call) and batches, on every instruction set",
          arguments: [(39, 1, 100), (64, 1, 96), (5, 1, 40), (1, 1, 33), (203, 1, 260), (0, 1, 16), (203, 5, 72), (70, 2, 40), (39, 16, 64),
                      (203, 1, 4096), (203, 3, 4100)])
    func floats(n: Int, m: Int, k: Int) throws {
        var generator = SeededGenerator(seed: UInt64(n * 1000 + m * 100 + k))
        let x = randomTensor([m, k], using: &generator)
        let w = randomTensor([n, k], using: &generator)
        let bias = randomTensor([n], using: &generator)
        for isa in Fast.availableInstructionSets {
            try Fast.withInstructionSet(isa) {
                for dtype in [DType.float32, .bfloat16, .float16] {
                    let weight = WeightView(w, as: dtype)
                    let reference = Reference.linear(x, weight: weight, bias: WeightView(bias))
                    // One input row: every row alone goes through the parts' sums, so any plan
                    // gives the bits of one call over all the rows.
                    var whole = [Float](repeating: .nan, count: m * n)
                    ck_linear(x.scalars, Int64(m), Int64(k), weight.bytes.baseAddress, Fast.code(dtype), bias.scalars, &whole, Int64(n), 0, Int64(n))
                    for (threads, order) in Self.schedules {
                        var y = [Float](repeating: .nan, count: m * n)
                        try Self.run(m: m, n: n, k: k, dtype: Fast.code(dtype), threads: threads, order: order) { plan, thread in
                            ck_gemv_rows(x.scalars, Int64(m), Int64(k), weight.bytes.baseAddress, Fast.code(dtype), bias.scalars, &y, Int64(n), plan, thread)
                        }
                        let d = difference(Tensor(shape: [m, n], scalars: y), reference)
                        #expect(d.max <= 1e-4 * Float(k).squareRoot(), "\(isa) \(dtype) \(m) × \(n)×\(k), \(threads) threads \(order): max \(d.max) at \(d.at)")
                        if m == 1 {
                            #expect(y.map(\.bitPattern) == whole.map(\.bitPattern), "\(isa) \(dtype) \(n)×\(k), \(threads) threads \(order): bits")
                        }
                    }
                }
            }
        }
    }

    @Test("int8 weights, one to twenty input rows, on every instruction set: the same bits as one thread's call",
          arguments: [(39, 1, 96), (64, 3, 64), (5, 1, 32), (203, 17, 160), (203, 1, 4096), (203, 1, 4192), (203, 20, 8192)])
    func int8(n: Int, m: Int, k: Int) throws {
        var generator = SeededGenerator(seed: UInt64(n * 1000 + m * 100 + k))
        let x = WeightView(randomTensor([m, k], in: -3...3, using: &generator), as: .int8)
        let weight = WeightView(randomTensor([n, k], using: &generator), as: .int8)
        let xq = try #require(x.quantizedValues).bytes.baseAddress!.assumingMemoryBound(to: Int8.self)
        let xs = try #require(x.scaleView).bytes.baseAddress!.assumingMemoryBound(to: Float.self)
        let q = try #require(weight.quantizedValues).bytes.baseAddress!.assumingMemoryBound(to: Int8.self)
        let scales = try #require(weight.scaleView).bytes.baseAddress!.assumingMemoryBound(to: Float.self)
        for isa in Fast.availableInstructionSets {
            try Fast.withInstructionSet(isa) {
                var whole = [Float](repeating: .nan, count: m * n)
                ck_gemv_q8(xq, xs, Int64(m), Int64(k), q, scales, nil, &whole, Int64(n), 0, Int64(n))
                #expect(!whole.contains { $0.isNaN })
                for (threads, order) in Self.schedules {
                    var y = [Float](repeating: .nan, count: m * n)
                    try Self.run(m: m, n: n, k: k, dtype: Int32(CK_Q8), threads: threads, order: order) { plan, thread in
                        ck_gemv_q8_rows(xq, xs, Int64(m), Int64(k), q, scales, nil, &y, Int64(n), plan, thread)
                    }
                    #expect(y.map(\.bitPattern) == whole.map(\.bitPattern), "\(isa) \(n)×\(k), \(m) rows, \(threads) threads \(order)")
                }
            }
        }
    }
}
