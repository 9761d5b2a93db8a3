import Foundation
import Testing
import TestSupport

@Suite("mamba2 generate")
struct GenerateCommandTests {
    struct Output: Decodable {
        struct Result: Decodable { let ids: [Int]; let text: String?; let finish_reason: String }
        let results: [Result]
        let prefill_tokens_per_second: Double
        let decode_tokens_per_second: Double
    }

    static func json(_ arguments: [String]) throws -> Output {
        let result = try runMamba2(["generate", "--json"] + arguments)
        #expect(result.status == 0, "\(result.stderr)")
        return try JSONDecoder().decode(Output.self, from: Data(result.stdout.utf8))
    }

    @Test("the built-in model writes code-like text; streamed text equals the --json text")
    func builtInModel() throws {
        let streamed = try runMamba2(["generate", "--prompt", "def fibonacci(n):", "--greedy", "--max-new-tokens", "16"])
        #expect(streamed.status == 0, "\(streamed.stderr)")
        #expect(streamed.stderr.contains("prompt tokens:") && streamed.stderr.contains("decode:"))
        let output = try Self.json(["--prompt", "def fibonacci(n):", "--greedy", "--max-new-tokens", "16"])
        #expect(output.results.count == 1 && output.results[0].ids.count == 16)
        #expect(streamed.stdout == "def fibonacci(n):" + output.results[0].text! + "\n")
        #expect(output.prefill_tokens_per_second > 0 && output.decode_tokens_per_second > 0)
    }

    @Test("--prompt-ids serves models without a tokenizer, batched rows equal solo rows")
    func promptIDs() throws {
        let model = fixtures.appendingPathComponent("g2-fp32").path
        let batch = try Self.json(["--model", model, "--prompt-ids", "1,2,3,4", "--prompt-ids", "5,6", "--greedy", "--max-new-tokens", "6"])
        #expect(batch.results.allSatisfy { $0.text == nil && $0.ids.count == 6 })
        let solo = try Self.json(["--model", model, "--prompt-ids", "5,6", "--greedy", "--max-new-tokens", "6"])
        #expect(batch.results[1].ids == solo.results[0].ids)
    }

    @Test("--no-repeat-ngram-size and --min-new-tokens reach the processors")
    func processorOptions() throws {
        let model = fixtures.appendingPathComponent("g1-tied").path
        let prompt = [5, 9, 12, 30]
        let plain = try Self.json(["--model", model, "--prompt-ids", "5,9,12,30", "--greedy", "--max-new-tokens", "24"])
        let output = try Self.json(["--model", model, "--prompt-ids", "5,9,12,30", "--greedy", "--max-new-tokens", "24",
                                    "--no-repeat-ngram-size", "2", "--min-new-tokens", "24"])
        let tokens = prompt + output.results[0].ids
        let bigrams = zip(tokens, tokens.dropFirst()).map { [$0, $1] }
        #expect(Set(bigrams).count == bigrams.count, "a bigram repeats: \(tokens)")
        #expect(output.results[0].ids.count == 24 && output.results[0].ids != plain.results[0].ids)
    }

    @Test("a generation_config.json that asks for beam search is refused by name, on one line")
    func unsupportedSetting() throws {
        let folder = scratchURL("beam-search-model")
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("g1-tied"), to: folder)
        try Data(#"{"num_beams": 4, "do_sample": false}"#.utf8).write(to: folder.appendingPathComponent("generation_config.json"))
        let result = try runMamba2(["generate", "--model", folder.path, "--prompt-ids", "1,2"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("num_beams = 4 selects") && result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }

    @Test("a seeded sample repeats; a saved state continues the uninterrupted run")
    func seedAndState() throws {
        let sampled = ["--prompt", "import os", "--max-new-tokens", "8", "--temperature", "0.8", "--seed", "5"]
        #expect(try Self.json(sampled).results[0].ids == (try Self.json(sampled)).results[0].ids)

        let whole = try Self.json(["--prompt", "class A:", "--greedy", "--max-new-tokens", "10"])
        let state = temporaryFile("state.safetensors")
        let first = try Self.json(["--prompt", "class A:", "--greedy", "--max-new-tokens", "4", "--save-state", state.path])
        let rest = try Self.json(["--load-state", state.path, "--greedy", "--max-new-tokens", "6"])
        #expect(first.results[0].ids + rest.results[0].ids == whole.results[0].ids)

        // A bf16 SSM state saves at little more than half the SSM bytes, and continues as its
        // uninterrupted run (the loaded state keeps bf16).
        let half = temporaryFile("half.safetensors")
        let halfWhole = try Self.json(["--prompt", "class A:", "--greedy", "--max-new-tokens", "10", "--state-dtype", "bfloat16"])
        let halfFirst = try Self.json(["--prompt", "class A:", "--greedy", "--max-new-tokens", "4", "--save-state", half.path, "--state-dtype", "bfloat16"])
        let halfRest = try Self.json(["--load-state", half.path, "--greedy", "--max-new-tokens", "6"])
        #expect(halfFirst.results[0].ids + halfRest.results[0].ids == halfWhole.results[0].ids)
        let sizes = try [state, half].map { try FileManager.default.attributesOfItem(atPath: $0.path)[.size] as! Int }
        #expect(sizes[1] < sizes[0] * 3 / 4, "\(sizes)")
    }

    @Test("invalid arguments and files give a one-line error", arguments: [
        (["--prompt", "a", "--temperature=-1"], "invalid generation setting 'temperature'"),
        (["--prompt", "a", "--top-p", "0"], "invalid generation setting 'top_p'"),
        (["--prompt", "a", "--no-repeat-ngram-size=-2"], "invalid generation setting 'no_repeat_ngram_size'"),
        (["--prompt", "a", "--greedy", "--temperature", "0.5"], "--greedy cannot be combined"),
        (["--prompt", "a", "--prompt-ids", "1"], "give --prompt or --prompt-ids, not both"),
        ([String](), "give --prompt, --prompt-ids or --load-state"),
        (["--prompt", ""], "a prompt must hold at least one token"),
        (["--load-state", "/nonexistent.state"], "/nonexistent.state: cannot open"),
        (["--prompt-ids", "1,99999"], "token id 99999 at row 0, position 1 is outside the vocabulary"),
        (["--model", "/nonexistent", "--prompt", "a"], "/nonexistent/config.json"),
        (["--prompt", "a", "--state-dtype", "float16"], "--state-dtype must be float32 or bfloat16, got float16"),
    ])
    func errors(arguments: [String], fragment: String) throws {
        let result = try runMamba2(["generate"] + arguments)
        #expect(result.status != 0)
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(result.stderr.contains(fragment), "\(result.stderr)")
    }
}
