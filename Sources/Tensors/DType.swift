/// The element types a weight may be stored in. Half types stay half in memory and are widened to
/// fp32 when read. `int8` holds quantized weights: with block scales (see `WeightView`) each
/// element is `q · scale` of its block; without, the plain integers of an `I8` tensor.
public enum DType: String, Sendable, CaseIterable, Codable {
    case float32 = "F32"
    case bfloat16 = "BF16"
    case float16 = "F16"
    case int8 = "I8"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float32: 4
        case .bfloat16, .float16: 2
        case .int8: 1
        }
    }
}

/// Conversions between fp32 and the half formats, bit-exact and portable (no `Float16` type needed).
public enum HalfConversion {
    /// bfloat16 is the top half of an fp32: widening is exact.
    @inlinable
    public static func float(fromBFloat16 bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Round to nearest even, as torch's `.to(torch.bfloat16)`; NaN stays a quiet NaN.
    @inlinable
    public static func bfloat16(from value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x0040) }
        let rounding = UInt32(0x7FFF) + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    /// IEEE 754 binary16 to fp32 (exact, including subnormals, infinities and NaN).
    @inlinable
    public static func float(fromFloat16 bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = Int(bits >> 10) & 0x1F
        let mantissa = UInt32(bits & 0x03FF)
        if exponent == 0x1F {
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        if exponent == 0 {
            // Subnormal (or zero): mantissa · 2⁻²⁴.
            let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
            return sign == 0 ? magnitude : -magnitude
        }
        return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
    }

    /// fp32 to IEEE 754 binary16, round to nearest even; overflow gives infinity.
    @inlinable
    public static func float16(from value: Float) -> UInt16 {
        let bits = value.bitPattern
        let sign = UInt16(truncatingIfNeeded: (bits >> 16) & 0x8000)
        if value.isNaN { return sign | 0x7E00 }
        let magnitude = abs(value)
        if magnitude >= 65520 { return sign | 0x7C00 }
        if magnitude < Float(sign: .plus, exponent: -14, significand: 1) {
            // Subnormal range: scale to units of 2⁻²⁴ and round to nearest even.
            let units = (magnitude * Float(sign: .plus, exponent: 24, significand: 1)).rounded(.toNearestOrEven)
            return sign | UInt16(units)
        }
        let exponent = Int((bits >> 23) & 0xFF) - 127 + 15
        var mantissa = bits & 0x007F_FFFF
        var half = UInt32(exponent) << 10 | (mantissa >> 13)
        mantissa &= 0x1FFF
        if mantissa > 0x1000 || (mantissa == 0x1000 && (half & 1) == 1) { half += 1 }
        return sign | UInt16(half)
    }
}
