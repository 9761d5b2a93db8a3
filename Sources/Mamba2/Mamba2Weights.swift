import Foundation
import SafeTensors
import Tensors
import TorchCheckpoint

/// One mixer's weights, each beside its Hugging Face key (`backbone.layers.{i}.mixer.` + key).
public struct Mamba2MixerWeights: Sendable {
    /// `in_proj.weight` `[e + conv_dim + h, d]`, output split `[z, x, B, C, dt]`.
    public var inProj: WeightView
    /// `in_proj.bias` `[e + conv_dim + h]`, when `use_bias`.
    public var inProjBias: WeightView?
    /// `conv1d.weight` `[conv_dim, 1, k]`.
    public var conv1dWeight: WeightView
    /// `conv1d.bias` `[conv_dim]`, when `use_conv_bias`.
    public var conv1dBias: WeightView?
    /// `dt_bias` `[h]`.
    public var dtBias: WeightView
    /// `A_log` `[h]`: A = −exp(A_log).
    public var aLog: WeightView
    /// `D` `[h]`: the skip connection.
    public var d: WeightView
    /// `norm.weight` `[e]`: the gated RMSNorm.
    public var norm: WeightView
    /// `out_proj.weight` `[d, e]`.
    public var outProj: WeightView
    /// `out_proj.bias` `[d]`, when `use_bias`.
    public var outProjBias: WeightView?
}

/// One block: `backbone.layers.{i}.`
public struct Mamba2BlockWeights: Sendable {
    /// `norm.weight` `[d]`: the pre-mixer RMSNorm.
    public var norm: WeightView
    public var mixer: Mamba2MixerWeights
}

/// Every weight of `Mamba2ForCausalLM`, checked against the config by name and shape.
public struct Mamba2Weights: Sendable {
    /// `backbone.embeddings.weight` `[vocab, d]` (mamba_ssm: `backbone.embedding.weight`).
    public var embeddings: WeightView
    public var layers: [Mamba2BlockWeights]
    /// `backbone.norm_f.weight` `[d]`.
    public var normF: WeightView
    /// `lm_head.weight` `[vocab, d]`, or the embeddings when `tie_word_embeddings`.
    public var lmHead: WeightView

    /// Every Hugging Face key this config needs, with its shape.
    public static func expectedShapes(for config: Mamba2Config) -> [String: [Int]] {
        let (d, e, h, k) = (config.hiddenSize, config.intermediateSize, config.numHeads, config.convKernel)
        var shapes: [String: [Int]] = [
            "backbone.embeddings.weight": [config.vocabSize, d],
            "backbone.norm_f.weight": [d],
        ]
        if !config.tieWordEmbeddings { shapes["lm_head.weight"] = [config.vocabSize, d] }
        for layer in 0..<config.numHiddenLayers {
            let prefix = "backbone.layers.\(layer)."
            shapes[prefix + "norm.weight"] = [d]
            shapes[prefix + "mixer.in_proj.weight"] = [config.inProjSize, d]
            shapes[prefix + "mixer.conv1d.weight"] = [config.convDim, 1, k]
            shapes[prefix + "mixer.dt_bias"] = [h]
            shapes[prefix + "mixer.A_log"] = [h]
            shapes[prefix + "mixer.D"] = [h]
            shapes[prefix + "mixer.norm.weight"] = [e]
            shapes[prefix + "mixer.out_proj.weight"] = [d, e]
            if config.useBias {
                shapes[prefix + "mixer.in_proj.bias"] = [config.inProjSize]
                shapes[prefix + "mixer.out_proj.bias"] = [d]
            }
            if config.useConvBias { shapes[prefix + "mixer.conv1d.bias"] = [config.convDim] }
        }
        return shapes
    }

    /// The matrices that may be stored as block-quantized int8 (by key suffix).
    public static let quantizableKeys = ["in_proj.weight", "out_proj.weight", "lm_head.weight", "embeddings.weight"]

    /// Joins each int8 tensor `X` with its scales `X_scale` (fp32 `[rows, row / 32]`), as
    /// `mamba2 convert --dtype int8` writes them.
    static func pairingScales(_ tensors: [String: WeightView]) throws -> [String: WeightView] {
        var paired = tensors
        for (name, scales) in tensors where name.hasSuffix("_scale") {
            let valuesName = String(name.dropLast("_scale".count))
            guard let values = tensors[valuesName], values.dtype == .int8 else {
                throw Mamba2Error.unsupportedWeight(name: name, reason: "block scales without an int8 tensor \(valuesName)")
            }
            guard let quantized = WeightView.quantized(values: values, scales: scales) else {
                let expected = values.shape.count == 2 ? "F32 [\(values.shape[0]), \(values.shape[1] / WeightView.quantizationBlock)]" : "a matrix's scales"
                throw Mamba2Error.unsupportedWeight(
                    name: name, reason: "\(scales.dtype.rawValue) \(scales.shape) are not the block scales of \(values.shape) (expected \(expected); rows must hold whole blocks of \(WeightView.quantizationBlock))")
            }
            paired[valuesName] = quantized
            paired[name] = nil
        }
        if let bare = paired.first(where: { $0.value.dtype == .int8 && $0.value.scales == nil }) {
            throw Mamba2Error.unsupportedWeight(name: bare.key, reason: "an int8 tensor needs its block scales \(bare.key)_scale")
        }
        return paired
    }

    /// These weights with every projection matrix and the embedding table block-quantized to
    /// int8 (W8A32: activations stay fp32); norms, conv, `A_log`, `D` and `dt_bias` keep their
    /// dtype. A matrix whose rows do not split into whole blocks of 32 stays as it is.
    public func quantizedToInt8(tiedEmbeddings: Bool, threads: Int = Fast.defaultThreads) -> Mamba2Weights {
        func quantize(_ view: WeightView) -> WeightView { view.isQuantizable ? view.quantizedToInt8(threads: threads) : view }
        var weights = self
        weights.embeddings = quantize(embeddings)
        weights.lmHead = tiedEmbeddings ? weights.embeddings : quantize(lmHead)
        for index in weights.layers.indices {
            weights.layers[index].mixer.inProj = quantize(layers[index].mixer.inProj)
            weights.layers[index].mixer.outProj = quantize(layers[index].mixer.outProj)
        }
        return weights
    }

    /// Spellings other checkpoints use for a Hugging Face key.
    static let aliases = ["backbone.embedding.weight": "backbone.embeddings.weight"]

    /// Loads the weights of a model folder: safetensors (single or sharded) when there are any,
    /// else the original mamba_ssm `pytorch_model.bin`. Safetensors files are mapped, or with
    /// `residency: .inMemory` read into memory. With `progress`, they are read through once
    /// (bytes read, total), so generation starts without page-fault stalls.
    public init(
        config: Mamba2Config, directory: URL, residency: WeightResidency = .mapped, progress: ((Int, Int) -> Void)? = nil
    ) throws {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let bin = directory.appendingPathComponent("pytorch_model.bin")
        if !files.contains(where: { $0.hasSuffix(".safetensors") || $0 == Checkpoint.indexName }), files.contains("pytorch_model.bin") {
            guard residency == .mapped else {
                throw Mamba2Error.cannotRead(
                    file: bin.path,
                    reason: "reading weights into memory is for safetensors folders; load this pytorch_model.bin mapped, or turn it into safetensors with `mamba2 convert`")
            }
            let file = try TorchCheckpointFile(path: bin.path)
            try self.init(config: config, tensors: Dictionary(file.tensors, uniquingKeysWith: { first, _ in first }))
        } else {
            var checkpoint = try Checkpoint(directory: directory)
            try self.init(config: config, checkpoint: checkpoint)
            // The byte order of int8 rows is this package's own: a folder must say it has ours.
            if config.int8Layout != WeightView.int8Layout,
               let int8 = huggingFaceTensors(config: config).filter({ $0.value.dtype == .int8 }).keys.min() {
                let found = config.int8Layout.map { "\"\($0)\"" } ?? "none (folders written before the layout was recorded keep blocks in order)"
                throw Mamba2Error.unsupportedWeight(
                    name: int8,
                    reason: "int8 rows stored in an unknown byte order: config.json's quantization_config.layout is \(found), not \"\(WeightView.int8Layout)\"; convert the original weights again with `mamba2 convert --dtype int8`")
            }
            switch residency {
            case .mapped:
                if let progress { checkpoint.prefetch(progress: progress) }
            case .inMemory:
                // Checked first (headers, shapes, layout), read after: a bad folder fails fast.
                checkpoint = try checkpoint.readIntoMemory(progress: progress ?? { _, _ in })
                self = try Mamba2Weights(config: config, checkpoint: checkpoint)
            }
        }
    }

    /// Loads every weight of a checkpoint folder (`model.safetensors`, sharded or not).
    public init(config: Mamba2Config, checkpoint: Checkpoint) throws {
        var views: [String: WeightView] = [:]
        for name in checkpoint.names { views[name] = try checkpoint.view(name) }
        try self.init(config: config, tensors: views)
    }

    /// Takes weights by Hugging Face key (also mamba_ssm's `backbone.embedding.weight`, and
    /// Mistral's names with a `model.` prefix). A missing, unexpected or mis-shaped tensor is an
    /// error that names it. When embeddings are tied, a stored `lm_head.weight` (mamba_ssm saves one) is
    /// shape-checked and otherwise ignored.
    public init(config: Mamba2Config, tensors: [String: WeightView]) throws {
        var expected = Self.expectedShapes(for: config)
        if config.tieWordEmbeddings { expected["lm_head.weight"] = [config.vocabSize, config.hiddenSize] }
        var byKey: [String: WeightView] = [:]
        for (stored, view) in try Self.pairingScales(tensors) {
            // Mistral's consolidated.safetensors puts "model." before mamba_ssm's names.
            let unprefixed = stored.hasPrefix("model.") ? String(stored.dropFirst("model.".count)) : stored
            let key = Self.aliases[unprefixed] ?? unprefixed
            guard let shape = expected[key] else {
                throw Mamba2Error.unexpectedWeight(name: stored, shape: view.shape)
            }
            guard byKey[key] == nil else {
                // Both spellings of one key.
                throw Mamba2Error.unexpectedWeight(name: stored, shape: view.shape)
            }
            guard view.shape == shape else {
                throw Mamba2Error.weightShapeMismatch(name: stored, expected: shape, actual: view.shape)
            }
            if view.dtype == .int8 && !Self.quantizableKeys.contains(where: { key.hasSuffix($0) }) {
                throw Mamba2Error.unsupportedWeight(name: stored, reason: "int8 is supported for the projection and embedding matrices only")
            }
            byKey[key] = view
        }
        func take(_ key: String) throws -> WeightView {
            guard let view = byKey[key] else { throw Mamba2Error.missingWeight(name: key, expectedShape: expected[key]!) }
            return view
        }
        embeddings = try take("backbone.embeddings.weight")
        normF = try take("backbone.norm_f.weight")
        lmHead = config.tieWordEmbeddings ? embeddings : try take("lm_head.weight")
        layers = try (0..<config.numHiddenLayers).map { layer in
            let prefix = "backbone.layers.\(layer)."
            let mixer = Mamba2MixerWeights(
                inProj: try take(prefix + "mixer.in_proj.weight"),
                inProjBias: config.useBias ? try take(prefix + "mixer.in_proj.bias") : nil,
                conv1dWeight: try take(prefix + "mixer.conv1d.weight"),
                conv1dBias: config.useConvBias ? try take(prefix + "mixer.conv1d.bias") : nil,
                dtBias: try take(prefix + "mixer.dt_bias"),
                aLog: try take(prefix + "mixer.A_log"),
                d: try take(prefix + "mixer.D"),
                norm: try take(prefix + "mixer.norm.weight"),
                outProj: try take(prefix + "mixer.out_proj.weight"),
                outProjBias: config.useBias ? try take(prefix + "mixer.out_proj.bias") : nil)
            return Mamba2BlockWeights(norm: try take(prefix + "norm.weight"), mixer: mixer)
        }
    }
}
