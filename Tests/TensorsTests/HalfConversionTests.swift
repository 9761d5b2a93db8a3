import Testing
@testable import Tensors

@Suite("Half conversions")
struct HalfConversionTests {
    @Test("fp16 known values decode exactly")
    func float16Decoding() {
        let cases: [(UInt16, Float)] = [
            (0x3C00, 1), (0xC000, -2), (0x7BFF, 65504), (0x0001, 0x1p-24), (0x03FF, 0x3FFp-24),
            (0x0400, 0x1p-14), (0x7C00, .infinity), (0xFC00, -.infinity), (0x3555, 0.333251953125), (0x8000, -0.0),
        ]
        for (bits, value) in cases {
            #expect(HalfConversion.float(fromFloat16: bits) == value, "0x\(String(bits, radix: 16))")
            #expect(HalfConversion.float16(from: value) == bits, "\(value)")
        }
        #expect(HalfConversion.float(fromFloat16: 0x7E00).isNaN)
    }

    @Test("fp16 rounds to nearest even and overflows to infinity")
    func float16Rounding() {
        // 1 + 2⁻¹¹ lies halfway between 1 and 1 + 2⁻¹⁰: ties go to the even mantissa (1).
        #expect(HalfConversion.float16(from: 1 + 0x1p-11) == 0x3C00)
        #expect(HalfConversion.float16(from: 1 + 0x1p-11 + 0x1p-20) == 0x3C01)
        #expect(HalfConversion.float16(from: 1 + 3 * 0x1p-11) == 0x3C02)
        #expect(HalfConversion.float16(from: 70000) == 0x7C00)
        #expect(HalfConversion.float16(from: 0x1p-25) == 0)
        #expect(HalfConversion.float16(from: 0x1.8p-24) == 0x0002)
    }

    @Test("bf16 widening is exact and narrowing rounds to nearest even")
    func bfloat16() {
        #expect(HalfConversion.float(fromBFloat16: 0x3F80) == 1)
        #expect(HalfConversion.bfloat16(from: 1) == 0x3F80)
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties to even.
        #expect(HalfConversion.bfloat16(from: 1 + 0x1p-8) == 0x3F80)
        #expect(HalfConversion.bfloat16(from: 1 + 3 * 0x1p-8) == 0x3F82)
        #expect(HalfConversion.bfloat16(from: -.infinity) == 0xFF80)
        #expect(HalfConversion.float(fromBFloat16: HalfConversion.bfloat16(from: .nan)).isNaN)
        for value: Float in [0.1, -3.75, 1e-30, 123456.7] {
            let widened = HalfConversion.float(fromBFloat16: HalfConversion.bfloat16(from: value))
            #expect(abs(widened - value) <= abs(value) * 0x1p-8)
        }
    }

    @Test("a weight view stores and widens every dtype")
    func weightViewRoundTrip() {
        let tensor = Tensor(shape: [2, 3], scalars: [1, -2, 0.5, 0.25, 3, -0.125])
        for dtype in [DType.float32, .bfloat16, .float16] {
            let view = WeightView(tensor, as: dtype)
            #expect(view.shape == [2, 3])
            #expect(view.bytes.count == 6 * dtype.size)
            #expect(view.floats() == tensor.scalars)
        }
    }
}
