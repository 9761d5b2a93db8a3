import ArgumentParser
import Foundation
import Mamba2
import Tensors

/// `mamba2 make-random`: a random checkpoint of a published shape, written as a sharded
/// Hugging Face folder without ever holding it in memory (e.g. Codestral-7B in bf16).
struct MakeRandom: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-random",
        abstract: "Write a random checkpoint of a published shape as a sharded Hugging Face folder.")

    @Option(help: "130m, 370m, 780m, 1.3b, 2.7b or codestral-7b.")
    var shape: String

    @Option(help: "Weight dtype: float32, bfloat16 or float16.")
    var dtype = "bfloat16"

    @Option(help: "Output folder (created).")
    var output: String

    @Option(help: "Largest shard in bytes.")
    var shardBytes = 5_000_000_000

    @Option(help: "Seed of the random values.")
    var seed: UInt64 = 0

    func run() throws {
        let config = try Mamba2Config.shape(named: shape)
        let weightType = try parseDType(dtype)
        guard weightType != .int8 else {
            throw CLIError("make-random writes float32, bfloat16 or float16; quantize its output with `mamba2 convert --dtype int8`")
        }
        guard shardBytes > 0 else { throw CLIError("--shard-bytes must be positive") }
        var lastPercent = -1
        try Mamba2Weights.writeRandomHuggingFaceFolder(
            config: config, dtype: weightType, to: URL(fileURLWithPath: output), shardBytes: shardBytes, seed: seed
        ) { written, total in
            let percent = Int(100 * Double(written) / Double(max(total, 1)))
            if percent != lastPercent {
                lastPercent = percent
                FileHandle.standardError.write(Data("\rwriting \(output): \(percent)% of \(total / 1_000_000) MB".utf8))
            }
        }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}
