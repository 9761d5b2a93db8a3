import Foundation
import Testing
@testable import Tokenizers
import TestSupport

@Suite("SentencePiece models")
struct SentencePieceTests {
    static let modelFile = tokenizerFixtures.appendingPathComponent("mistral-v3-sentencepiece/tokenizer.model.v3")

    @Test("Mistral's tokenizer.model.v3 reads as transformers converts it: vocabulary, merges, added tokens")
    func conversionMatchesTransformers() throws {
        let model = try SentencePieceModel(url: Self.modelFile)
        #expect(model.pieces.count == 32768 && model.modelType == 2 && model.byteFallback)
        #expect((model.unknownID, model.bosID, model.eosID) == (0, 1, 2))
        let converted = try Tokenizer(url: tokenizerFixtures.appendingPathComponent("mistral-v3"))
        let native = try Tokenizer(sentencePieceModel: Self.modelFile)
        // 58,980 merges, in transformers' order (score, then the parts' lengths).
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: tokenizerFixtures.appendingPathComponent("mistral-v3/tokenizer.json"))) as! [String: Any]
        let expectedMerges = ((expected["model"] as! [String: Any])["merges"] as! [String]).map { $0.split(separator: " ", omittingEmptySubsequences: false).map(String.init) }
        let merges = model.merges()
        #expect(merges.count == expectedMerges.count)
        let firstDifference = merges.indices.first { index in
            index >= expectedMerges.count || !(sameText(merges[index].left, expectedMerges[index][0]) && sameText(merges[index].right, expectedMerges[index][1]))
        }
        #expect(firstDifference == nil, "first different merge at \(firstDifference ?? -1)")
        #expect(native.vocabularySize == converted.vocabularySize)
        for id in 0..<converted.vocabularySize {
            guard let token = converted.token(for: id), let same = native.token(for: id), sameText(token, same) else {
                Issue.record("token \(id): \(converted.token(for: id).debugDescription) vs \(native.token(for: id).debugDescription)")
                break
            }
        }
        #expect(native.addedTokens == converted.addedTokens)
        #expect(native.addedTokens.count == 771 && native.addedTokens.filter(\.special).count == 751)
        #expect(native.bosTokenID == 1 && native.eosTokenID == 2 && native.unknownTokenID == 0)
    }

    @Test("the reference encodings of the converted tokenizer.json, from the model file", arguments: [("mistral-v3", false), ("mistral-v3-legacy", true)])
    func encodings(name: String, legacy: Bool) throws {
        let tokenizer = try Tokenizer(sentencePieceModel: Self.modelFile, legacy: legacy)
        var failures = 0
        for file in ["reference-encodings.jsonl", "extended-encodings.jsonl"] {
            for line in try referenceEncodings(file) where line.tokenizer == name {
                let encoding = try tokenizer.encode(line.text, addSpecialTokens: line.add_special_tokens)
                if encoding.ids != line.ids { failures += 1 }
                #expect(encoding.ids == line.ids, "\(name) \(line.text.debugDescription)")
                #expect(sameText(try tokenizer.decode(line.ids, skipSpecialTokens: true), line.decoded_skip_special))
            }
        }
        #expect(failures == 0)
        // A folder with only the model file loads it.
        let folder = try Tokenizer(url: Self.modelFile.deletingLastPathComponent())
        #expect(try folder.encode("def main():").ids == (try tokenizer.encode("def main():").ids) || legacy)
    }

    @Test("truncated, garbled and non-BPE model files are named errors")
    func malformed() throws {
        let bytes = Array(try Data(contentsOf: Self.modelFile))
        func error(_ data: [UInt8]) -> String {
            do {
                _ = try SentencePieceModel(bytes: data, file: "m.model")
                return "read"
            } catch {
                return "\(error)"
            }
        }
        #expect(error(Array(bytes.prefix(1000))).hasPrefix("m.model: malformed SentencePiece model at byte"))
        #expect(error([0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).contains("varint longer than 10 bytes"))
        #expect(error([0x0F]).contains("unsupported wire type 7"))
        #expect(error([]) == "m.model: pieces: the model has no pieces")
        // One piece "a" and trainer_spec.model_type = 1 (unigram).
        let unigram: [UInt8] = [0x0A, 0x03, 0x0A, 0x01, 0x61, 0x12, 0x02, 0x18, 0x01]
        #expect(error(unigram).contains("unigram (only BPE SentencePiece models are supported)"))
        // BPE, but a bos_id past the pieces.
        let badID: [UInt8] = [0x0A, 0x03, 0x0A, 0x01, 0x61, 0x12, 0x05, 0x18, 0x02, 0xC8, 0x02, 0x07]
        #expect(error(badID).contains("trainer_spec.bos_id: 7 is not a piece id"))
        let badUTF8: [UInt8] = [0x0A, 0x03, 0x0A, 0x01, 0xFF]
        #expect(error(badUTF8).contains("pieces[0].piece: not valid UTF-8"))
    }
}

@Suite("SentencePiece models built by hand")
struct HandMadeSentencePieceTests {
    /// A ModelProto with `pieces` (piece, score, type) and a BPE trainer spec.
    static func model(_ pieces: [(String, Float, Int)], bosID: Int? = nil) -> [UInt8] {
        func varint(_ value: UInt64) -> [UInt8] {
            var value = value
            var out: [UInt8] = []
            repeat {
                out.append(UInt8(value & 0x7F) | (value > 0x7F ? 0x80 : 0))
                value >>= 7
            } while value > 0
            return out
        }
        func field(_ number: Int, _ payload: [UInt8]) -> [UInt8] { varint(UInt64(number << 3 | 2)) + varint(UInt64(payload.count)) + payload }
        var bytes: [UInt8] = []
        for (piece, score, type) in pieces {
            let scoreBytes = withUnsafeBytes(of: score.bitPattern.littleEndian, Array.init)
            bytes += field(1, field(1, Array(piece.utf8)) + [0x15] + scoreBytes + [0x18] + varint(UInt64(type)))
        }
        var spec: [UInt8] = [0x18, 0x02]  // model_type BPE
        if let bosID { spec += [0xC8, 0x02] + varint(UInt64(bitPattern: Int64(bosID))) }
        return bytes + field(2, spec)
    }

    static let pieces: [(String, Float, Int)] = [
        ("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3), ("▁", -1, 1), ("a", -2, 1), ("b", -3, 1), ("\"q\\\u{1}", -4, 1),
        ("▁a", -5, 1), ("ab", -6, 1), ("▁ab", -7, 1), ("[X]", 0, 4),
    ]

    func tokenizer(_ bytes: [UInt8]) throws -> Tokenizer {
        let url = scratchURL("sp.model")
        try Data(bytes).write(to: url)
        return try Tokenizer(url: url)
    }

    @Test("a small BPE model: merges by score, quotes and control characters survive, user-defined pieces are plain added tokens")
    func small() throws {
        let tokenizer = try tokenizer(Self.model(Self.pieces))
        #expect(try tokenizer.encode("ab").ids == [1, 9])
        #expect(try tokenizer.encode("ab [X]b").ids == [1, 9, 3, 10, 5])
        #expect(tokenizer.token(for: 6) == "\"q\\\u{1}" && tokenizer.id(for: "\"q\\\u{1}") == 6)
        #expect(tokenizer.addedTokens.map(\.id) == [0, 1, 2, 10] && tokenizer.addedTokens.map(\.special) == [true, true, true, false])
        #expect(try tokenizer.decode([1, 9, 3, 10, 5], skipSpecialTokens: true) == "ab [X]b")
        // Without a BOS piece there is no template.
        #expect(try self.tokenizer(Self.model(Self.pieces, bosID: -1)).encode("ab").ids == [9])
    }

    @Test("duplicate, overlong and non-message pieces are named errors")
    func errors() throws {
        func message(_ bytes: [UInt8]) -> String {
            do {
                _ = try SentencePieceModel(bytes: bytes, file: "m.model")
                return "read"
            } catch {
                return "\(error)"
            }
        }
        #expect(message(Self.model(Self.pieces + [("ab", -8, 1)])).contains("pieces[11].piece: \"ab\" appears twice"))
        // "é" precomposed and decomposed are different pieces.
        #expect(message(Self.model(Self.pieces + [("\u{E9}", -8, 1), ("e\u{301}", -9, 1)])) == "read")
        #expect(message(Self.model(Self.pieces + [(String(repeating: "x", count: 1025), -8, 1)])).contains("1025 bytes long (at most 1024)"))
        #expect(message([0x08, 0x01]) == "m.model: pieces: not a message")
    }
}
