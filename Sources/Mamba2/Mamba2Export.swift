import Foundation
import SafeTensors
import Tensors

extension Mamba2Config {
    /// `config.json` in transformers' form (every field, `time_step_limit`'s infinity written as
    /// Python's json writes it, which transformers 4 and 5 both read).
    public func huggingFaceJSON(dtype: DType) -> String {
        func number(_ value: Float) -> String { value.isInfinite ? (value > 0 ? "Infinity" : "-Infinity") : "\(Double(value))" }
        func optional(_ value: Int?) -> String { value.map(String.init) ?? "null" }
        let eos = eosTokenIDs.count == 1 ? "\(eosTokenIDs[0])" : "[" + eosTokenIDs.map(String.init).joined(separator: ", ") + "]"
        // An int8 folder keeps its other tensors in fp32 and says how its matrices are stored.
        let torchDType = switch dtype {
        case .float32, .int8: "float32"
        case .bfloat16: "bfloat16"
        case .float16: "float16"
        }
        let fields: [(String, String)] = [
            ("architectures", "[\"Mamba2ForCausalLM\"]"), ("model_type", "\"mamba2\""), ("dtype", "\"\(torchDType)\""),
            ("vocab_size", "\(vocabSize)"), ("hidden_size", "\(hiddenSize)"), ("state_size", "\(stateSize)"),
            ("num_hidden_layers", "\(numHiddenLayers)"), ("layer_norm_epsilon", number(layerNormEpsilon)),
            ("pad_token_id", optional(padTokenID)), ("bos_token_id", optional(bosTokenID)), ("eos_token_id", eos),
            ("expand", "\(expand)"), ("conv_kernel", "\(convKernel)"), ("n_groups", "\(nGroups)"), ("num_heads", "\(numHeads)"),
            ("head_dim", "\(headDim)"), ("use_bias", "\(useBias)"), ("use_conv_bias", "\(useConvBias)"),
            ("hidden_act", "\"\(hiddenAct)\""), ("initializer_range", "\(initializerRange)"), ("residual_in_fp32", "\(residualInFP32)"),
            ("time_step_rank", "\(timeStepRank ?? (hiddenSize + 15) / 16)"), ("time_step_min", "\(timeStepMin)"),
            ("time_step_max", "\(timeStepMax)"), ("time_step_floor", "\(timeStepFloor)"),
            ("time_step_limit", "[\(number(timeStepLimit.lowerBound)), \(number(timeStepLimit.upperBound))]"),
            ("rescale_prenorm_residual", "\(rescalePrenormResidual)"), ("use_cache", "\(useCache)"), ("chunk_size", "\(chunkSize)"),
            ("tie_word_embeddings", "\(tieWordEmbeddings)"),
        ] + (dtype == .int8 ? [("quantization_config", Self.int8QuantizationJSON)] : [])
        return "{\n" + fields.map { "  \"\($0.0)\": \($0.1)" }.joined(separator: ",\n") + "\n}\n"
    }
}

extension Mamba2Config {
    /// How `mamba2 convert --dtype int8` describes its folders (our format: transformers does
    /// not read it): each quantized matrix `X` is an `I8` tensor, its rows in the byte order
    /// `layout` names (`WeightView.int8Layout`), plus `X_scale`, fp32 `[rows, row / 32]`.
    static let int8QuantizationJSON =
        "{\"quant_method\": \"swift-mamba2-int8\", \"bits\": 8, \"block_size\": 32, \"scale_dtype\": \"float32\", \"layout\": \"\(WeightView.int8Layout)\"}"
}

extension Mamba2Weights {
    /// Every weight under its Hugging Face key (no `lm_head.weight` when tied).
    public func huggingFaceTensors(config: Mamba2Config) -> [String: WeightView] {
        var tensors: [String: WeightView] = ["backbone.embeddings.weight": embeddings, "backbone.norm_f.weight": normF]
        if !config.tieWordEmbeddings { tensors["lm_head.weight"] = lmHead }
        for (index, layer) in layers.enumerated() {
            let prefix = "backbone.layers.\(index)."
            let mixer = layer.mixer
            tensors[prefix + "norm.weight"] = layer.norm
            tensors[prefix + "mixer.in_proj.weight"] = mixer.inProj
            tensors[prefix + "mixer.in_proj.bias"] = mixer.inProjBias
            tensors[prefix + "mixer.conv1d.weight"] = mixer.conv1dWeight
            tensors[prefix + "mixer.conv1d.bias"] = mixer.conv1dBias
            tensors[prefix + "mixer.dt_bias"] = mixer.dtBias
            tensors[prefix + "mixer.A_log"] = mixer.aLog
            tensors[prefix + "mixer.D"] = mixer.d
            tensors[prefix + "mixer.norm.weight"] = mixer.norm
            tensors[prefix + "mixer.out_proj.weight"] = mixer.outProj
            tensors[prefix + "mixer.out_proj.bias"] = mixer.outProjBias
        }
        return tensors
    }

    /// Writes a Hugging Face model folder: `config.json` and `model.safetensors` in `dtype`
    /// (`A_log`, `D` and `dt_bias` stay fp32, as the published checkpoints keep them), split into
    /// `model-0000N-of-0000M.safetensors` shards of at most `shardBytes` with an index when given.
    /// With `.int8`, the projection and embedding matrices are block-quantized (each with its
    /// `_scale` tensor) and every other tensor is fp32.
    public func writeHuggingFaceFolder(config: Mamba2Config, dtype: DType, to directory: URL, shardBytes: Int? = nil) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // Weights left by an earlier export would be read instead of (or with) the new ones.
        let stale = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for name in stale where name.hasSuffix(".safetensors") || name == Checkpoint.indexName || name == "pytorch_model.bin" {
            try FileManager.default.removeItem(at: directory.appendingPathComponent(name))
        }
        var tensors: [String: WeightView] = [:]
        for (name, view) in huggingFaceTensors(config: config) {
            if dtype == .int8 {
                if Self.quantizableKeys.contains(where: { name.hasSuffix($0) }) && view.isQuantizable {
                    let quantized = view.quantizedToInt8()
                    tensors[name] = quantized.quantizedValues
                    tensors[name + "_scale"] = quantized.scaleView
                } else {
                    tensors[name] = view.dtype == .float32 && view.scales == nil ? view : WeightView(view.tensor(), as: .float32)
                }
                continue
            }
            let keep = name.hasSuffix("A_log") || name.hasSuffix(".D") || name.hasSuffix("dt_bias") || (view.dtype == dtype && view.scales == nil)
            tensors[name] = keep ? view : WeightView(view.tensor(), as: dtype)
        }
        try Data(config.huggingFaceJSON(dtype: dtype).utf8).write(to: directory.appendingPathComponent("config.json"))
        guard let shardBytes else {
            try SafeTensorsWriter.write(tensors, metadata: ["format": "pt"], to: directory.appendingPathComponent("model.safetensors"))
            return
        }
        var shards: [[String]] = [[]]
        var used = 0
        for name in tensors.keys.sorted() {
            let size = tensors[name]!.bytes.count
            if used > 0, used + size > shardBytes { shards.append([]); used = 0 }
            shards[shards.count - 1].append(name)
            used += size
        }
        var weightMap: [String] = []
        for (index, names) in shards.enumerated() {
            let file = String(format: "model-%05d-of-%05d.safetensors", index + 1, shards.count)
            try SafeTensorsWriter.write(tensors.filter { names.contains($0.key) }, metadata: ["format": "pt"], to: directory.appendingPathComponent(file))
            weightMap += names.map { "    \(SafeTensorsWriter.jsonString($0)): \"\(file)\"" }
        }
        let total = tensors.values.map(\.bytes.count).reduce(0, +)
        let index = "{\n  \"metadata\": {\"total_size\": \(total)},\n  \"weight_map\": {\n" + weightMap.joined(separator: ",\n") + "\n  }\n}\n"
        try Data(index.utf8).write(to: directory.appendingPathComponent(Checkpoint.indexName))
    }
}
