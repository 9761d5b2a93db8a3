import ArgumentParser
import Foundation
import Mamba2
import Tensors

/// `mamba2 convert`: any supported model folder to a Hugging Face folder in a chosen dtype.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model folder (HF, mamba_ssm pytorch_model.bin, or Mistral) as a Hugging Face safetensors folder.")

    @Option(help: "Source model folder.")
    var model: String

    @Option(help: "Output folder (created).")
    var output: String

    @Option(help: "Weight dtype: float32, bfloat16, float16, or int8 (block-quantized matrices, the rest fp32) (default: the source's).")
    var dtype: String?

    @Option(help: "Split into shards of at most this many bytes, with model.safetensors.index.json.")
    var shardBytes: Int?

    func run() throws {
        let source = URL(fileURLWithPath: model)
        guard source.standardizedFileURL.path != URL(fileURLWithPath: output).standardizedFileURL.path else {
            throw CLIError("--output must be another folder than --model")
        }
        let config = try Mamba2Config(directory: source)
        let weights = try Mamba2Weights(config: config, directory: source)
        let target = try dtype.map(parseDType) ?? (weights.layers.first?.mixer.inProj.dtype ?? .float32)
        if let shardBytes, shardBytes <= 0 { throw CLIError("--shard-bytes must be positive") }
        let destination = URL(fileURLWithPath: output)
        if target == .int8 {
            // Matrices whose rows do not split into blocks of 32 stay fp32: say which.
            let kept = weights.huggingFaceTensors(config: config)
                .filter { name, view in Mamba2Weights.quantizableKeys.contains { name.hasSuffix($0) } && !view.isQuantizable }
                .sorted { $0.key < $1.key }
                .map { "\($0.key) (rows of \($0.value.shape.last ?? 0))" }
            if !kept.isEmpty {
                let names = kept.count > 3 ? kept.prefix(3).joined(separator: ", ") + " and \(kept.count - 3) more" : kept.joined(separator: ", ")
                FileHandle.standardError.write(Data("note: kept in fp32, rows that do not split into int8 blocks of \(WeightView.quantizationBlock): \(names)\n".utf8))
            }
        }
        try weights.writeHuggingFaceFolder(config: config, dtype: target, to: destination, shardBytes: shardBytes)
        for name in ["tokenizer.json", "tokenizer.model.v3", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"] {
            let file = source.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: file.path) else { continue }
            try? FileManager.default.removeItem(at: destination.appendingPathComponent(name))
            try FileManager.default.copyItem(at: file, to: destination.appendingPathComponent(name))
        }
    }
}
