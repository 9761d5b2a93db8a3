import Foundation
import Testing
@testable import Tokenizers
import TestSupport

/// Malformed files and bad input give errors that name the file, the JSON path or the id.
@Suite("tokenizer errors")
struct TokenizerErrorTests {
    static let minimal = #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}"#

    static func load(_ json: String, file: String = "test/tokenizer.json") throws -> Tokenizer {
        try Tokenizer(bytes: Array(json.utf8), file: file)
    }

    @Test("a minimal BPE tokenizer encodes and decodes")
    func minimal() throws {
        let tokenizer = try Self.load(Self.minimal)
        #expect(try tokenizer.encode("abab").ids == [2, 2])
        #expect(try tokenizer.decode([2, 0]) == "ab a")  // no decoder: tokens joined by spaces
    }

    @Test("malformed JSON names the file and the byte offset", arguments: [
        ("{\"model\": ", 10, "unexpected end of input"),
        ("{\"model\": {}} x", 14, "unexpected data after the top-level value"),
        ("{\"model\": [1,]}", 13, "invalid value"),
        ("{\"a\": \"\\q\"}", 7, "invalid escape"),
        ("{'a': 1}", 1, "expected a string key"),
    ])
    func malformed(json: String, offset: Int, reason: String) {
        #expect(throws: TokenizerError.malformedJSON(file: "test/tokenizer.json", offset: offset, reason: reason)) { try Self.load(json) }
    }

    @Test("unknown types are named with their JSON path")
    func unknownTypes() {
        #expect(throws: TokenizerError.unknownType(file: "test/tokenizer.json", path: "model", type: "WordPiece")) {
            try Self.load(#"{"model": {"type": "WordPiece", "vocab": {}}}"#)
        }
        let cases: [(String, String, String)] = [
            ("normalizer", #"{"type": "Precompiled"}"#, "Precompiled"),
            ("pre_tokenizer", #"{"type": "UnicodeScripts"}"#, "UnicodeScripts"),
            ("post_processor", #"{"type": "Magic"}"#, "Magic"),
            ("decoder", #"{"type": "CTC"}"#, "CTC"),
        ]
        for (field, value, type) in cases {
            let json = Self.minimal.dropLast() + ", \"\(field)\": \(value)}"
            #expect(throws: TokenizerError.unknownType(file: "test/tokenizer.json", path: field, type: type)) { try Self.load(String(json)) }
        }
        let nested = Self.minimal.dropLast() + #", "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}, {"type": "Nope"}]}}"#
        #expect(throws: TokenizerError.unknownType(file: "test/tokenizer.json", path: "pre_tokenizer.pretokenizers[1]", type: "Nope")) {
            try Self.load(String(nested))
        }
    }

    @Test("missing or mistyped fields are named")
    func badFields() {
        #expect(throws: TokenizerError.invalidField(file: "test/tokenizer.json", path: "model", reason: "missing")) { try Self.load("{}") }
        #expect(throws: TokenizerError.invalidField(file: "test/tokenizer.json", path: "model.vocab[\"a\"]", reason: "expected an integer")) {
            try Self.load(#"{"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}}"#)
        }
        #expect(throws: TokenizerError.invalidField(file: "test/tokenizer.json", path: "model.merges[0]", reason: "merge of tokens missing from the vocabulary: \"a\" \"c\"")) {
            try Self.load(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a c"]}}"#)
        }
        #expect(throws: TokenizerError.invalidField(file: "test/tokenizer.json", path: "model.unk_token", reason: "\"<unk>\" is not in the vocabulary")) {
            try Self.load(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"}}"#)
        }
        #expect(throws: TokenizerError.invalidField(file: "test/tokenizer.json", path: "pre_tokenizer.behavior", reason: "unknown split behavior \"Sideways\"")) {
            try Self.load(String(Self.minimal.dropLast() + #", "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways"}}"#))
        }
        #expect(throws: TokenizerError.invalidField(file: "test/tokenizer.json", path: "normalizer.pattern", reason: "invalid regular expression \"(\"")) {
            try Self.load(String(Self.minimal.dropLast() + #", "normalizer": {"type": "Replace", "pattern": {"Regex": "("}, "content": ""}}"#))
        }
        #expect(throws: TokenizerError.invalidField(file: "test/tokenizer.json", path: "added_tokens[0].id", reason: "missing")) {
            try Self.load(String(Self.minimal.dropLast() + #", "added_tokens": [{"content": "<x>"}]}"#))
        }
    }

    @Test("ids outside the vocabulary are errors on decode")
    func badIDs() throws {
        let tokenizer = try Self.load(Self.minimal)
        #expect(throws: TokenizerError.idOutOfRange(id: 3, vocabularySize: 3)) { try tokenizer.decode([0, 3]) }
        #expect(throws: TokenizerError.idOutOfRange(id: -1, vocabularySize: 3)) { try tokenizer.decode([-1]) }
        var stream = tokenizer.streamingDecoder()
        #expect(throws: TokenizerError.idOutOfRange(id: 99, vocabularySize: 3)) { try stream.step(99) }
    }

    @Test("text the vocabulary cannot represent is an error, not garbage")
    func unrepresentable() throws {
        let tokenizer = try Self.load(Self.minimal)
        #expect(throws: TokenizerError.unrepresentable(text: "c")) { try tokenizer.encode("abc") }
    }

    @Test("a missing file or folder is named")
    func missingFiles() {
        #expect(throws: TokenizerError.cannotRead(file: "/nonexistent/tok", reason: "no such file or folder")) {
            try Tokenizer(url: URL(fileURLWithPath: "/nonexistent/tok"))
        }
    }

    @Test("a malformed tokenizer_config.json is named")
    func badConfig() throws {
        let directory = scratchURL("tokenizer")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data(Self.minimal.utf8).write(to: directory.appendingPathComponent("tokenizer.json"))
        let config = directory.appendingPathComponent("tokenizer_config.json")
        try Data(#"{"padding_side": "middle"}"#.utf8).write(to: config)
        #expect(throws: TokenizerError.invalidField(file: config.path, path: "padding_side", reason: "expected \"left\" or \"right\", got \"middle\"")) {
            try Tokenizer(url: directory)
        }
        try Data(#"{"add_bos_token": true, "bos_token": "<s>"}"#.utf8).write(to: config)
        #expect(throws: TokenizerError.invalidField(file: config.path, path: "bos_token", reason: "set, but its token \"<s>\" is not in the vocabulary")) {
            try Tokenizer(url: directory)
        }
    }
}

@Suite("tokenizer API")
struct TokenizerAPITests {
    @Test("batches are left-padded with the pad token and masked")
    func batchPadding() async throws {
        let tokenizer = try await TokenizerCache.shared.tokenizer("mistral-v3")
        #expect(tokenizer.padTokenID == nil)
        let withoutPad = try tokenizer(["a"])
        #expect(withoutPad.inputIDs == [[1, 1032]])
        #expect(throws: TokenizerError.invalidArgument("padding needs a pad token, and this tokenizer has none")) { try tokenizer(["a", "hello world"]) }

        let neox = try await TokenizerCache.shared.tokenizer("gpt-neox-20b")
        var config = TokenizerConfig()
        config.padToken = "<|padding|>"
        let padded = try Tokenizer(bytes: Tokenizer.read(tokenizerFixtures.appendingPathComponent("gpt-neox-20b/tokenizer.json")), config: config)
        let batch = try padded(["Hello world", "Hi"], addSpecialTokens: false)
        #expect(batch.inputIDs == [[12092, 1533], [1, 12764]])
        #expect(batch.attentionMask == [[1, 1], [0, 1]])
        let right = try padded(["Hello world", "Hi"], addSpecialTokens: false, padding: .right)
        #expect(right.inputIDs == [[12092, 1533], [12764, 1]])
        #expect(right.attentionMask == [[1, 1], [1, 0]])
        #expect(neox.vocabularySize == 50277)
    }

    @Test("special tokens and config come from tokenizer_config.json")
    func config() async throws {
        let tokenizer = try await TokenizerCache.shared.tokenizer("mistral-v3")
        #expect(tokenizer.bosTokenID == 1 && tokenizer.eosTokenID == 2 && tokenizer.unknownTokenID == 0)
        #expect(tokenizer.config.addBOSToken == true && tokenizer.config.addEOSToken == false)
        #expect(tokenizer.isSpecial(3) && !tokenizer.isSpecial(1032))
        #expect(try tokenizer.encode("Hi", addSpecialTokens: true).ids.first == 1)
        #expect(try tokenizer.encode("Hi", addSpecialTokens: false).ids.first != 1)
    }

    @Test("a streamed byte-fallback emoji arrives whole")
    func streamingHoldsIncompleteCharacters() async throws {
        let tokenizer = try await TokenizerCache.shared.tokenizer("mistral-v3")
        let ids = try tokenizer.encode("a🦙b", addSpecialTokens: false).ids
        var stream = tokenizer.streamingDecoder()
        var pieces: [String?] = []
        for id in ids { pieces.append(try stream.step(id)) }
        #expect(pieces.contains { $0 == nil }, "the emoji's bytes are held back until complete: \(pieces)")
        #expect(pieces.compactMap { $0 }.joined() == "a🦙b")
        #expect(!pieces.compactMap { $0 }.contains { $0.contains("\u{FFFD}") })
    }
}

@Suite("tokenizer edge cases from review")
struct TokenizerEdgeCaseTests {
    static func load(_ json: String) throws -> Tokenizer {
        try Tokenizer(bytes: Array(json.utf8), file: "test/tokenizer.json")
    }

    @Test("a rejected single_word match is skipped whole, as tokenizers' leftmost iterator does")
    func singleWordSkip() throws {
        let tokenizer = try Self.load(#"""
            {"model": {"type": "BPE", "vocab": {"x": 0, "a": 1, "b": 2, "ab": 3, " ": 6}, "merges": []},
             "added_tokens": [{"id": 4, "content": "AB", "single_word": true, "normalized": false},
                              {"id": 5, "content": "B", "normalized": false}]}
            """#)
        // "AB" is glued to "x", so it is rejected, and "B" inside it is not matched either.
        #expect(throws: TokenizerError.unrepresentable(text: "A")) { try tokenizer.encode("xAB") }
        #expect(try tokenizer.encode("x AB").ids == [0, 6, 4])
    }

    @Test("a repeated merge takes its last rank")
    func duplicateMerges() throws {
        let tokenizer = try Self.load(#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4}, "merges": ["a b", "b c", "a b"]}}"#)
        #expect(try tokenizer.encode("abc").ids == [0, 4])
    }

    @Test("hostile numbers in tokenizer files are refused, not trapped on")
    func hostileNumbers() throws {
        #expect(throws: TokenizerError.self) { try Self.load(#"{"model": {"type": "BPE", "vocab": {"a": 2147483646}, "merges": []}}"#) }
        #expect(throws: TokenizerError.invalidField(file: "test/tokenizer.json", path: "decoder", reason: "start and stop must be ≥ 0")) {
            try Self.load(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "decoder": {"type": "Strip", "content": " ", "start": -1, "stop": 0}}"#)
        }
        let directory = scratchURL("tokenizer")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}"#.utf8).write(to: directory.appendingPathComponent("tokenizer.json"))
        try Data(#"{"model_max_length": -1e300}"#.utf8).write(to: directory.appendingPathComponent("tokenizer_config.json"))
        #expect(try Tokenizer(url: directory).config.modelMaxLength == nil)
    }

    @Test("unknown ids can be skipped where a model's padded vocabulary meets its tokenizer")
    func skipUnknown() throws {
        let tokenizer = try Self.load(#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}}"#)
        #expect(try tokenizer.decode([0, 7, 1], skipUnknownIDs: true) == "a b")
        var stream = tokenizer.streamingDecoder(skipUnknownIDs: true)
        #expect(try stream.step(7) == nil)
        #expect(try stream.step(0) == "a")
    }
}
