import Foundation
import Generation
import Mamba2
import Tokenizers
import TestSupport

let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let modelFixtures = testsDirectory.appendingPathComponent("Fixtures/models")
let generationFixtures = testsDirectory.appendingPathComponent("Fixtures/generation")

/// One transformers `generate` golden (scripts/make_generation_goldens.py).
struct GenerationCase: Decodable {
    let name: String
    let input_ids: [[Int]]
    let attention_mask: [[Int]]?
    let max_new_tokens: Int
    let eos_token_id: Int?
    let pad_token_id: Int?
    let repetition_penalty: Float
    let new_tokens: [[Int]]
    let prompt: String?
    let text: String?

    var config: GenerationConfig {
        var config = GenerationConfig()
        config.maxNewTokens = max_new_tokens
        config.eosTokenIDs = eos_token_id.map { [$0] } ?? []
        config.padTokenID = pad_token_id
        config.repetitionPenalty = repetition_penalty
        return config
    }
}

func generationCases(_ name: String) throws -> [GenerationCase] {
    struct File: Decodable { let cases: [GenerationCase] }
    return try JSONDecoder().decode(File.self, from: Data(contentsOf: generationFixtures.appendingPathComponent("\(name).json"))).cases
}

/// The first `count` token ids of scripts/make_fixtures.py: a text the quality tests score.
func scriptTokenIDs(_ tokenizer: Tokenizer, count: Int) throws -> [Int] {
    let text = try String(contentsOf: testsDirectory.deletingLastPathComponent().appendingPathComponent("scripts/make_fixtures.py"), encoding: .utf8)
    return Array(try tokenizer.encode(text).ids.prefix(count))
}

func temporaryURL(_ name: String) -> URL {
    scratchURL(name)
}
