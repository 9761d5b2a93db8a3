/// A read-only, zero-copy view of a stored tensor (fp32, bf16 or fp16), such as a weight inside a
/// memory-mapped safetensors file. Elements are widened to fp32 as they are read.
///
/// `owner` keeps the memory alive (a mapped file, or a boxed array) for as long as any view exists.
public struct WeightView: @unchecked Sendable {
    public let dtype: DType
    public let shape: [Int]
    public let bytes: UnsafeRawBufferPointer
    private let owner: AnyObject

    /// Wraps memory that `owner` keeps alive. `bytes.count` must equal `shape.product × dtype.size`;
    /// callers validate this once at the boundary (e.g. the safetensors header check).
    public init(dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer, owner: AnyObject) {
        precondition(bytes.count == shape.reduce(1, *) * dtype.size, "view of \(bytes.count) bytes for \(shape) \(dtype)")
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
        self.owner = owner
    }

    /// Stores `tensor` in `dtype` (rounding to nearest even for the half types) in owned memory.
    public init(_ tensor: Tensor, as dtype: DType = .float32) {
        let storage = OwnedBytes(count: tensor.count * dtype.size)
        let raw = UnsafeMutableRawBufferPointer(start: storage.pointer, count: tensor.count * dtype.size)
        for (index, value) in tensor.scalars.enumerated() {
            switch dtype {
            case .float32:
                raw.storeBytes(of: value, toByteOffset: index * 4, as: Float.self)
            case .bfloat16:
                raw.storeBytes(of: HalfConversion.bfloat16(from: value), toByteOffset: index * 2, as: UInt16.self)
            case .float16:
                raw.storeBytes(of: HalfConversion.float16(from: value), toByteOffset: index * 2, as: UInt16.self)
            }
        }
        self.init(dtype: dtype, shape: tensor.shape, bytes: UnsafeRawBufferPointer(raw), owner: storage)
    }

    public var count: Int { shape.reduce(1, *) }

    /// Element `index` of the flattened view, widened to fp32.
    @inlinable
    public subscript(index: Int) -> Float {
        switch dtype {
        case .float32:
            return bytes.loadUnaligned(fromByteOffset: index * 4, as: Float.self)
        case .bfloat16:
            return HalfConversion.float(fromBFloat16: bytes.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self))
        case .float16:
            return HalfConversion.float(fromFloat16: bytes.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self))
        }
    }

    /// Widens elements `[start, start + destination.count)` into `destination`.
    @inlinable
    public func widen(from start: Int, into destination: UnsafeMutableBufferPointer<Float>) {
        for offset in 0..<destination.count {
            destination[offset] = self[start + offset]
        }
    }

    /// Every element widened to fp32.
    public func floats() -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            widen(from: 0, into: buffer)
            initialized = count
        }
    }

    /// An owned fp32 copy.
    public func tensor() -> Tensor {
        Tensor(shape: shape, scalars: floats())
    }

    /// The same bytes under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> WeightView {
        WeightView(dtype: dtype, shape: newShape, bytes: bytes, owner: owner)
    }
}

/// Heap memory owned by a class, so views into it can share it.
final class OwnedBytes {
    let pointer: UnsafeMutableRawPointer

    init(count: Int) {
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
    }

    deinit { pointer.deallocate() }
}

extension WeightView {
    /// A tensor of uniform random values in `range`, stored directly in `dtype` (no fp32 copy, so
    /// billions of parameters fit): for benchmarks and tests of shape, not of numerics. The
    /// values depend only on `seed`.
    public static func random(shape: [Int], dtype: DType, in range: ClosedRange<Float>, seed: UInt64) -> WeightView {
        let count = shape.reduce(1, *)
        let storage = OwnedBytes(count: count * dtype.size)
        let raw = UnsafeMutableRawBufferPointer(start: storage.pointer, count: count * dtype.size)
        fillRandom(raw, dtype: dtype, in: range, seed: seed, firstElement: 0)
        return WeightView(dtype: dtype, shape: shape, bytes: UnsafeRawBufferPointer(raw), owner: storage)
    }

    /// Fills `buffer` with elements `firstElement…` of the random tensor `random(…, seed:)`
    /// describes: element i is a hash of (seed, i), so any piece can be made on its own (a file
    /// larger than memory is written piece by piece) and threads do not change the values.
    public static func fillRandom(_ buffer: UnsafeMutableRawBufferPointer, dtype: DType, in range: ClosedRange<Float>, seed: UInt64, firstElement: Int) {
        let count = buffer.count / dtype.size
        let (low, span) = (range.lowerBound, range.upperBound - range.lowerBound)
        let raw = UncheckedSendable(buffer)
        Fast.parallelFor((count + 65_535) / 65_536, threads: Fast.defaultThreads) { blocks in
            for block in blocks {
                for index in (block * 65_536)..<min(count, (block + 1) * 65_536) {
                    var z = seed &+ UInt64(firstElement + index) &* 0x9E37_79B9_7F4A_7C15
                    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                    let value = low + span * Float((z ^ (z >> 31)) >> 40) * 0x1p-24
                    switch dtype {
                    case .float32: raw.value.storeBytes(of: value, toByteOffset: index * 4, as: Float.self)
                    case .bfloat16: raw.value.storeBytes(of: HalfConversion.bfloat16(from: value), toByteOffset: index * 2, as: UInt16.self)
                    case .float16: raw.value.storeBytes(of: HalfConversion.float16(from: value), toByteOffset: index * 2, as: UInt16.self)
                    }
                }
            }
        }
    }
}
