import Testing
@testable import Tensors

@Suite("int8 block quantization")
struct QuantizationTests {
    @Test("each block keeps its largest magnitude exactly and rounds the rest to within half a step")
    func roundTrip() {
        var generator = SeededGenerator(seed: 8)
        var tensor = randomTensor([3, 96], in: -2...2, using: &generator)
        // A block of zeros, a block with one spike and a constant block.
        for i in 0..<32 { tensor.scalars[i] = 0 }
        tensor.scalars[40] = 50
        for i in 64..<96 { tensor.scalars[i] = -0.75 }
        let view = WeightView(tensor, as: .int8)
        #expect(view.dtype == .int8 && view.bytes.count == 288 && view.scales?.count == 9 * 4)
        #expect(view.storageBytes == 288 + 36)
        let restored = view.floats()
        for block in 0..<9 {
            let values = tensor.scalars[(block * 32)..<((block + 1) * 32)]
            let largest = values.map(abs).max()!
            let step = largest / 127
            for index in values.indices {
                #expect(abs(restored[index] - tensor.scalars[index]) <= step / 2 * 1.0001, "element \(index)")
            }
            if largest > 0, let at = values.firstIndex(where: { abs($0) == largest }) {
                #expect(abs(restored[at] - tensor.scalars[at]) <= largest * 1e-6)
            }
        }
        #expect(restored[0..<32].allSatisfy { $0 == 0 })
        // A half-precision source quantizes to the same values as its widened floats.
        let fromHalf = WeightView(tensor, as: .bfloat16).quantizedToInt8(threads: 2)
        #expect(fromHalf.floats() == WeightView(WeightView(tensor, as: .bfloat16).tensor(), as: .int8).floats())
    }

    @Test("rows store runs of four blocks interleaved in 4-byte pieces, the last blocks % 4 in order")
    func layout() {
        var generator = SeededGenerator(seed: 10)
        // Rows of 9 blocks: two runs of four, then one block in order.
        let (rows, k) = (2, 288)
        let tensor = randomTensor([rows, k], in: -2...2, using: &generator)
        let view = WeightView(tensor, as: .int8)
        // Value e of a run's block b at byte 16 · (e / 4) + 4 · b + e % 4 of the run.
        #expect(view.int8Offset(0) == 0 && view.int8Offset(3) == 3 && view.int8Offset(4) == 16)
        #expect(view.int8Offset(32 + 5) == 16 + 4 + 1 && view.int8Offset(3 * 32 + 31) == 16 * 7 + 12 + 3)
        #expect(view.int8Offset(128 + 32 + 9) == 128 + 32 + 4 + 1 && view.int8Offset(256 + 7) == 256 + 7)
        #expect(view.int8Offset(k + 32 + 5) == k + 16 + 4 + 1)
        for row in 0..<rows {
            #expect(Set((0..<k).map { view.int8Offset(row * k + $0) }) == Set((row * k)..<((row + 1) * k)))
        }
        // Each stored byte is the value quantized from the element the layout puts there.
        let plain = WeightView(Tensor(shape: [rows * 9, 32], scalars: tensor.scalars), as: .int8)  // rows of one block: in order
        for index in 0..<(rows * k) {
            #expect(view.bytes[view.int8Offset(index)] == plain.bytes[index], "element \(index)")
        }
        #expect(view.floats() == plain.floats())
    }

    @Test("values and scales split and pair again; mismatched scales are refused")
    func pairing() throws {
        var generator = SeededGenerator(seed: 9)
        let view = WeightView(randomTensor([4, 64], using: &generator), as: .int8)
        let values = try #require(view.quantizedValues)
        let scales = try #require(view.scaleView)
        #expect(values.scales == nil && values[0] == Float(Int8(bitPattern: view.bytes[0])))
        #expect(scales.shape == [4, 2] && scales.dtype == .float32)
        let paired = try #require(WeightView.quantized(values: values, scales: scales))
        #expect(paired.floats() == view.floats())
        #expect(WeightView.quantized(values: values, scales: scales.reshaped([8])) == nil)
        #expect(WeightView.quantized(values: values.reshaped([8, 32]), scales: scales) == nil)
        #expect(WeightView.quantized(values: WeightView(randomTensor([4, 64], using: &generator)), scales: scales) == nil)
        #expect(!WeightView(randomTensor([4, 33], using: &generator)).isQuantizable)
    }
}

@Suite("int8 products (W8A8)")
struct QuantizedProductTests {
    @Test("activations round half to even, clamp and ignore nothing, alike on every instruction set")
    func activationRounding() {
        // Block max 127 gives scale 1: x / scale is x itself, so the .5s are exact ties.
        let block: [Float] = [127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.49, -126.5, 126.5] + (0..<22).map { Float($0) - 11 }
        let x = Tensor(shape: [2, 64], scalars: block + block.map { -$0 } + block.reversed() + block)
        let w = Tensor(shape: [3, 64], scalars: (0..<192).map { Float($0 % 7) - 3 })
        let weight = WeightView(w, as: .int8)
        let reference = Reference.linear(x, weight: weight)
        // The integer sums, by hand: round-half-even of each x (|x| ≤ 127), times q_w times the scales.
        func roundedEven(_ v: Float) -> Float { v.rounded(.toNearestOrEven) }
        for row in 0..<2 {
            for j in 0..<3 {
                var expected: Float = 0
                for b in 0..<2 {
                    var sum: Float = 0
                    for c in (b * 32)..<((b + 1) * 32) { sum += roundedEven(x[row, c]) * Float(Int8(bitPattern: weight.bytes[weight.int8Offset(j * 64 + c)])) }
                    expected += sum * weight.scales!.load(fromByteOffset: (j * 2 + b) * 4, as: Float.self)
                }
                #expect(abs(reference[row, j] - expected) <= 1e-4 * abs(expected), "row \(row), column \(j)")
            }
        }
        for isa in Fast.availableInstructionSets {
            Fast.withInstructionSet(isa) {
                for rows in [1, 2] {
                    let part = Tensor(shape: [rows, 64], scalars: Array(x.scalars.prefix(rows * 64)))
                    let d = difference(Fast.linear(part, weight: weight, threads: 1), Reference.linear(part, weight: weight))
                    #expect(d.max <= 1e-5 * 127 * 64, "\(isa), \(rows) rows: \(d.max)")
                }
            }
        }
    }
}

@Suite("int8 products against the reference, every path")
struct QuantizedPathTests {
    /// A matrix quantized by us, then given a stored −128 (which our quantizer never writes but
    /// an int8 file may hold) and tiny, NaN-free activation blocks. 1 to 16 input rows take one
    /// run, more take runs of 16 (17: a run and one row; 40: two runs and eight); in rows of 2,048
    /// values or more each four input rows of a run take the weight rows together, the rest one
    /// by one (4 rows of 2080 values, 17 of 2144, 40 of 2112, 6 of 11008). Rows cover 2, 3, 5, 7,
    /// 65, 66, 67 and 344 blocks (the kernel takes four at a time, then one by one) and rows too
    /// wide for the quantized activations' stack buffer (32800).
    @Test("one to forty rows, wide rows, a −128 weight, tiny blocks and a bias equal the reference on every instruction set",
          arguments: [(1, 64), (3, 96), (4, 64), (9, 160), (16, 96), (17, 64), (40, 160), (1, 160), (2, 224), (4, 2080), (17, 2144), (40, 2112), (3, 11008), (6, 11008), (1, 32800)])
    func paths(rows: Int, k: Int) throws {
        var generator = SeededGenerator(seed: UInt64(rows * 100_000 + k))
        var x = randomTensor([rows, k], in: -3...3, using: &generator)
        for c in 0..<min(32, k) { x.scalars[c] = Float(c) * 1e-41 }  // a block whose scale is below the smallest normal
        // 23 rows: one thread's quarters of 5 rows and 3 after them (one input row on VNNI:
        // eighths of 2 and 7 after), two threads' ranges of 11 and 12.
        let n = 23
        let quantized = WeightView(randomTensor([n, k], using: &generator), as: .int8)
        var bytes = Array(quantized.quantizedValues!.bytes)
        bytes[3] = 0x80  // −128
        bytes[k + 5] = 0x80
        let owner = Storage(bytes: bytes, scales: Array(quantized.scaleView!.bytes))
        let weight = try #require(WeightView.quantized(values: owner.values(shape: [n, k]), scales: owner.scaleView(shape: [n, k / 32])))
        #expect(weight[3] == -128 * weight.scaleView![0])
        // A bias on every other case, so each path adds one.
        let bias = rows % 2 == 0 ? WeightView(randomTensor([n], using: &generator)) : nil
        let reference = Reference.linear(x, weight: weight, bias: bias)
        for isa in Fast.availableInstructionSets {
            Fast.withInstructionSet(isa) {
                for threads in [1, 2] {
                    let fast = Fast.linear(x, weight: weight, bias: bias, threads: threads)
                    let d = difference(fast, reference)
                    let scale = reference.scalars.map(abs).max()!
                    #expect(d.max <= 1e-5 * scale, "\(isa), \(rows)×\(k), threads \(threads): max \(d.max) at \(d.at) of \(scale)")
                }
            }
        }
    }
}

/// Raw int8 values and fp32 scales kept alive for views into them (as a mapped file does).
private final class Storage: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer
    let scales: UnsafeMutableRawBufferPointer

    init(bytes: [UInt8], scales: [UInt8]) {
        self.bytes = .allocate(byteCount: bytes.count, alignment: 64)
        self.bytes.copyBytes(from: bytes)
        self.scales = .allocate(byteCount: scales.count, alignment: 64)
        self.scales.copyBytes(from: scales)
    }

    deinit {
        bytes.deallocate()
        scales.deallocate()
    }

    func values(shape: [Int]) -> WeightView { WeightView(dtype: .int8, shape: shape, bytes: UnsafeRawBufferPointer(bytes), owner: self) }
    func scaleView(shape: [Int]) -> WeightView { WeightView(dtype: .float32, shape: shape, bytes: UnsafeRawBufferPointer(scales), owner: self) }
}
