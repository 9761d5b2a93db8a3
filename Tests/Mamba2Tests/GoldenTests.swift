import Foundation
import Testing
import Mamba2
import Tensors

/// The reference forward against transformers 5.24's outputs, fixture by fixture.
@Suite("transformers goldens")
struct GoldenTests {
    static let tolerance: Float = 1e-4

    @Test("logits match transformers within 1e-4", arguments: Fixture.all)
    func logits(fixture name: String) throws {
        let fixture = try Fixture(name)
        let model = try fixture.model()
        for testCase in fixture.cases {
            guard let expected = testCase.logits else { continue }
            let output = try model(.tokenIDs(testCase.input_ids), attentionMask: testCase.attention_mask)
            let difference = Difference(output.logits, Tensor(expected))
            #expect(difference.max <= Self.tolerance, "\(name) \(testCase.name): \(difference)")
        }
    }

    @Test("hidden states follow transformers 5's convention", arguments: ["g1-tied", "g3-untied-bias", "g2-fp32"])
    func hiddenStates(fixture name: String) throws {
        let fixture = try Fixture(name)
        let model = try fixture.model()
        let testCase = fixture.case("single-len13")
        let expected = try #require(testCase.hidden_states)
        let output = try model(.tokenIDs(testCase.input_ids), outputHiddenStates: true)
        let hidden = try #require(output.hiddenStates)
        #expect(hidden.count == model.config.numHiddenLayers + 1)
        for (index, (ours, theirs)) in zip(hidden, expected).enumerated() {
            let difference = Difference(ours, Tensor(theirs))
            #expect(difference.max <= Self.tolerance, "\(name) hidden state \(index): \(difference)")
        }
    }

    @Test("loss from labels matches transformers", arguments: ["g1-tied", "g3-untied-bias"])
    func loss(fixture name: String) throws {
        let fixture = try Fixture(name)
        let testCase = fixture.case("labels-batch2-len8")
        let output = try fixture.model()(.tokenIDs(testCase.input_ids), labels: testCase.labels)
        let loss = try #require(output.loss)
        #expect(abs(loss - testCase.loss!) <= Self.tolerance, "\(name): loss \(loss) vs \(testCase.loss!)")
    }

    /// Half weights widened to fp32 reproduce transformers' fp32 run of the same rounded weights
    /// (checked above to 1e-4); against the unrounded fp32 weights they stay within what rounding
    /// costs: bf16 keeps 8 significant bits (≈ 0.045 here), fp16 11 (≈ 0.006).
    @Test("bf16 and fp16 weights stay within rounding distance of fp32", arguments: [("g2-bf16", Float(0.1)), ("g2-fp16", Float(0.015))])
    func halfWeights(fixture name: String, tolerance: Float) throws {
        let fixture = try Fixture(name)
        let model = try fixture.model()
        for testCase in fixture.cases {
            guard let reference = testCase.logits_fp32_weights else { continue }
            let output = try model(.tokenIDs(testCase.input_ids), attentionMask: testCase.attention_mask)
            let difference = Difference(output.logits, Tensor(reference))
            #expect(difference.max <= tolerance, "\(name) \(testCase.name): \(difference)")
        }
    }
}
