import Foundation
import SafeTensors
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
    /// Each Hugging Face key of `config` with its shape, the dtype it is stored in (A_log, D and
    /// dt_bias stay fp32, as published checkpoints keep them), the range of its random values
    /// (mamba_ssm's initialization ranges) and a seed.
    static func randomPlan(config: Mamba2Config, dtype: DType, seed: UInt64) -> [(name: String, shape: [Int], dtype: DType, range: ClosedRange<Float>, seed: UInt64)] {
        expectedShapes(for: config).sorted(by: { $0.key < $1.key }).enumerated().map { index, entry in
            let (name, shape) = entry
            let fanIn = Float(shape.count > 1 ? shape.last! : 1)
            let small = name.hasSuffix("A_log") || name.hasSuffix(".D") || name.hasSuffix("dt_bias")
            let range: ClosedRange<Float> = switch name {
            case _ where name.hasSuffix("A_log"): 0...2.77  // log(1)...log(16)
            case _ where name.hasSuffix("dt_bias"): -6.9 ... -2.25  // softplus⁻¹ of dt in [0.001, 0.1]
            case _ where name.hasSuffix("norm.weight") || name.hasSuffix("norm_f.weight") || name.hasSuffix(".D"): 0.5...1.5
            default: -1 / fanIn.squareRoot()...1 / fanIn.squareRoot()
            }
            // int8 applies to the matrices that may be quantized; the rest stays fp32.
            let quantizable = quantizableKeys.contains(where: { name.hasSuffix($0) }) && shape.last! % WeightView.quantizationBlock == 0
            let stored: DType = small || (dtype == .int8 && !quantizable) ? .float32 : dtype
            return (name, shape, stored, range, UInt64(index) &+ seed &* 1_000_003)
        }
    }

    /// Random weights of `config`'s shape in `dtype`, in memory (for speed and memory
    /// measurements without a checkpoint).
    public static func random(config: Mamba2Config, dtype: DType, seed: UInt64 = 0) throws -> Mamba2Weights {
        var tensors: [String: WeightView] = [:]
        for entry in randomPlan(config: config, dtype: dtype, seed: seed) {
            tensors[entry.name] = WeightView.random(shape: entry.shape, dtype: entry.dtype, in: entry.range, seed: entry.seed)
        }
        return try Mamba2Weights(config: config, tensors: tensors)
    }

    /// Writes a random checkpoint of `config`'s shape as a Hugging Face folder (config.json,
    /// shards of at most `shardBytes`, model.safetensors.index.json), streaming each tensor so a
    /// 7B model never needs its size in memory. `progress` hears (bytes written, total bytes).
    public static func writeRandomHuggingFaceFolder(
        config: Mamba2Config, dtype: DType, to directory: URL, shardBytes: Int, seed: UInt64 = 0,
        progress: @escaping (Int, Int) -> Void = { _, _ in }
    ) throws {
        guard dtype != .int8 else {
            throw Mamba2Error.invalidInput("random checkpoints are written in float32, bfloat16 or float16; quantize one with writeHuggingFaceFolder(dtype: .int8)")
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data(config.huggingFaceJSON(dtype: dtype).utf8).write(to: directory.appendingPathComponent("config.json"))
        let plan = randomPlan(config: config, dtype: dtype, seed: seed)
        let total = plan.map { $0.shape.reduce(1, *) * $0.dtype.size }.reduce(0, +)
        var shards: [[Int]] = [[]]
        var used = 0
        for (index, entry) in plan.enumerated() {
            let size = entry.shape.reduce(1, *) * entry.dtype.size
            if used > 0, used + size > shardBytes { shards.append([]); used = 0 }
            shards[shards.count - 1].append(index)
            used += size
        }
        var written = 0
        var weightMap: [String] = []
        for (number, members) in shards.enumerated() {
            let file = String(format: "model-%05d-of-%05d.safetensors", number + 1, shards.count)
            let tensors = members.map { index in
                let entry = plan[index]
                return SafeTensorsWriter.StreamedTensor(name: entry.name, dtype: entry.dtype, shape: entry.shape) { offset, buffer in
                    WeightView.fillRandom(buffer, dtype: entry.dtype, in: entry.range, seed: entry.seed, firstElement: offset / entry.dtype.size)
                    written += buffer.count
                    progress(written, total)
                }
            }
            try SafeTensorsWriter.stream(tensors, metadata: ["format": "pt"], to: directory.appendingPathComponent(file))
            weightMap += members.map { "    \(SafeTensorsWriter.jsonString(plan[$0].name)): \"\(file)\"" }
        }
        let index = "{\n  \"metadata\": {\"total_size\": \(total)},\n  \"weight_map\": {\n" + weightMap.joined(separator: ",\n") + "\n  }\n}\n"
        try Data(index.utf8).write(to: directory.appendingPathComponent(Checkpoint.indexName))
    }
}
