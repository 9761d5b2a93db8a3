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
