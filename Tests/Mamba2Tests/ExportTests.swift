import Foundation
import Testing
import Tensors
@testable import Mamba2
import TestSupport

@Suite("writing Hugging Face folders")
struct ExportTests {
    func temporary() -> URL { scratchURL("export") }

    @Test("mamba_ssm .bin and Mistral folders convert to HF folders with the same logits", arguments: ["g1-mamba-ssm-bin", "g1-mistral", "g3-untied-bias"])
    func roundTrip(fixture name: String) throws {
        let fixture = try Fixture(name)
        let source = try fixture.model()
        let output = temporary()
        try source.backbone.weights.writeHuggingFaceFolder(config: source.config, dtype: .float32, to: output)
        let converted = try Mamba2ForCausalLM(directory: output)
        #expect(converted.config == source.config)
        let ids = fixture.case("single-len13").input_ids
        #expect(Difference(try converted(.tokenIDs(ids)).logits, try source(.tokenIDs(ids)).logits).max == 0)
    }

    @Test("a bf16 sharded export reloads within bf16's rounding of the fp32 logits")
    func shardedHalf() throws {
        let fixture = try Fixture("g1-tied")
        let source = try fixture.model()
        let output = temporary()
        try source.backbone.weights.writeHuggingFaceFolder(config: source.config, dtype: .bfloat16, to: output, shardBytes: 2_000)
        let files = try FileManager.default.contentsOfDirectory(atPath: output.path)
        #expect(files.contains("model.safetensors.index.json") && files.filter { $0.hasPrefix("model-0") }.count > 2)
        let converted = try Mamba2ForCausalLM(directory: output)
        #expect(converted.backbone.weights.layers[0].mixer.inProj.dtype == .bfloat16)
        #expect(converted.backbone.weights.layers[0].mixer.aLog.dtype == .float32)
        let ids = fixture.case("single-len13").input_ids
        #expect(Difference(try converted(.tokenIDs(ids)).logits, try source(.tokenIDs(ids)).logits).max < 0.1)
    }

    @Test("config.json round-trips every field, infinity included")
    func configJSON() throws {
        for name in ["g1-tied", "g3-untied-bias", "g1-mamba-ssm"] {
            let config = try Mamba2Config(directory: fixturesDirectory.appendingPathComponent(name))
            #expect(try Mamba2Config(json: Data(config.huggingFaceJSON(dtype: .float32).utf8)) == config, "\(name)")
        }
    }
}

@Suite("random checkpoints")
struct RandomCheckpointTests {
    @Test("a streamed random folder equals the in-memory random weights, and pieces agree with the whole")
    func streamed() throws {
        var config = try Mamba2Config(directory: fixturesDirectory.appendingPathComponent("g3-untied-bias"))
        config.numHiddenLayers = 2
        let output = scratchURL("random")
        try Mamba2Weights.writeRandomHuggingFaceFolder(config: config, dtype: .bfloat16, to: output, shardBytes: 4_000, seed: 9)
        let loaded = try Mamba2ForCausalLM(directory: output)
        let memory = try Mamba2Weights.random(config: config, dtype: .bfloat16, seed: 9)
        #expect(loaded.config == config)
        #expect(loaded.backbone.weights.layers[1].mixer.inProj.floats() == memory.layers[1].mixer.inProj.floats())
        #expect(loaded.backbone.weights.layers[1].mixer.aLog.dtype == .float32)
        #expect(loaded.backbone.weights.lmHead.floats() == memory.lmHead.floats())

        let whole = WeightView.random(shape: [1000], dtype: .float16, in: -1...1, seed: 3).floats()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 600 * 2, alignment: 16)
        defer { buffer.deallocate() }
        WeightView.fillRandom(buffer, dtype: .float16, in: -1...1, seed: 3, firstElement: 400)
        let piece = (0..<600).map { HalfConversion.float(fromFloat16: buffer.load(fromByteOffset: $0 * 2, as: UInt16.self)) }
        #expect(piece == Array(whole[400...]))
    }
}
