import CKernels

/// A read-only, zero-copy view of a stored tensor (fp32, bf16 or fp16), such as a weight inside a
/// memory-mapped (or read-in) safetensors file. Elements are widened to fp32 as they are read.
///
/// `owner` keeps the memory alive (a file, mapped or read in, or a boxed array) for as long as any
/// view exists.
public struct WeightView: @unchecked Sendable {
    public let dtype: DType
    public let shape: [Int]
    public let bytes: UnsafeRawBufferPointer
    /// For quantized int8 weights: one fp32 scale per `quantizationBlock` consecutive elements
    /// (blocks never cross a row, since rows hold whole blocks): element i is
    /// `Float(q[i]) · scales[i / quantizationBlock]`, with q in the stored order of
    /// `int8Layout` (`bytes` holds element i at `int8Offset(i)`).
    public let scales: UnsafeRawBufferPointer?
    private let owner: AnyObject

    /// Elements per int8 scale (as llama.cpp's Q8_0).
    public static let quantizationBlock = 32

    /// How quantized rows order their bytes: each run of four whole blocks interleaved in 4-byte
    /// pieces, the last `blocks % 4` blocks of a row in order (`ck_q8_offset` in CKernels, where
    /// the decode kernel's reason is). int8 folders name it in `quantization_config.layout`.
    public static let int8Layout = "blocks-of-4-interleaved-by-4-bytes"

    /// The byte of element `index` of a quantized weight.
    @inlinable
    public func int8Offset(_ index: Int) -> Int {
        let width = shape.last ?? 1
        return index - index % width + Int(ck_q8_offset(Int64(index % width), Int64(width)))
    }

    /// Wraps memory that `owner` keeps alive. `bytes.count` must equal `shape.product × dtype.size`;
    /// callers validate this once at the boundary (e.g. the safetensors header check).
    public init(dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer, owner: AnyObject) {
        precondition(bytes.count == shape.reduce(1, *) * dtype.size, "view of \(bytes.count) bytes for \(shape) \(dtype)")
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
        self.scales = nil
        self.owner = owner
    }

    /// Quantized int8 weights: `quantized` holds one byte per element, each row in the stored
    /// order `int8Layout` names (not plain row-major Q8_0), `scales` one fp32 per block of
    /// `quantizationBlock` elements; the last dimension must hold whole blocks. `owner` keeps
    /// both alive.
    public init(quantized: UnsafeRawBufferPointer, scales: UnsafeRawBufferPointer, shape: [Int], owner: AnyObject) {
        let count = shape.reduce(1, *)
        precondition((shape.last ?? 0) % Self.quantizationBlock == 0, "int8 rows of \(shape.last ?? 0) elements do not hold whole blocks")
        precondition(quantized.count == count && scales.count == count / Self.quantizationBlock * 4, "int8 view of \(quantized.count) + \(scales.count) bytes for \(shape)")
        self.dtype = .int8
        self.shape = shape
        self.bytes = quantized
        self.scales = scales
        self.owner = owner
    }

    /// Bytes a full read of this weight touches (values and scales).
    public var storageBytes: Int { bytes.count + (scales?.count ?? 0) }

    /// The memory a full read touches, in order: the values, then an int8 weight's scales.
    public var storageRegions: [UnsafeRawBufferPointer] { [bytes] + (scales.map { [$0] } ?? []) }

    /// Whether this weight can be stored as block-quantized int8: a matrix whose rows hold whole
    /// blocks.
    public var isQuantizable: Bool { shape.count == 2 && shape[1] % Self.quantizationBlock == 0 && shape[1] > 0 }

    /// Stores `tensor` in `dtype` (rounding to nearest even for the half types; for int8,
    /// block-quantized, which needs rows of whole blocks) in owned memory.
    public init(_ tensor: Tensor, as dtype: DType = .float32) {
        if dtype == .int8 {
            self = Self.quantizing(tensor.scalars, shape: tensor.shape)
            return
        }
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
            case .int8:
                break
            }
        }
        self.init(dtype: dtype, shape: tensor.shape, bytes: UnsafeRawBufferPointer(raw), owner: storage)
    }

    /// This weight block-quantized to int8: per block of 32, scale = max |w| / 127 and
    /// q = round(w / scale) (llama.cpp's Q8_0, with an fp32 scale). Rows are quantized in
    /// parallel, one row widened at a time, so a 7B model never needs an fp32 copy.
    public func quantizedToInt8(threads: Int = Fast.defaultThreads) -> WeightView {
        precondition(isQuantizable, "int8 needs a matrix whose rows hold whole blocks of \(Self.quantizationBlock), got \(shape)")
        if dtype == .int8 && scales != nil { return self }
        let (rows, width) = (shape[0], shape[1])
        let storage = QuantizedStorage(count: count, rowLength: width)
        let source = self
        Fast.parallelFor(rows, threads: threads) { range in
            var row = [Float](repeating: 0, count: width)
            for r in range {
                row.withUnsafeMutableBufferPointer { source.widen(from: r * width, into: $0) }
                row.withUnsafeBufferPointer { storage.quantize($0, at: r * width) }
            }
        }
        return storage.view(shape: shape)
    }

    static func quantizing(_ values: [Float], shape: [Int]) -> WeightView {
        let storage = QuantizedStorage(count: values.count, rowLength: shape.last ?? 0)
        values.withUnsafeBufferPointer { storage.quantize($0, at: 0) }
        return storage.view(shape: shape)
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
        case .int8:
            guard let scales else { return Float(Int8(bitPattern: bytes.load(fromByteOffset: index, as: UInt8.self))) }
            let q = Float(Int8(bitPattern: bytes.load(fromByteOffset: int8Offset(index), as: UInt8.self)))
            return q * scales.loadUnaligned(fromByteOffset: index / Self.quantizationBlock * 4, as: Float.self)
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

    /// The same bytes under another shape with the same element count (a quantized weight keeps
    /// its row length, unless neither length holds a run of four blocks: the stored order
    /// depends on it).
    public func reshaped(_ newShape: [Int]) -> WeightView {
        if let scales {
            let (old, new) = (shape.last ?? 0, newShape.last ?? 0)
            precondition(old == new || max(old, new) < 4 * Self.quantizationBlock, "a quantized \(shape) cannot become \(newShape)")
            return WeightView(quantized: bytes, scales: scales, shape: newShape, owner: owner)
        }
        return WeightView(dtype: dtype, shape: newShape, bytes: bytes, owner: owner)
    }

    /// The block scales of a quantized weight as an fp32 view `[rows, row / 32]` (what a
    /// checkpoint stores as `….weight_scale`).
    public var scaleView: WeightView? {
        guard let scales, let width = shape.last else { return nil }
        let leading = Array(shape.dropLast())
        return WeightView(dtype: .float32, shape: leading + [width / Self.quantizationBlock], bytes: scales, owner: owner)
    }

    /// The int8 values of a quantized weight without their scales, in stored order (what a
    /// checkpoint stores under the weight's own name).
    public var quantizedValues: WeightView? {
        guard scales != nil else { return nil }
        return WeightView(dtype: .int8, shape: shape, bytes: bytes, owner: owner)
    }

    /// Pairs an `I8` tensor, its rows in the stored order `int8Layout` names, with its fp32 block
    /// scales `[rows, row / 32]` (both views must keep their memory alive, as views of one mapped
    /// file do).
    public static func quantized(values: WeightView, scales: WeightView) -> WeightView? {
        guard values.dtype == .int8, values.scales == nil, scales.dtype == .float32, values.isQuantizable,
              scales.shape == [values.shape[0], values.shape[1] / quantizationBlock] else { return nil }
        return WeightView(quantized: values.bytes, scales: scales.bytes, shape: values.shape, owner: Owners(values.owner, scales.owner))
    }
}

extension WeightView {
    /// One block quantized: scale = max |v| / 127 (a scale below the smallest normal float
    /// counts as 0, so its inverse stays finite), q = round-to-nearest-even(v · (1 / scale))
    /// within ±127; `store(offset, q)` receives each value. The C kernels quantize activations
    /// with the same operations, so both sides round alike.
    static func quantizeBlock<Values: Collection<Float>>(_ values: Values, store: (Int, Int8) -> Void) -> Float {
        var largest: Float = 0
        for value in values { largest = max(largest, abs(value)) }
        let scale = largest / 127
        let inverse = scale >= .leastNormalMagnitude ? 1 / scale : 0
        for (offset, value) in values.enumerated() {
            store(offset, Int8(max(-127, min(127, (value * inverse).rounded(.toNearestOrEven)))))
        }
        return scale
    }
}

/// Keeps two owners alive (int8 values and scales that live in different places).
private final class Owners {
    let first: AnyObject
    let second: AnyObject

    init(_ first: AnyObject, _ second: AnyObject) {
        self.first = first
        self.second = second
    }
}

/// Owned memory for a quantized weight: the int8 values (rows in stored order), then the fp32
/// scales.
final class QuantizedStorage: @unchecked Sendable {
    let storage: OwnedBytes
    let count: Int
    let rowLength: Int

    init(count: Int, rowLength: Int) {
        self.count = count
        self.rowLength = rowLength
        storage = OwnedBytes(count: count + count / WeightView.quantizationBlock * 4)
    }

    /// Quantizes `values` (whole rows) into elements `start…`.
    func quantize(_ values: UnsafeBufferPointer<Float>, at start: Int) {
        let block = WeightView.quantizationBlock
        let q = storage.pointer.assumingMemoryBound(to: Int8.self)
        let scales = (storage.pointer + count).assumingMemoryBound(to: Float.self)
        for first in stride(from: 0, to: values.count, by: block) {
            scales[(start + first) / block] = WeightView.quantizeBlock(values[first..<(first + block)]) { q[start + first + $0] = $1 }
        }
        if rowLength > 0 { ck_q8_interleave_rows(q + start, Int64(values.count / rowLength), Int64(rowLength)) }
    }

    func view(shape: [Int]) -> WeightView {
        WeightView(
            quantized: UnsafeRawBufferPointer(start: storage.pointer, count: count),
            scales: UnsafeRawBufferPointer(start: storage.pointer + count, count: count / WeightView.quantizationBlock * 4),
            shape: shape, owner: storage)
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
        if dtype == .int8 { return random(shape: shape, dtype: .float32, in: range, seed: seed).quantizedToInt8() }
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
                    case .int8: raw.value.storeBytes(of: Int8(max(-127, min(127, value.rounded()))), toByteOffset: index, as: Int8.self)
                    }
                }
            }
        }
    }
}
