import ArgumentParser
import DefaultModel
import Foundation
import Generation
import Mamba2
import Tokenizers

/// `mamba2 generate`: text generation from a model folder (the built-in model by default).
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text after one or more prompts; streams to stdout, a summary to stderr.")

    @Option(help: "Model folder (default: the built-in mamba2-pycode model).")
    var model: String?

    @Option(help: "A text prompt; repeat for a batch.")
    var prompt: [String] = []

    @Option(name: .customLong("prompt-ids"), help: "A prompt as comma-separated token ids (for models without a tokenizer); repeat for a batch.")
    var promptIDs: [String] = []

    @Option(help: "Tokens to generate (default: the model's generation config).")
    var maxNewTokens: Int?

    @Flag(help: "Greedy decoding (arg-max).")
    var greedy = false

    @Option(help: "Sampling temperature (> 0).")
    var temperature: Float?

    @Option(help: "Keep the K most likely tokens (0 disables).")
    var topK: Int?

    @Option(help: "Keep the most likely tokens up to probability P, in (0, 1].")
    var topP: Float?

    @Option(help: "Drop tokens below M times the top token's probability, in [0, 1].")
    var minP: Float?

    @Option(help: "Penalty for repeating earlier tokens (> 0; 1 disables).")
    var repetitionPenalty: Float?

    @Option(help: "Generate at least this many tokens before an EOS may end a row.")
    var minNewTokens: Int?

    @Option(name: .customLong("no-repeat-ngram-size"), help: "Never repeat an n-gram of this many tokens (0 disables).")
    var noRepeatNGramSize: Int?

    @Option(help: "Seed of the sampler, for reproducible sampling.")
    var seed: UInt64?

    @Option(help: "Stop a row when its text contains this string; repeatable.")
    var stop: [String] = []

    @Option(help: "After generating, save the whole recurrent state (and token history) to this file.")
    var saveState: String?

    @Option(help: "Continue from a state saved with --save-state (prompts, if given, are appended to it).")
    var loadState: String?

    @OptionGroup var stateDType: StateDTypeOption

    @OptionGroup var loading: WeightResidencyOption

    @Flag(help: "Print one JSON object instead of streaming text.")
    var json = false

    func validate() throws {
        if !prompt.isEmpty && !promptIDs.isEmpty { throw CLIError("give --prompt or --prompt-ids, not both") }
        if prompt.isEmpty && promptIDs.isEmpty && loadState == nil { throw CLIError("give --prompt, --prompt-ids or --load-state") }
        if greedy && (temperature != nil || topK != nil || topP != nil || minP != nil) {
            throw CLIError("--greedy cannot be combined with --temperature, --top-k, --top-p or --min-p")
        }
    }

    func run() throws {
        try generate()
    }

    private func generate() throws {
        let ssmDType = try stateDType.dtype()
        let directory = model.map { URL(fileURLWithPath: $0) } ?? DefaultModel.directory
        var mamba = try Mamba2ForCausalLM(directory: directory, residency: loading.residency, progress: loadingProgress(directory.lastPathComponent))
        // New sequences' states; a state from --load-state keeps the dtype it was saved in.
        mamba.ssmStateDType = ssmDType
        let tokenizer = Tokenizer.file(in: directory) != nil ? try Tokenizer(url: directory) : nil
        let generator = Generator(model: mamba, tokenizer: tokenizer, defaults: try GenerationConfig(directory: directory) ?? .pipelineDefaults)

        let sampling = temperature != nil || topK != nil || topP != nil || minP != nil
        let config = generator.defaults.overriding(
            maxNewTokens: maxNewTokens, doSample: greedy ? false : (sampling ? true : nil), temperature: temperature,
            topK: topK, topP: topP, minP: minP, repetitionPenalty: repetitionPenalty, minNewTokens: minNewTokens,
            noRepeatNGramSize: noRepeatNGramSize, stopStrings: stop.isEmpty ? nil : stop, seed: seed)
        try config.validate()

        let prompts: [[Int]]
        if !promptIDs.isEmpty {
            prompts = try promptIDs.map { try parseIntegerList($0, option: "--prompt-ids") }
        } else if !prompt.isEmpty {
            guard let tokenizer else { throw CLIError("\(directory.path) has no tokenizer.json or SentencePiece tokenizer.model: use --prompt-ids") }
            // A continuation of a saved state gets no BOS in the middle of the text.
            prompts = try prompt.map { try tokenizer.encode($0, addSpecialTokens: loadState == nil).ids }
        } else {
            prompts = []
        }

        var session: GenerationSession? = nil
        if let loadState {
            session = try StateFile.read(URL(fileURLWithPath: loadState), for: mamba.config)
            if !prompts.isEmpty { session = try generator.extend(session!, with: prompts) }
        }
        let rows = session?.batchSize ?? prompts.count
        let streaming = !json && rows == 1 && tokenizer != nil
        var echoed = false
        func write(_ text: String) { FileHandle.standardOutput.write(Data(text.utf8)) }
        var decoder = tokenizer?.streamingDecoder(skipSpecialTokens: true, skipUnknownIDs: true)
        let onToken: (Int, Int) throws -> Void = { _, token in
            guard streaming else { return }
            if !echoed, !prompt.isEmpty { write(prompt[0]); echoed = true }
            if let text = try decoder!.step(token) { write(text) }
        }
        let result: GenerationResult
        if let session {
            result = try generator.generate(from: session, config: config, onToken: onToken)
        } else {
            guard prompts.allSatisfy({ !$0.isEmpty }) else { throw CLIError("a prompt must hold at least one token") }
            let batch = generator.padding(prompts)
            let padded = batch.attentionMask.contains { $0.contains(0) }
            result = try generator.generate(batch.inputIDs, attentionMask: padded ? batch.attentionMask : nil, config: config, onToken: onToken)
        }
        if let saveState {
            try StateFile.write(try generator.settle(result.session), for: mamba.config, to: URL(fileURLWithPath: saveState))
        }

        let texts = try result.tokens.map { try tokenizer?.decode($0, skipSpecialTokens: true, skipUnknownIDs: true) }
        if json {
            let entries = zip(result.tokens, zip(texts, result.finishReasons)).map { tokens, rest in
                try! JSONLine.encode([
                    "ids": .ints(tokens), "text": rest.0.map { .string($0) } ?? .raw("null"),
                    "finish_reason": .string(rest.1.rawValue),
                ])
            }
            print(try JSONLine.encode([
                "results": .raw("[" + entries.joined(separator: ", ") + "]"),
                "prefill_tokens_per_second": .double(result.prefillTokensPerSecond),
                "decode_tokens_per_second": .double(result.decodeTokensPerSecond),
            ]))
        } else {
            if streaming {
                if !echoed, !prompt.isEmpty { write(prompt[0]) }
                if let rest = try decoder!.finish() { write(rest) }
                write("\n")
            } else {
                for (row, tokens) in result.tokens.enumerated() {
                    let head = row < prompt.count ? prompt[row] : ""
                    write((row > 0 ? "\n" : "") + head + (texts[row] ?? tokens.map(String.init).joined(separator: ",")) + "\n")
                }
            }
            let summary = String(
                format: "prompt tokens: %d, generated: %d, prefill: %.1f tokens/s, decode: %.1f tokens/s\n",
                result.promptTokens, result.generatedTokens, result.prefillTokensPerSecond, result.decodeTokensPerSecond)
            FileHandle.standardError.write(Data(summary.utf8))
        }
    }
}
