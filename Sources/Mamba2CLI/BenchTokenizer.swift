import ArgumentParser
import Foundation
import Tokenizers

/// `mamba2 bench-tokenizer`: encoding throughput on a text file (median of several runs).
struct BenchTokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-tokenizer",
        abstract: "Measure encoding throughput on a text file; prints one JSON line.")

    @Option(help: "A tokenizer folder or tokenizer.json file.")
    var tokenizer: String

    @Option(help: "UTF-8 text to encode as one string (without special tokens).")
    var file: String

    @Option(help: "Timed runs after one warm-up run.")
    var runs = 5

    @Option(help: "Write the ids, comma-separated, to this file (to compare with another tokenizer).")
    var idsOutput: String?

    func run() throws {
        guard runs > 0 else { throw CLIError("--runs must be positive") }
        guard let text = try? String(contentsOf: URL(fileURLWithPath: file), encoding: .utf8) else {
            throw CLIError("\(file): cannot read as UTF-8 text")
        }
        let loadStart = DispatchTime.now()
        let tokenizer = try Tokenizers.Tokenizer(url: URL(fileURLWithPath: self.tokenizer))
        let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart.uptimeNanoseconds) / 1e9
        // A fresh tokenizer per run would measure loading; the word cache is part of encoding,
        // so the warm-up run fills it as HF's cache fills in its warm-up.
        var ids = try tokenizer.encode(text, addSpecialTokens: false).ids
        var seconds: [Double] = []
        for _ in 0..<runs {
            let start = DispatchTime.now()
            ids = try tokenizer.encode(text, addSpecialTokens: false).ids
            seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9)
        }
        let median = seconds.sorted()[seconds.count / 2]
        if let idsOutput {
            try Data(ids.map(String.init).joined(separator: ",").utf8).write(to: URL(fileURLWithPath: idsOutput))
        }
        let bytes = text.utf8.count
        print(try JSONLine.encode([
            "bytes": .int(bytes), "tokens": .int(ids.count), "runs": .int(runs),
            "load_seconds": .double(loadSeconds), "median_seconds": .double(median),
            "megabytes_per_second": .double(Double(bytes) / 1e6 / median),
            "tokens_per_second": .double(Double(ids.count) / median),
        ]))
    }
}
