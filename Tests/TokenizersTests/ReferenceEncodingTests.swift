import Foundation
import Testing
@testable import Tokenizers

let tokenizerFixtures = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/tokenizers")

/// One line of a reference file made with HF `tokenizers`.
struct ReferenceEncoding: Decodable {
    let tokenizer: String
    let text: String
    let add_special_tokens: Bool
    let ids: [Int]
    let tokens: [String]
    let decoded: String
    let decoded_skip_special: String
}

func referenceEncodings(_ file: String) throws -> [ReferenceEncoding] {
    let text = try String(contentsOf: tokenizerFixtures.appendingPathComponent(file), encoding: .utf8)
    return try text.split(separator: "\n").map { try JSONDecoder().decode(ReferenceEncoding.self, from: Data($0.utf8)) }
}

/// Tokenizers are loaded once per name and shared by the tests.
actor TokenizerCache {
    static let shared = TokenizerCache()
    private var loaded: [String: Tokenizer] = [:]

    func tokenizer(_ name: String) throws -> Tokenizer {
        if let tokenizer = loaded[name] { return tokenizer }
        let tokenizer = try Tokenizer(url: tokenizerFixtures.appendingPathComponent(name))
        loaded[name] = tokenizer
        return tokenizer
    }
}

/// Byte-exact comparison (Swift `==` on String treats canonically equivalent text as equal).
func sameText(_ a: String, _ b: String) -> Bool { Array(a.utf8) == Array(b.utf8) }

@Suite("HF tokenizers reference encodings")
struct ReferenceEncodingTests {
    static let names = ["gpt-neox-20b", "gpt2", "mistral-v3", "mistral-v3-legacy"]

    /// shared/tokenizers' reference set (69 lines per tokenizer) and our extended set (415 per
    /// tokenizer, scripts/make_tokenizer_goldens.py).
    static let files = [("reference-encodings.jsonl", 69), ("extended-encodings.jsonl", 415)]

    @Test("ids, tokens and decodings equal HF tokenizers", arguments: names, files)
    func references(tokenizer name: String, file: (name: String, lines: Int)) async throws {
        let tokenizer = try await TokenizerCache.shared.tokenizer(name)
        let lines = try referenceEncodings(file.name).filter { $0.tokenizer == name }
        #expect(lines.count == file.lines)
        var failures = 0
        for line in lines {
            let encoding = try tokenizer.encode(line.text, addSpecialTokens: line.add_special_tokens)
            let tokensMatch = encoding.tokens.count == line.tokens.count && zip(encoding.tokens, line.tokens).allSatisfy(sameText)
            if encoding.ids != line.ids || !tokensMatch {
                failures += 1
                Issue.record("\(name) \(line.text.debugDescription): ids \(encoding.ids) expected \(line.ids); tokens \(encoding.tokens) expected \(line.tokens)")
            }
            let decoded = try tokenizer.decode(line.ids)
            let skipped = try tokenizer.decode(line.ids, skipSpecialTokens: true)
            #expect(sameText(decoded, line.decoded), "\(name) decode \(line.ids): \(decoded.debugDescription) expected \(line.decoded.debugDescription)")
            #expect(sameText(skipped, line.decoded_skip_special), "\(name) decode skipping specials \(line.ids): \(skipped.debugDescription)")
        }
        #expect(failures == 0)
    }

    @Test("streaming decode equals one-shot decode", arguments: names, files)
    func streaming(tokenizer name: String, file: (name: String, lines: Int)) async throws {
        let tokenizer = try await TokenizerCache.shared.tokenizer(name)
        for line in try referenceEncodings(file.name) where line.tokenizer == name {
            for skip in [false, true] {
                var stream = tokenizer.streamingDecoder(skipSpecialTokens: skip)
                var pieces: [String] = []
                for id in line.ids {
                    if let piece = try stream.step(id) {
                        #expect(!piece.unicodeScalars.contains("\u{FFFD}") || line.decoded.unicodeScalars.contains("\u{FFFD}"))
                        pieces.append(piece)
                    }
                }
                if let rest = try stream.finish() { pieces.append(rest) }
                let expected = skip ? line.decoded_skip_special : line.decoded
                #expect(sameText(pieces.joined(), expected), "\(name) \(line.text.debugDescription) skip \(skip): \(pieces)")
            }
        }
    }
}
