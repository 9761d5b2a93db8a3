import DefaultModel
import Foundation
import Generation
import Mamba2
import SafeTensors
import Tensors
import Testing

/// The SSM state kept in bf16 (`Mamba2Model.ssmStateDType`), as transformers' Mamba2Cache and
/// mamba_ssm keep it for a bf16 model: each step computed in fp32, the state rounded once.
@Suite("SSM state kept in bf16")
struct BFloat16StateTests {
    /// Teacher-forced log-probabilities of `ids[1...]`, one token per step through the state.
    static func stepped(_ model: Mamba2ForCausalLM, _ ids: [Int], ssmDType: DType) throws -> [[Float]] {
        var state = Mamba2State(config: model.config, batchSize: 1, ssmDType: ssmDType)
        return try ids.dropLast().map { id in
            QuantizedQualityTests.logProbabilities(try model(.tokenIDs([[id]]), updating: &state).logits)[0]
        }
    }

    @Test("token by token through 256 steps of the built-in model: perplexity within 0.1% of the fp32 state's, mean KL below 1e-4 nats, top-1 agreeing on 99% of positions")
    func quality() throws {
        let generator = try Generator(directory: DefaultModel.directory)
        let ids = try scriptTokenIDs(generator.tokenizer!, count: 257)
        #expect(ids.count == 257)
        let exact = try Self.stepped(generator.model, ids, ssmDType: .float32)
        let half = try Self.stepped(generator.model, ids, ssmDType: .bfloat16)
        func perplexity(_ rows: [[Float]]) -> Float { exp(-zip(rows, ids.dropFirst()).reduce(0) { $0 + $1.0[$1.1] } / Float(rows.count)) }
        var divergence: Float = 0
        var agree = 0
        for (p, q) in zip(exact, half) {
            divergence += zip(p, q).reduce(0) { $0 + exp($1.0) * ($1.0 - $1.1) }
            if p.firstIndex(of: p.max()!) == q.firstIndex(of: q.max()!) { agree += 1 }
        }
        let (meanKL, agreement) = (divergence / Float(exact.count), Float(agree) / Float(exact.count))
        print("bf16 state: perplexity \(perplexity(half)) against \(perplexity(exact)) (fp32 state); mean KL \(meanKL); top-1 agreement \(agreement)")
        #expect(abs(perplexity(half) / perplexity(exact) - 1) < 0.001)
        #expect(meanKL < 1e-4)
        #expect(agreement >= 0.99)
        #expect(meanKL > 0, "the bf16 state changes something")
    }

    @Test("bf16 states batch (append, remove) and save to a state file bit for bit, at half the SSM bytes")
    func batchingAndFiles() throws {
        var generator = try Generator(directory: DefaultModel.directory)
        generator.model.ssmStateDType = .bfloat16
        let tokenizer = generator.tokenizer!
        let prompts = try ["def main():", "import os"].map { try tokenizer.encode($0).ids }
        let first = try generator.prefill([prompts[0]])
        let second = try generator.prefill([prompts[1]])
        var joined = first.state
        joined.append(second.state)
        #expect(joined.batchSize == 2 && joined.ssmDType == .bfloat16)
        joined.removeSequence(at: 0)
        #expect(joined == second.state)

        let config = generator.model.config
        let file = temporaryURL("bf16.state")
        try StateFile.write(first, for: config, to: file)
        let read = try StateFile.read(file, for: config)
        #expect(read.state == first.state && read.state.ssmDType == .bfloat16)
        let size = try FileManager.default.attributesOfItem(atPath: file.path)[.size] as! Int
        let bytes = StateFile.tensorBytes(for: config, ssmDType: .bfloat16)
        #expect(size > bytes && size < bytes + 4096)
        // Greedy generation continues from the file as from the session it saved.
        var settings = generator.defaults
        settings.doSample = false
        settings.maxNewTokens = 8
        #expect(try generator.generate(from: read, config: settings).tokens == (try generator.generate(from: first, config: settings).tokens))

        // Layers kept in different dtypes are refused when written, and when read.
        var mixed = first
        mixed.state.layers[1].ssmStorage = SSMStateStorage(mixed.state.layers[1].ssm, dtype: .float32)
        #expect(throws: Mamba2Error.stateMismatch("layer 1 SSM state is F32, layer 0's BF16")) { try StateFile.write(mixed, for: config, to: file) }
        let stored = try SafeTensorsFile(path: file.path)
        var tensors = Dictionary(uniqueKeysWithValues: try stored.names.map { ($0, try stored.view($0)) })
        tensors["layers.1.ssm"] = WeightView(tensors["layers.1.ssm"]!.tensor())
        let altered = temporaryURL("mixed.state")
        try SafeTensorsWriter.write(tensors, metadata: stored.metadata, to: altered)
        let error = #expect(throws: GenerationError.self) { try StateFile.read(altered, for: config) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("tensor 'layers.1.ssm' is F32 [1, "), "\(String(describing: error))")
    }
}
