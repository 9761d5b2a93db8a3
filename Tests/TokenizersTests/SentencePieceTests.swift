import Foundation
import Testing
@testable import Tokenizers

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
