import Foundation
import SafeTensors
import Testing
import Tensors
@testable import Mamba2
import TestSupport

@Suite("weights by Hugging Face key")
struct WeightTests {
    /// The g1-tied fixture's tensors, by key, to edit.
    static func tensors() throws -> (Mamba2Config, [String: WeightView]) {
        let directory = fixturesDirectory.appendingPathComponent("g1-tied")
        let checkpoint = try Checkpoint(directory: directory)
        var views: [String: WeightView] = [:]
        for name in checkpoint.names { views[name] = try checkpoint.view(name) }
        return (try Mamba2Config(directory: directory), views)
    }

    @Test("a missing tensor is named with its expected shape")
    func missing() throws {
        var (config, views) = try Self.tensors()
        views["backbone.layers.1.mixer.D"] = nil
        #expect(throws: Mamba2Error.missingWeight(name: "backbone.layers.1.mixer.D", expectedShape: [6])) {
            try Mamba2Weights(config: config, tensors: views)
        }
    }

    @Test("an unexpected tensor is named")
    func unexpected() throws {
        var (config, views) = try Self.tensors()
        views["backbone.layers.2.norm.weight"] = WeightView(Tensor(zeros: [15]))
        #expect(throws: Mamba2Error.unexpectedWeight(name: "backbone.layers.2.norm.weight", shape: [15])) {
            try Mamba2Weights(config: config, tensors: views)
        }
        // A bias the config does not ask for is unexpected too.
        (config, views) = try Self.tensors()
        views["backbone.layers.0.mixer.out_proj.bias"] = WeightView(Tensor(zeros: [15]))
        #expect(throws: Mamba2Error.unexpectedWeight(name: "backbone.layers.0.mixer.out_proj.bias", shape: [15])) {
            try Mamba2Weights(config: config, tensors: views)
        }
        // Both spellings of the embedding.
        (config, views) = try Self.tensors()
        views["backbone.embedding.weight"] = views["backbone.embeddings.weight"]
        #expect(throws: Mamba2Error.self) { try Mamba2Weights(config: config, tensors: views) }
    }

    @Test("a mis-shaped tensor is named with both shapes")
    func misShaped() throws {
        var (config, views) = try Self.tensors()
        views["backbone.layers.0.mixer.conv1d.weight"] = WeightView(Tensor(zeros: [44, 4]))
        #expect(throws: Mamba2Error.weightShapeMismatch(name: "backbone.layers.0.mixer.conv1d.weight", expected: [44, 1, 4], actual: [44, 4])) {
            try Mamba2Weights(config: config, tensors: views)
        }
    }

    @Test("untied configs need lm_head.weight; tied ones accept and ignore a stored copy")
    func lmHead() throws {
        var (config, views) = try Self.tensors()
        config.tieWordEmbeddings = false
        #expect(throws: Mamba2Error.missingWeight(name: "lm_head.weight", expectedShape: [50, 15])) {
            try Mamba2Weights(config: config, tensors: views)
        }
        config.tieWordEmbeddings = true
        views["lm_head.weight"] = WeightView(Tensor(zeros: [50, 15]))
        let weights = try Mamba2Weights(config: config, tensors: views)
        #expect(weights.lmHead.bytes.baseAddress == weights.embeddings.bytes.baseAddress)
    }

    @Test("a folder whose weights do not fit its config is refused")
    func folderErrors() throws {
        let directory = scratchURL("weights")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let source = fixturesDirectory.appendingPathComponent("g1-tied")
        try FileManager.default.copyItem(at: source.appendingPathComponent("config.json"), to: directory.appendingPathComponent("config.json"))
        #expect(throws: SafeTensorsError.noWeights(directory: directory.path)) { try Mamba2ForCausalLM(directory: directory) }
        try SafeTensorsWriter.write(["backbone.norm_f.weight": WeightView(Tensor(zeros: [15]))], to: directory.appendingPathComponent("model.safetensors"))
        #expect(throws: Mamba2Error.missingWeight(name: "backbone.embeddings.weight", expectedShape: [50, 15])) {
            try Mamba2ForCausalLM(directory: directory)
        }
    }

    @Test("weights read into memory give the mapped weights' logits and no longer depend on the files; a pytorch_model.bin folder is refused with its file named", arguments: ["g1-sharded", "g2-bf16"])
    func readIntoMemory(name: String) throws {
        let fixture = try Fixture(name)
        let directory = scratchURL("in-memory")
        try FileManager.default.copyItem(at: fixture.directory, to: directory)
        var heard = 0
        let inMemory = try Mamba2ForCausalLM(directory: directory, residency: .inMemory, progress: { done, _ in heard = done })
        let mapped = try Mamba2ForCausalLM(directory: directory)
        #expect(heard > 0)
        let ids = fixture.cases[0].input_ids
        let logits = try mapped(.tokenIDs(ids)).logits
        #expect(try inMemory(.tokenIDs(ids)).logits == logits)
        // Zero every weight byte on disk: the mapped model sees it, the copy does not.
        for shard in try FileManager.default.contentsOfDirectory(atPath: directory.path) where shard.hasSuffix(".safetensors") {
            let url = directory.appendingPathComponent(shard)
            let data = try Data(contentsOf: url)
            let headerEnd = 8 + Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self).littleEndian })
            let handle = try FileHandle(forWritingTo: url)
            try handle.seek(toOffset: UInt64(headerEnd))
            try handle.write(contentsOf: Data(count: data.count - headerEnd))
            try handle.close()
        }
        #expect(try inMemory(.tokenIDs(ids)).logits == logits)
        #expect(try mapped(.tokenIDs(ids)).logits != logits)

        let bin = fixturesDirectory.appendingPathComponent("g1-mamba-ssm-bin")
        let error = #expect(throws: Mamba2Error.self) { try Mamba2ForCausalLM(directory: bin, residency: .inMemory) }
        guard case let .cannotRead(file, reason) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(file == bin.appendingPathComponent("pytorch_model.bin").path && reason.contains("safetensors"))
    }
}
