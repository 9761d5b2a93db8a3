import Foundation
import Testing
import Tensors
@testable import Mamba2

/// Properties that tie the forward paths together: cached decoding, continuation, padding, the
/// two scan forms and the input forms.
@Suite("state, batches and scans")
struct StateAndBatchTests {
    static let tolerance: Float = 1e-4
    static let models = ["g1-tied", "g3-untied-bias", "g2-fp32"]
    static let paths = ForwardPath.allCases

    @Test("prefill of any length then single-token steps equals one full forward", arguments: models, paths)
    func decodeFromEverySplit(fixture name: String, path: ForwardPath) throws {
        let fixture = try Fixture(name)
        let model = try fixture.model()
        let ids = fixture.case("single-len13").input_ids
        let full = try model(.tokenIDs(ids), path: path).logits
        for split in 0...ids[0].count {
            var state = Mamba2State(config: model.config, batchSize: 1)
            var pieces: [Tensor] = []
            if split > 0 {
                let prefill = try model(.tokenIDs([Array(ids[0][0..<split])]), state: state, path: path)
                state = try #require(prefill.state)
                pieces.append(prefill.logits)
            }
            for position in split..<ids[0].count {
                let step = try model(.tokenIDs([[ids[0][position]]]), state: state, path: path)
                state = try #require(step.state)
                pieces.append(step.logits)
            }
            let difference = Difference(concatenatePositions(pieces), full)
            #expect(difference.max <= Self.tolerance, "\(name) \(path) split \(split): \(difference)")
        }
    }

    @Test("a multi-token continuation from a state equals one full forward", arguments: models, paths)
    func multiTokenContinuation(fixture name: String, path: ForwardPath) throws {
        let fixture = try Fixture(name)
        let model = try fixture.model()
        let ids = fixture.case("single-len13").input_ids[0]
        let full = try model(.tokenIDs([ids]), useCache: true, path: path)
        // Splits inside a chunk, across chunks, and shorter than the conv kernel.
        for parts in [[2, 11], [5, 3, 5], [1, 1, 1, 10], [7, 6]] {
            var state: Mamba2State? = nil
            var pieces: [Tensor] = []
            var start = 0
            for length in parts {
                let output = try model(.tokenIDs([Array(ids[start..<(start + length)])]), state: state, useCache: true, path: path)
                state = output.state
                pieces.append(output.logits)
                start += length
            }
            let difference = Difference(concatenatePositions(pieces), full.logits)
            #expect(difference.max <= Self.tolerance, "\(name) parts \(parts): \(difference)")
            for (layer, (ours, whole)) in zip(state!.layers, full.state!.layers).enumerated() {
                #expect(Difference(ours.ssm, whole.ssm).max <= 1e-5, "layer \(layer) SSM state")
                #expect(Difference(ours.conv, whole.conv).max <= 1e-6, "layer \(layer) conv state")
            }
        }
    }

    @Test("a prompt shorter than the conv kernel leaves a zero-padded conv state")
    func shortPromptConvState() throws {
        let model = try Fixture("g1-tied").model()
        let state = try #require(try model(.tokenIDs([[3]]), useCache: true).state)
        let conv = state.layers[0].conv  // [1, k − 1 = 3, conv_dim]
        let convDim = model.config.convDim
        #expect(conv.scalars[0..<(2 * convDim)].allSatisfy { $0 == 0 })
        #expect(conv.scalars[(2 * convDim)...].contains { $0 != 0 })
    }

    @Test("each row of a left-padded batch equals that row run alone (also with use_bias)", arguments: models, paths)
    func paddedRowsEqualRowsAlone(fixture name: String, path: ForwardPath) throws {
        let fixture = try Fixture(name)
        let model = try fixture.model()
        let batch = try #require(fixture.cases.first { $0.attention_mask != nil })
        let mask = batch.attention_mask!
        let output = try model(.tokenIDs(batch.input_ids), attentionMask: mask, useCache: true, path: path)
        let length = batch.input_ids[0].count
        for row in 0..<batch.input_ids.count {
            let pads = mask[row].prefix { $0 == 0 }.count
            let alone = try model(.tokenIDs([Array(batch.input_ids[row][pads...])]), useCache: true, path: path)
            let padded = positions(output.logits.slice(outer: row, length: 1), pads..<length)
            let difference = Difference(padded, alone.logits)
            #expect(difference.max <= Self.tolerance, "\(name) row \(row) (\(pads) pads): \(difference)")
            // The state after the padded prompt is the state of the row alone.
            for (ours, theirs) in zip(output.state!.layers, alone.state!.layers) {
                #expect(Difference(ours.ssm.slice(outer: row, length: 1), theirs.ssm).max <= 1e-5)
                #expect(Difference(ours.conv.slice(outer: row, length: 1), theirs.conv).max <= 1e-6)
            }
            if let names = batch.rows_alone {
                let golden = Tensor(fixture.case(names[row]).logits!)
                #expect(Difference(padded, golden).max <= Self.tolerance, "\(name) row \(row) vs transformers alone")
            }
        }
    }

    @Test("decoding after a left-padded prefill equals each row decoded alone")
    func paddedBatchDecode() throws {
        let fixture = try Fixture("g3-untied-bias")
        let model = try fixture.model()
        let batch = fixture.case("padded-batch-inputs")
        let mask = batch.attention_mask!
        let next = [[5], [17], [42]]
        let prefill = try model(.tokenIDs(batch.input_ids), attentionMask: mask, useCache: true)
        let step = try model(.tokenIDs(next), state: prefill.state)
        for row in 0..<3 {
            let pads = mask[row].prefix { $0 == 0 }.count
            let alone = try model(.tokenIDs([Array(batch.input_ids[row][pads...]) + next[row]]))
            let last = positions(alone.logits, (alone.logits.shape[1] - 1)..<alone.logits.shape[1])
            #expect(Difference(step.logits.slice(outer: row, length: 1), last).max <= Self.tolerance)
        }
    }

    @Test("a batch's single-token steps equal each row stepped alone", arguments: models, paths)
    func batchedSteps(fixture name: String, path: ForwardPath) throws {
        let fixture = try Fixture(name)
        let model = try fixture.model()
        let prompts = [[3, 9, 27, 1, 5], [34, 2, 2, 8, 13], [7, 7, 30, 11, 0], [19, 4, 6, 25, 12]]
        let steps = [[[5], [17], [32], [1]], [[8], [8], [3], [29]], [[2], [39], [9], [14]]]
        var batchState = try #require(try model(.tokenIDs(prompts), state: Mamba2State(config: model.config, batchSize: 4), path: path).state)
        var aloneStates = try prompts.map { try #require(try model(.tokenIDs([$0]), state: Mamba2State(config: model.config, batchSize: 1), path: path).state) }
        for (index, step) in steps.enumerated() {
            let batched = try model(.tokenIDs(step), state: batchState, path: path)
            batchState = try #require(batched.state)
            for row in 0..<prompts.count {
                let alone = try model(.tokenIDs([step[row]]), state: aloneStates[row], path: path)
                aloneStates[row] = try #require(alone.state)
                let difference = Difference(batched.logits.slice(outer: row, length: 1), alone.logits)
                #expect(difference.max <= Self.tolerance, "\(name) \(path) step \(index) row \(row): \(difference)")
            }
        }
    }

    /// A mask with a zero keeps a one-token step off the fused kernel: the unfused path a lone
    /// 7B-sized sequence also takes (its state is too large for the fixtures to reach it).
    @Test("a one-token step with a padded row: the fast path equals the reference", arguments: models)
    func paddedSingleTokenStep(fixture name: String) throws {
        let fixture = try Fixture(name)
        let model = try fixture.model()
        let prompts = [[3, 9, 27, 1, 5], [34, 2, 2, 8, 13], [7, 7, 30, 11, 0]]
        let state = try #require(try model(.tokenIDs(prompts), useCache: true, path: .reference).state)
        let mask = [[1], [0], [1]]
        let reference = try model(.tokenIDs([[5], [17], [32]]), attentionMask: mask, state: state, path: .reference)
        let fast = try model(.tokenIDs([[5], [17], [32]]), attentionMask: mask, state: state, path: .fast)
        #expect(Difference(fast.logits, reference.logits).max <= Self.tolerance, "\(name) logits")
        let (fastState, referenceState) = (try #require(fast.state), try #require(reference.state))
        for (a, b) in zip(fastState.layers, referenceState.layers) {
            #expect(Difference(a.ssm, b.ssm).max <= Self.tolerance, "\(name) ssm state")
            #expect(Difference(a.conv, b.conv).max <= Self.tolerance, "\(name) conv state")
        }
    }

    @Test("the chunked SSD equals the sequential recurrence at chunk sizes 1, 3 and the config's", arguments: models, paths)
    func scans(fixture name: String, path: ForwardPath) throws {
        let fixture = try Fixture(name)
        let model = try fixture.model()
        let ids = fixture.case("single-len13").input_ids
        let sequential = try model(.tokenIDs(ids), scan: .sequential, path: path).logits
        for chunkSize in [1, 3, model.config.chunkSize] {
            let chunked = try model(.tokenIDs(ids), scan: .chunked(chunkSize: chunkSize), path: path).logits
            let difference = Difference(chunked, sequential)
            #expect(difference.max <= Self.tolerance, "\(name) chunk \(chunkSize): \(difference)")
        }
    }

    @Test("input embeddings give the same logits as the token ids")
    func inputEmbeddings() throws {
        let model = try Fixture("g3-untied-bias").model()
        let ids = [[4, 8, 15, 16, 23, 42]]
        let embeddings = Tensor(shape: [1, 6, 18], scalars: ids[0].flatMap { id in
            (0..<18).map { model.backbone.weights.embeddings[id * 18 + $0] }
        })
        let fromIDs = try model(.tokenIDs(ids)).logits
        let fromEmbeddings = try model(.embeddings(embeddings)).logits
        #expect(fromIDs == fromEmbeddings)
    }

    @Test("bad inputs are named errors")
    func badInputs() throws {
        let model = try Fixture("g1-tied").model()
        #expect(throws: Mamba2Error.tokenIDOutOfRange(id: 50, vocabularySize: 50, row: 1, position: 2)) {
            try model(.tokenIDs([[1, 2, 3], [4, 5, 50]]))
        }
        #expect(throws: Mamba2Error.tokenIDOutOfRange(id: -1, vocabularySize: 50, row: 0, position: 0)) {
            try model(.tokenIDs([[-1]]))
        }
        #expect(throws: Mamba2Error.invalidInput("input_ids row 1 has 2 tokens, row 0 has 3; pad rows to one length")) {
            try model(.tokenIDs([[1, 2, 3], [4, 5]]))
        }
        #expect(throws: Mamba2Error.invalidInput("input_ids must hold at least one row of at least one token")) {
            try model(.tokenIDs([]))
        }
        #expect(throws: Mamba2Error.invalidInput("attention_mask must be [1][3] like the input, got 1 rows of [2]")) {
            try model(.tokenIDs([[1, 2, 3]]), attentionMask: [[1, 1]])
        }
        #expect(throws: Mamba2Error.invalidInput("attention_mask values must be 0 or 1")) {
            try model(.tokenIDs([[1, 2, 3]]), attentionMask: [[0, 2, 1]])
        }
        #expect(throws: Mamba2Error.invalidInput("inputs_embeds has shape [1, 2, 7], expected [batch, length, 15]")) {
            try model(.embeddings(Tensor(zeros: [1, 2, 7])))
        }
        #expect(throws: Mamba2Error.labelOutOfRange(label: 99, vocabularySize: 50, row: 0, position: 1)) {
            try model(.tokenIDs([[1, 2]]), labels: [[1, 99]])
        }
        #expect(throws: Mamba2Error.stateMismatch("the state holds 2 sequences, the input 1")) {
            try model(.tokenIDs([[1]]), state: Mamba2State(config: model.config, batchSize: 2))
        }
        var other = model.config
        other.stateSize = 8
        #expect(throws: Mamba2Error.stateMismatch("layer 0 conv state has shape [1, 3, 46], expected [1, 3, 44]")) {
            try model(.tokenIDs([[1]]), state: Mamba2State(config: other, batchSize: 1))
        }
        #expect(throws: Mamba2Error.invalidInput("chunk size must be positive, got 0")) {
            try model(.tokenIDs([[1]]), scan: .chunked(chunkSize: 0))
        }
    }

    @Test("fast and reference paths agree with a bf16 state, through a prefill and single steps; the state stays bf16")
    func fastEqualsReference() throws {
        let config = QuantizedModelTests.config(tied: false)
        var model = Mamba2ForCausalLM(config: config, weights: try Mamba2Weights.random(config: config, dtype: .float32, seed: 5))
        model.ssmStateDType = .bfloat16
        let ids = [[5, 17, 3, 90, 44, 2, 61, 8, 8, 30, 71], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]]
        var (fast, reference) = (Mamba2State(config: config, batchSize: 2, ssmDType: .bfloat16), Mamba2State(config: config, batchSize: 2, ssmDType: .bfloat16))
        for range in [0..<6, 6..<7, 7..<8, 8..<11] {
            let input = Mamba2Input.tokenIDs(ids.map { Array($0[range]) })
            let a = try model(input, updating: &fast).logits
            let b = try model(input, updating: &reference, path: .reference).logits
            // The two fp32 computations may round a state value to neighbouring bf16 values.
            let largest = zip(a.scalars, b.scalars).map { abs($0 - $1) }.max()!
            #expect(largest <= 2e-3 * b.scalars.map(abs).max()!, "tokens \(range): \(largest)")
        }
        let (x, y) = (fast.layers[1].ssm, reference.layers[1].ssm)
        #expect(zip(x.scalars, y.scalars).allSatisfy { abs($0 - $1) <= 0x1p-7 * max(abs($0), abs($1)) })
        // A state the model starts takes the model's dtype; one it cannot keep is an error.
        let output = try model(.tokenIDs(ids), useCache: true)
        #expect(output.state?.ssmDType == .bfloat16)
        var bytes = 0
        output.state!.layers[0].ssmStorage.withUnsafeBytes { bytes = $0.count }
        #expect(bytes == 2 * 2 * config.numHeads * config.headDim * config.stateSize)
        model.ssmStateDType = .float16
        #expect(throws: Mamba2Error.invalidInput("an SSM state is kept in F32 or BF16, not F16")) { try model(.tokenIDs(ids)) }
    }
}
