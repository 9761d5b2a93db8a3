import ArgumentParser
import Foundation
import SafeTensors
import Tensors

@main
struct Mamba2Command: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mamba2",
        abstract: "Mamba-2 language models from Hugging Face checkpoint folders, natively in Swift.",
        subcommands: [Generate.self, Forward.self, Tokenize.self, Convert.self, MakeRandom.self, Bench.self, BenchTokenizer.self, Serve.self],
        defaultSubcommand: nil)

    /// Runs the command; any failure is one `Error: …` line on stderr and a non-zero exit (help
    /// and version requests print as usual).
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            guard code != .success else { exit(withError: error) }
            let message = message(for: error).split(whereSeparator: \.isNewline).joined(separator: " ")
            FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
            Foundation.exit(code.rawValue)
        }
    }
}

/// Errors of the command line itself (arguments and output files), one line each.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Parses a `--dtype` value.
func parseDType(_ name: String) throws -> DType {
    switch name {
    case "float32", "fp32": .float32
    case "bfloat16", "bf16": .bfloat16
    case "float16", "fp16": .float16
    case "int8": .int8
    default: throw CLIError("--dtype must be float32, bfloat16, float16 or int8, got \(name)")
    }
}

/// `--state-dtype`, shared by the commands that run the model.
struct StateDTypeOption: ParsableArguments {
    @Option(name: .customLong("state-dtype"), help: "How the SSM state is kept: float32 (exact; the default) or bfloat16 (half the memory and traffic, as transformers and mamba_ssm keep it for a bf16 model; each step computed in fp32, then rounded). In generate, a state loaded with --load-state keeps the dtype it was saved in.")
    var name: String = "float32"

    /// The dtype it names.
    func dtype() throws -> DType {
        switch name {
        case "float32", "fp32": .float32
        case "bfloat16", "bf16": .bfloat16
        default: throw CLIError("--state-dtype must be float32 or bfloat16, got \(name)")
        }
    }
}

/// `--no-mmap`, shared by the commands that load a model folder.
struct WeightResidencyOption: ParsableArguments {
    @Flag(name: .customLong("no-mmap"), help: "Read the safetensors weights into memory (2 MB-aligned; transparent huge pages requested on Linux) instead of mapping the files: loading reads every file once, and decoding is often faster, since the page cache tends to hold files in small pages (docs/benchmarks.md).")
    var noMmap = false

    var residency: WeightResidency { noMmap ? .inMemory : .mapped }
}

/// Parses `1,2,3` into integers, naming the option on failure.
func parseIntegerList(_ text: String, option: String) throws -> [Int] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.compactMap { Int($0) }
    guard !parts.isEmpty, values.count == parts.count else {
        throw CLIError("\(option) '\(text)' must be a comma-separated list of integers")
    }
    return values
}

/// A progress line on stderr for reading a large model (silent below 1 GB).
func loadingProgress(_ name: String) -> (Int, Int) -> Void {
    var lastPercent = -1
    return { done, total in
        guard total >= 1_000_000_000 else { return }
        let percent = Int(100 * Double(done) / Double(total))
        guard percent != lastPercent else { return }
        lastPercent = percent
        let line = "\rloading \(name): \(percent)% of \(total / 1_000_000) MB" + (done >= total ? "\n" : "")
        FileHandle.standardError.write(Data(line.utf8))
    }
}
