import Foundation
import Testing

let tokenizerFixtures = fixtures.deletingLastPathComponent().appendingPathComponent("tokenizers")

@Suite("mamba2 tokenize")
struct TokenizeCommandTests {
    @Test("--text prints ids and tokens")
    func text() throws {
        let result = try runMamba2(["tokenize", "--tokenizer", tokenizerFixtures.appendingPathComponent("mistral-v3").path, "--text", "Hello [INST] world", "--add-special-tokens"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == #"{"ids": [1, 23325, 29473, 3, 2294], "tokens": ["<s>", "▁Hello", "▁", "[INST]", "▁world"]}"# + "\n")
    }

    @Test("--decode prints the text, with or without special tokens")
    func decode() throws {
        let path = tokenizerFixtures.appendingPathComponent("mistral-v3").path
        let kept = try runMamba2(["tokenize", "--tokenizer", path, "--decode", "1,23325,2294"])
        #expect(kept.stdout == #"{"text": "<s> Hello world"}"# + "\n")
        let skipped = try runMamba2(["tokenize", "--tokenizer", path, "--decode", "1,23325,2294", "--skip-special-tokens"])
        #expect(skipped.stdout == #"{"text": "Hello world"}"# + "\n")
    }

    @Test("--jsonl encodes every line as HF tokenizers does")
    func jsonl() throws {
        let references = try String(contentsOf: tokenizerFixtures.appendingPathComponent("reference-encodings.jsonl"), encoding: .utf8)
            .split(separator: "\n").filter { $0.contains(#""tokenizer": "gpt-neox-20b""#) }
        struct Line: Decodable { let text: String; let add_special_tokens: Bool; let ids: [Int]; let tokens: [String]; let decoded: String }
        let lines = try references.map { try JSONDecoder().decode(Line.self, from: Data($0.utf8)) }
        let input = temporaryFile("in.jsonl")
        let requests = try lines.map { line -> String in
            let data = try JSONSerialization.data(withJSONObject: ["text": line.text, "add_special_tokens": line.add_special_tokens])
            return String(decoding: data, as: UTF8.self)
        }
        try Data(requests.joined(separator: "\n").utf8).write(to: input)
        let result = try runMamba2(["tokenize", "--tokenizer", tokenizerFixtures.appendingPathComponent("gpt-neox-20b").path, "--jsonl", input.path])
        #expect(result.status == 0, "\(result.stderr)")
        let outputs = result.stdout.split(separator: "\n")
        #expect(outputs.count == lines.count)
        for (output, line) in zip(outputs, lines) {
            let object = try JSONSerialization.jsonObject(with: Data(output.utf8)) as! [String: Any]
            #expect(object["ids"] as? [Int] == line.ids, "\(line.text.debugDescription)")
            #expect((object["tokens"] as? [String]).map { $0.map { Array($0.utf8) } } == line.tokens.map { Array($0.utf8) })
            #expect((object["decoded"] as? String).map { Array($0.utf8) } == Array(line.decoded.utf8))
        }
    }

    @Test("bad input gives a one-line error", arguments: [
        (["--text", "a", "--decode", "1"], "give exactly one of --text, --jsonl and --decode"),
        (["--decode", "1,x"], "--decode '1,x' must be a comma-separated list of integers"),
        (["--decode", "99999999"], "token id 99999999 is outside the vocabulary [0, 32768)"),
        (["--jsonl", "/nonexistent.jsonl"], "/nonexistent.jsonl: cannot read as UTF-8 text"),
    ])
    func errors(arguments: [String], fragment: String) throws {
        let result = try runMamba2(["tokenize", "--tokenizer", tokenizerFixtures.appendingPathComponent("mistral-v3").path] + arguments)
        #expect(result.status != 0)
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(result.stderr.contains(fragment), "\(result.stderr)")
    }

    @Test("an unknown tokenizer type is named")
    func unknownType() throws {
        let file = temporaryFile("tokenizer.json")
        try Data(#"{"model": {"type": "Unigram", "vocab": []}}"#.utf8).write(to: file)
        let result = try runMamba2(["tokenize", "--tokenizer", file.path, "--text", "a"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("model: unknown type \"Unigram\""), "\(result.stderr)")
    }
}
