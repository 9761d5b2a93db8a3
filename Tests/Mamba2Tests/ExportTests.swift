import Foundation
import Testing
import Tensors
@testable import Mamba2

@Suite("writing Hugging Face folders")
struct ExportTests {
    func temporary() -> URL { FileManager.default.temporaryDirectory.appendingPathComponent("export-\(UUID().uuidString)") }

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
