import Foundation
import Testing
@testable import Tokenizers

/// Small tokenizers that exercise every normalizer, pre-tokenizer, post-processor, decoder and
/// added-token option, against HF `tokenizers` (scripts/make_tokenizer_component_goldens.py).
@Suite("tokenizer components against HF tokenizers")
struct ComponentTests {
    static let names = ["bert-like", "nfkc-whitespace-digits", "split-behaviours", "metaspace-always", "prepend-replace", "bytelevel-prefix-split"]

    @Test("encodings and decodings equal HF tokenizers", arguments: names)
    func components(name: String) throws {
        let tokenizer = try Tokenizer(url: tokenizerFixtures.appendingPathComponent("components/\(name).json"))
        let lines = try referenceEncodings("components/expected.jsonl").filter { $0.tokenizer == name }
        #expect(lines.count == 40)
        for line in lines {
            let encoding = try tokenizer.encode(line.text, addSpecialTokens: line.add_special_tokens)
            #expect(encoding.ids == line.ids, "\(name) \(line.text.debugDescription) special \(line.add_special_tokens): \(encoding.tokens) expected \(line.tokens)")
            #expect(encoding.tokens.count == line.tokens.count && zip(encoding.tokens, line.tokens).allSatisfy(sameText))
            let decoded = try tokenizer.decode(line.ids)
            #expect(sameText(decoded, line.decoded), "\(name) decode \(line.tokens): \(decoded.debugDescription) expected \(line.decoded.debugDescription)")
            #expect(sameText(try tokenizer.decode(line.ids, skipSpecialTokens: true), line.decoded_skip_special), "\(name) decode skipping specials \(line.tokens)")
        }
    }
}
