import Tensors

/// The recurrent state of a batch of sequences (transformers' cache): per layer, the last
/// `k − 1` convolution inputs and the SSM state, both fp32. Its size is fixed, whatever the
/// number of tokens seen.
public struct Mamba2State: Sendable, Equatable {
    public struct Layer: Sendable, Equatable {
        /// `[b, k − 1, conv_dim]` the most recent conv inputs `[x, B, C]`, oldest first.
        public var conv: Tensor
        /// `[b, h, p, n]`.
        public var ssm: Tensor

        public init(conv: Tensor, ssm: Tensor) {
            self.conv = conv
            self.ssm = ssm
        }
    }

    public var layers: [Layer]

    /// The state before any token: zeros, so a prompt shorter than `k − 1` sees zero left padding.
    public init(config: Mamba2Config, batchSize: Int) {
        let layer = Layer(
            conv: Tensor(zeros: [batchSize, config.convKernel - 1, config.convDim]),
            ssm: Tensor(zeros: [batchSize, config.numHeads, config.headDim, config.stateSize]))
        layers = Array(repeating: layer, count: config.numHiddenLayers)
    }

    public init(layers: [Layer]) {
        self.layers = layers
    }

    public var batchSize: Int { layers.first?.ssm.shape[0] ?? 0 }

    /// Adds the sequences of `other` (a state of the same model) after this state's.
    public mutating func append(_ other: Mamba2State) {
        precondition(other.layers.count == layers.count, "append a state of \(other.layers.count) layers to \(layers.count)")
        for index in layers.indices {
            layers[index].conv.append(outer: other.layers[index].conv)
            layers[index].ssm.append(outer: other.layers[index].ssm)
        }
    }

    /// Drops sequence `row`; later rows move up by one.
    public mutating func removeSequence(at row: Int) {
        for index in layers.indices {
            layers[index].conv.remove(outer: row)
            layers[index].ssm.remove(outer: row)
        }
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
            guard layer.ssm.shape == ssm, layer.ssm.count == ssm.reduce(1, *) else {
                throw Mamba2Error.stateMismatch("layer \(index) SSM state has shape \(layer.ssm.shape), expected \(ssm)")
            }
        }
    }
}
