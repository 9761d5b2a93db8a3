import Foundation
import Testing
import Mamba2
import Tensors

/// The reference forward against transformers 5.24's outputs, fixture by fixture.
@Suite("transformers goldens")
struct GoldenTests {
    static let tolerance: Float = 1e-4

    @Test("logits match transformers within 1e-4", arguments: Fixture.all, ForwardPath.allCases)
    func logits(fixture name: String, path: ForwardPath) throws {
        let fixture = try Fixture(name)
        let model = try fixture.model()
        for testCase in fixture.cases {
            guard let expected = testCase.logits else { continue }
            let output = try model(.tokenIDs(testCase.input_ids), attentionMask: testCase.attention_mask, path: path)
            let difference = Difference(output.logits, Tensor(expected))
            #expect(difference.max <= Self.tolerance, "\(name) \(testCase.name) \(path): \(difference)")
        }
    }

    @Test("hidden states follow transformers 5's convention", arguments: ["g1-tied", "g3-untied-bias", "g2-fp32"], ForwardPath.allCases)
    func hiddenStates(fixture name: String, path: ForwardPath) throws {
        let fixture = try Fixture(name)
        let model = try fixture.model()
        let testCase = fixture.case("single-len13")
        let expected = try #require(testCase.hidden_states)
        let output = try model(.tokenIDs(testCase.input_ids), outputHiddenStates: true, path: path)
        let hidden = try #require(output.hiddenStates)
        #expect(hidden.count == model.config.numHiddenLayers + 1)
        for (index, (ours, theirs)) in zip(hidden, expected).enumerated() {
            let difference = Difference(ours, Tensor(theirs))
            #expect(difference.max <= Self.tolerance, "\(name) hidden state \(index): \(difference)")
        }
    }

    @Test("loss from labels matches transformers", arguments: ["g1-tied", "g3-untied-bias"], ForwardPath.allCases)
    func loss(fixture name: String, path: ForwardPath) throws {
        let fixture = try Fixture(name)
        let testCase = fixture.case("labels-batch2-len8")
        let output = try fixture.model()(.tokenIDs(testCase.input_ids), labels: testCase.labels, path: path)
        let loss = try #require(output.loss)
        #expect(abs(loss - testCase.loss!) <= Self.tolerance, "\(name): loss \(loss) vs \(testCase.loss!)")
    }

    /// Half weights widened to fp32 reproduce transformers' fp32 run of the same rounded weights
    /// (checked above to 1e-4); against the unrounded fp32 weights they stay within what rounding
    /// costs: bf16 keeps 8 significant bits (≈ 0.045 here), fp16 11 (≈ 0.006).
    @Test("bf16 and fp16 weights stay within rounding distance of fp32", arguments: [("g2-bf16", Float(0.1)), ("g2-fp16", Float(0.015))])
    func halfWeights(fixture name: String, tolerance: Float) throws {
        for path in ForwardPath.allCases { try halfWeights(name, tolerance: tolerance, path: path) }
    }

    func halfWeights(_ name: String, tolerance: Float, path: ForwardPath) throws {
        let fixture = try Fixture(name)
        let model = try fixture.model()
        for testCase in fixture.cases {
            guard let reference = testCase.logits_fp32_weights else { continue }
            let output = try model(.tokenIDs(testCase.input_ids), attentionMask: testCase.attention_mask, path: path)
            let difference = Difference(output.logits, Tensor(reference))
            #expect(difference.max <= tolerance, "\(name) \(testCase.name): \(difference)")
        }
    }

    @Test("the fast path equals the reference path: full, batched and cached", arguments: Fixture.all)
    func fastEqualsReference(fixture name: String) throws {
        let fixture = try Fixture(name)
        let model = try fixture.model()
        for testCase in fixture.cases {
            let reference = try model(.tokenIDs(testCase.input_ids), attentionMask: testCase.attention_mask, useCache: true, path: .reference)
            let fast = try model(.tokenIDs(testCase.input_ids), attentionMask: testCase.attention_mask, useCache: true, path: .fast)
            #expect(Difference(fast.logits, reference.logits).max <= Self.tolerance, "\(name) \(testCase.name)")
            for (ours, theirs) in zip(fast.state!.layers, reference.state!.layers) {
                #expect(Difference(ours.ssm, theirs.ssm).max <= 1e-5 && Difference(ours.conv, theirs.conv).max <= 1e-5)
            }
            let rows = testCase.input_ids.count
            let next = [[Int]](repeating: [1], count: rows)
            let referenceStep = try model(.tokenIDs(next), state: reference.state, path: .reference)
            let fastStep = try model(.tokenIDs(next), state: fast.state, path: .fast)
            #expect(Difference(fastStep.logits, referenceStep.logits).max <= Self.tolerance, "\(name) \(testCase.name) step")
        }
    }
}
