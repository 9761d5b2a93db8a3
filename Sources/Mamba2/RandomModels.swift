import Foundation
import Tensors

extension Mamba2Config {
    /// The shapes of the published Mamba-2 checkpoints, by name: state-spaces/mamba2-130m, -370m,
    /// -780m, -1.3b, -2.7b (GPT-NeoX vocabulary padded to 50288, tied) and
    /// mistralai/Mamba-Codestral-7B-v0.1 ("codestral-7b").
    public static func shape(named name: String) throws -> Mamba2Config {
        var config = Mamba2Config()
        let sizes: [String: (hidden: Int, layers: Int)] = [
            "130m": (768, 24), "370m": (1024, 48), "780m": (1536, 48), "1.3b": (2048, 48), "2.7b": (2560, 64),
        ]
        if name == "codestral-7b" {
            return config  // transformers' defaults are Codestral's shape
        }
        guard let size = sizes[name] else {
            throw Mamba2Error.invalidInput("unknown shape \(name.debugDescription); known: 130m, 370m, 780m, 1.3b, 2.7b, codestral-7b")
        }
        config.hiddenSize = size.hidden
        config.numHiddenLayers = size.layers
        config.numHeads = 2 * size.hidden / 64
        config.nGroups = 1
        config.vocabSize = 50288
        config.tieWordEmbeddings = true
        (config.padTokenID, config.bosTokenID, config.eosTokenIDs) = (0, 0, [0])
        return config
    }
}

extension Mamba2Weights {
    /// Random weights of `config`'s shape in `dtype`, in mamba_ssm's ranges (for speed and memory
    /// measurements without a checkpoint).
    public static func random(config: Mamba2Config, dtype: DType, seed: UInt64 = 0) throws -> Mamba2Weights {
        var tensors: [String: WeightView] = [:]
        for (index, (name, shape)) in expectedShapes(for: config).sorted(by: { $0.key < $1.key }).enumerated() {
            let fanIn = Float(shape.count > 1 ? shape.last! : 1)
            let range: ClosedRange<Float> = switch name {
            case _ where name.hasSuffix("A_log"): 0...2.77  // log(1)...log(16)
            case _ where name.hasSuffix("dt_bias"): -6.9 ... -2.25  // softplus⁻¹ of dt in [0.001, 0.1]
            case _ where name.hasSuffix("norm.weight") || name.hasSuffix("norm_f.weight") || name.hasSuffix(".D"): 0.5...1.5
            default: -1 / fanIn.squareRoot()...1 / fanIn.squareRoot()
            }
            tensors[name] = WeightView.random(shape: shape, dtype: dtype, in: range, seed: UInt64(index) &+ seed &* 1_000_003)
        }
        return try Mamba2Weights(config: config, tensors: tensors)
    }
}
