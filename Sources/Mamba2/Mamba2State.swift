import Tensors

/// The recurrent state of a batch of sequences (transformers' cache): per layer, the last
/// `k − 1` convolution inputs (fp32) and the SSM state (fp32 by default, or bf16). Its size is
/// fixed, whatever the number of tokens seen.
public struct Mamba2State: Sendable, Equatable {
    public struct Layer: Sendable, Equatable {
        /// `[b, k − 1, conv_dim]` the most recent conv inputs `[x, B, C]`, oldest first.
        public var conv: Tensor
        /// The SSM state `[b, h, p, n]` as stored.
        public var ssmStorage: SSMStateStorage

        /// The SSM state `[b, h, p, n]` in fp32 (widened when stored in bf16; a new value is
        /// rounded to the storage dtype).
        public var ssm: Tensor {
            get { ssmStorage.tensor }
            set { ssmStorage = SSMStateStorage(newValue, dtype: ssmStorage.dtype) }
        }

        /// - ssmDType: `.float32` or `.bfloat16` (`ssm` is rounded to it).
        public init(conv: Tensor, ssm: Tensor, ssmDType: DType = .float32) {
            self.conv = conv
            self.ssmStorage = SSMStateStorage(ssm, dtype: ssmDType)
        }

        public init(conv: Tensor, ssmStorage: SSMStateStorage) {
            self.conv = conv
            self.ssmStorage = ssmStorage
        }
    }

    public var layers: [Layer]

    /// The state before any token: zeros, so a prompt shorter than `k − 1` sees zero left padding.
    /// - ssmDType: how the SSM state is stored: `.float32` (the default, exact), or `.bfloat16`,
    ///   as transformers' `Mamba2Cache` and mamba_ssm keep it for a bf16 model: half the bytes
    ///   to keep and to move every step, each step computed in fp32 and rounded once.
    public init(config: Mamba2Config, batchSize: Int, ssmDType: DType = .float32) {
        let layer = Layer(
            conv: Tensor(zeros: [batchSize, config.convKernel - 1, config.convDim]),
            ssm: Tensor(zeros: [batchSize, config.numHeads, config.headDim, config.stateSize]), ssmDType: ssmDType)
        layers = Array(repeating: layer, count: config.numHiddenLayers)
    }

    public init(layers: [Layer]) {
        self.layers = layers
    }

    public var batchSize: Int { layers.first?.ssmStorage.shape[0] ?? 0 }

    /// How the SSM state is stored (fp32 for a state without layers).
    public var ssmDType: DType { layers.first?.ssmStorage.dtype ?? .float32 }

    /// Adds the sequences of `other` (a state of the same model, its SSM state in the same
    /// dtype: a state read from a file keeps the file's) after this state's.
    public mutating func append(_ other: Mamba2State) {
        precondition(other.layers.count == layers.count, "append a state of \(other.layers.count) layers to \(layers.count)")
        for index in layers.indices {
            layers[index].conv.append(outer: other.layers[index].conv)
            layers[index].ssmStorage.append(outer: other.layers[index].ssmStorage)
        }
    }

    /// Drops sequence `row`; later rows move up by one.
    public mutating func removeSequence(at row: Int) {
        for index in layers.indices {
            layers[index].conv.remove(outer: row)
            layers[index].ssmStorage.remove(outer: row)
        }
    }

    /// Throws unless `dtype` is one an SSM state can be kept in (F32 or BF16).
    public static func checkSSMDType(_ dtype: DType) throws {
        guard dtype == .float32 || dtype == .bfloat16 else {
            throw Mamba2Error.invalidInput("an SSM state is kept in F32 or BF16, not \(dtype.rawValue)")
        }
    }

    /// Bytes held: every layer's conv and SSM state.
    public var byteCount: Int { layers.reduce(0) { $0 + 4 * $1.conv.count + $1.ssmStorage.byteCount } }

    /// Bytes a state of `batchSize` sequences of this model holds, the SSM part in `ssmDType`.
    public static func byteCount(config: Mamba2Config, batchSize: Int, ssmDType: DType) -> Int {
        let perLayer = 4 * (config.convKernel - 1) * config.convDim + ssmDType.size * config.numHeads * config.headDim * config.stateSize
        return batchSize * config.numHiddenLayers * perLayer
    }

    /// Throws unless this state has the shapes `config` gives for `batchSize` sequences.
    public func validate(for config: Mamba2Config, batchSize: Int) throws {
        guard layers.count == config.numHiddenLayers else {
            throw Mamba2Error.stateMismatch("\(layers.count) layers, the model has \(config.numHiddenLayers)")
        }
        guard self.batchSize == batchSize else {
            throw Mamba2Error.stateMismatch("the state holds \(self.batchSize) sequences, the input \(batchSize)")
        }
        for (index, layer) in layers.enumerated() {
            let conv = [batchSize, config.convKernel - 1, config.convDim]
            let ssm = [batchSize, config.numHeads, config.headDim, config.stateSize]
            guard layer.conv.shape == conv, layer.conv.count == conv.reduce(1, *) else {
                throw Mamba2Error.stateMismatch("layer \(index) conv state has shape \(layer.conv.shape), expected \(conv)")
            }
            guard layer.ssmStorage.shape == ssm, layer.ssmStorage.count == ssm.reduce(1, *) else {
                throw Mamba2Error.stateMismatch("layer \(index) SSM state has shape \(layer.ssmStorage.shape), expected \(ssm)")
            }
            guard layer.ssmStorage.dtype == layers[0].ssmStorage.dtype else {
                throw Mamba2Error.stateMismatch("layer \(index) SSM state is \(layer.ssmStorage.dtype.rawValue), layer 0's \(layers[0].ssmStorage.dtype.rawValue)")
            }
        }
    }
}

/// An SSM state `[b, h, p, n]` as stored: fp32 values, or bf16 bits.
public struct SSMStateStorage: Sendable, Equatable {
    public let dtype: DType
    public private(set) var shape: [Int]
    /// The values when `dtype` is fp32 (else empty).
    private(set) var float32: [Float]
    /// The bits when `dtype` is bf16 (else empty).
    private(set) var bfloat16: [UInt16]

    /// `tensor` stored in `dtype` (`.float32`, or `.bfloat16`: rounded to nearest even).
    public init(_ tensor: Tensor, dtype: DType) {
        precondition(dtype == .float32 || dtype == .bfloat16, "an SSM state is stored in F32 or BF16, not \(dtype.rawValue)")
        self.dtype = dtype
        shape = tensor.shape
        if dtype == .float32 {
            float32 = tensor.scalars
            bfloat16 = []
        } else {
            float32 = []
            bfloat16 = [UInt16](unsafeUninitializedCapacity: tensor.count) { buffer, initialized in
                if tensor.count > 0 {
                    tensor.scalars.withUnsafeBufferPointer { Fast.roundToBFloat16($0.baseAddress!, count: tensor.count, into: buffer.baseAddress!) }
                }
                initialized = tensor.count
            }
        }
    }

    /// bf16 bits `[b, h, p, n]` as they are (a state file's tensor).
    public init(bfloat16 bits: [UInt16], shape: [Int]) {
        precondition(bits.count == shape.reduce(1, *), "\(bits.count) bf16 values for \(shape)")
        dtype = .bfloat16
        self.shape = shape
        float32 = []
        bfloat16 = bits
    }

    /// Values held (what `validate` holds against the shape).
    public var count: Int { dtype == .float32 ? float32.count : bfloat16.count }

    /// Bytes held.
    public var byteCount: Int { count * dtype.size }

    /// The values in fp32 (exact: bf16 widens without rounding).
    public var tensor: Tensor {
        if dtype == .float32 { return Tensor(shape: shape, scalars: float32) }
        let values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 { bfloat16.withUnsafeBufferPointer { Fast.widenBFloat16($0.baseAddress!, count: count, into: buffer.baseAddress!) } }
            initialized = count
        }
        return Tensor(shape: shape, scalars: values)
    }

    /// The stored bytes: fp32 values or bf16 bits, in order.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        dtype == .float32 ? try float32.withUnsafeBytes(body) : try bfloat16.withUnsafeBytes(body)
    }

    /// The stored values, writable in place (fp32 or bf16 as `dtype` says).
    mutating func withUnsafeMutableRawPointer<R>(_ body: (UnsafeMutableRawPointer) -> R) -> R {
        dtype == .float32
            ? float32.withUnsafeMutableBytes { body($0.baseAddress!) }
            : bfloat16.withUnsafeMutableBytes { body($0.baseAddress!) }
    }

    /// Adds `other`'s sequences after these (same dtype, same trailing shape).
    mutating func append(outer other: SSMStateStorage) {
        precondition(other.dtype == dtype && Array(other.shape.dropFirst()) == Array(shape.dropFirst()),
                     "append an SSM state \(other.dtype.rawValue) \(other.shape) to \(dtype.rawValue) \(shape)")
        float32 += other.float32
        bfloat16 += other.bfloat16
        shape[0] += other.shape[0]
    }

    /// Drops sequence `row`.
    mutating func remove(outer row: Int) {
        precondition((0..<shape[0]).contains(row), "remove \(row) of \(shape)")
        let size = shape.dropFirst().reduce(1, *)
        if dtype == .float32 { float32.removeSubrange((row * size)..<((row + 1) * size)) } else { bfloat16.removeSubrange((row * size)..<((row + 1) * size)) }
        shape[0] -= 1
    }
}
