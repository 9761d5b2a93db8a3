import ArgumentParser
import Foundation
import SafeTensors
import Tokenizers

/// `mamba2 tokenize`: text → ids → text with a Hugging Face tokenizer (the contract other
/// checks drive).
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode text or decode ids with a Hugging Face tokenizer.json or a SentencePiece BPE model.",
        discussion: """
            --text TEXT              prints {"ids": [...], "tokens": [...]}
            --jsonl IN.jsonl         reads {"text": ..., "add_special_tokens": bool} lines and prints
                                     {"ids": [...], "tokens": [...], "decoded": ...} for each
            --decode 1,2,3           prints {"text": ...}
            """)

    @Option(help: "A tokenizer folder, tokenizer.json, or SentencePiece tokenizer.model(.v3) file.")
    var tokenizer: String

    @Option(help: "Text to encode.")
    var text: String?

    @Option(help: "A JSON-lines file of {\"text\": ..., \"add_special_tokens\": bool} to encode.")
    var jsonl: String?

    @Option(help: "Comma-separated ids to decode.")
    var decode: String?

    @Flag(help: "Add the tokenizer's special tokens (BOS/EOS) when encoding --text.")
    var addSpecialTokens = false

    @Flag(help: "Leave special tokens out when decoding.")
    var skipSpecialTokens = false

    func validate() throws {
        guard [text != nil, jsonl != nil, decode != nil].filter({ $0 }).count == 1 else {
            throw CLIError("give exactly one of --text, --jsonl and --decode")
        }
    }

    func run() throws {
        let tokenizer = try Tokenizers.Tokenizer(url: URL(fileURLWithPath: self.tokenizer))
        if let text {
            let encoding = try tokenizer.encode(text, addSpecialTokens: addSpecialTokens)
            print(try JSONLine.encode(["ids": .ints(encoding.ids), "tokens": .strings(encoding.tokens)]))
        } else if let decode {
            let ids = try parseIntegerList(decode, option: "--decode")
            print(try JSONLine.encode(["text": .string(try tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens))]))
        } else if let jsonl {
            let url = URL(fileURLWithPath: jsonl)
            guard let content = try? String(contentsOf: url, encoding: .utf8) else {
                throw CLIError("\(jsonl): cannot read as UTF-8 text")
            }
            var out = ""
            for (number, line) in content.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
                let request: Request
                do {
                    request = try JSONDecoder().decode(Request.self, from: Data(line.utf8))
                } catch {
                    throw CLIError("\(jsonl):\(number + 1): expected {\"text\": string, \"add_special_tokens\": bool}")
                }
                let encoding = try tokenizer.encode(request.text, addSpecialTokens: request.add_special_tokens ?? false)
                let decoded = try tokenizer.decode(encoding.ids)
                out += try JSONLine.encode(["ids": .ints(encoding.ids), "tokens": .strings(encoding.tokens), "decoded": .string(decoded)]) + "\n"
            }
            FileHandle.standardOutput.write(Data(out.utf8))
        }
    }

    private struct Request: Decodable {
        let text: String
        let add_special_tokens: Bool?
    }
}

/// One-line JSON output with keys in a fixed order and text written exactly (no escaping of
/// "/" and no Unicode normalization).
enum JSONLine {
    enum Value {
        case ints([Int])
        case strings([String])
        case string(String)
        case double(Double)
        case int(Int)
        case raw(String)
    }

    static func encode(_ fields: KeyValuePairs<String, Value>) throws -> String {
        try encode(fields.map { ($0.key, $0.value) })
    }

    static func encode(_ fields: [(String, Value)]) throws -> String {
        let body = fields.map { key, value in "\(string(key)): \(encode(value))" }
        return "{" + body.joined(separator: ", ") + "}"
    }

    static func encode(_ value: Value) -> String {
        switch value {
        case let .ints(values): "[" + values.map(String.init).joined(separator: ", ") + "]"
        case let .strings(values): "[" + values.map(string).joined(separator: ", ") + "]"
        case let .string(text): string(text)
        case let .double(number): number.isFinite ? "\(number)" : "null"
        case let .int(number): "\(number)"
        case let .raw(json): json
        }
    }

    static func string(_ text: String) -> String {
        SafeTensorsWriter.jsonString(text)
    }
}
