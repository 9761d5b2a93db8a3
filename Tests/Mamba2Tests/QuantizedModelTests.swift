import Foundation
import Testing
import Tensors
@testable import Mamba2
import TestSupport

@Suite("int8 weights")
struct QuantizedModelTests {
    /// A small model whose rows hold whole blocks of 32 (the fixtures' odd sizes do not).
    static func config(tied: Bool) -> Mamba2Config {
        var config = Mamba2Config()
        config.hiddenSize = 64
        config.numHiddenLayers = 2
        config.numHeads = 4
        config.headDim = 32
        config.nGroups = 2
        config.stateSize = 16
        config.vocabSize = 96
        config.chunkSize = 8
        config.useBias = !tied
        config.tieWordEmbeddings = tied
        return config
    }

    func temporary() -> URL { scratchURL("int8") }

    @Test("an int8 folder reloads zero-copy to the same logits; fast equals reference; close to fp32", arguments: [true, false])
    func folderRoundTrip(tied: Bool) throws {
        let config = Self.config(tied: tied)
        let weights = try Mamba2Weights.random(config: config, dtype: .float32, seed: 3)
        let fp32 = Mamba2ForCausalLM(config: config, weights: weights)
        let quantized = Mamba2ForCausalLM(config: config, weights: weights.quantizedToInt8(tiedEmbeddings: tied))
        let output = temporary()
        try weights.writeHuggingFaceFolder(config: config, dtype: .int8, to: output)
        let names = try SafeTensorsNames(output)
        #expect(names.contains("backbone.layers.0.mixer.in_proj.weight_scale") && names.contains("backbone.embeddings.weight_scale"))
        #expect(names.contains("lm_head.weight_scale") == !tied)
        let json = try String(contentsOf: output.appendingPathComponent("config.json"), encoding: .utf8)
        #expect(json.contains("\"quant_method\": \"swift-mamba2-int8\"") && json.contains("\"layout\": \"\(WeightView.int8Layout)\""))

        let loaded = try Mamba2ForCausalLM(directory: output)
        let inProj = loaded.backbone.weights.layers[1].mixer.inProj
        #expect(inProj.dtype == .int8 && inProj.scales != nil)
        #expect(loaded.backbone.weights.layers[0].norm.dtype == .float32)
        let ids = [[5, 17, 3, 90, 44, 2, 61, 8, 8, 30, 71], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]]
        let fast = try loaded(.tokenIDs(ids)).logits
        #expect(Difference(fast, try quantized(.tokenIDs(ids)).logits).max <= 1e-5)
        #expect(Difference(fast, try loaded(.tokenIDs(ids), path: .reference).logits).max <= 1e-4)
        // Decoding (the int8 GEMV) from a prefix equals the full pass.
        var state = Mamba2State(config: config, batchSize: 2)
        _ = try loaded(.tokenIDs(ids.map { Array($0.prefix(6)) }), updating: &state)
        var steps: [Tensor] = []
        for position in 6..<11 { steps.append(try loaded(.tokenIDs(ids.map { [$0[position]] }), updating: &state).logits) }
        let last = positions(fast, 10..<11)
        #expect(Difference(steps.last!, last).max <= 1e-4)
        // Quantizing weights and activations moves the logits a little, not a lot (random
        // weights: no perplexity to speak of; QuantizedQualityTests measures a trained model).
        let reference = try fp32(.tokenIDs(ids)).logits
        let scale = reference.scalars.map(abs).max()!
        #expect(Difference(fast, reference).max <= 0.05 * scale)
        #expect(Difference(fast, reference).max > 0)
    }

    @Test("an int8 folder that does not name our byte order (or names another) is refused, naming a tensor and the field")
    func unknownLayout() throws {
        let config = Self.config(tied: true)
        let output = temporary()
        try Mamba2Weights.random(config: config, dtype: .float32, seed: 3).writeHuggingFaceFolder(config: config, dtype: .int8, to: output)
        let file = output.appendingPathComponent("config.json")
        let json = try String(contentsOf: file, encoding: .utf8)
        for (replacement, found) in [("", "none (folders written before"), (", \"layout\": \"rows\"", "\"rows\"")] {
            try json.replacingOccurrences(of: ", \"layout\": \"\(WeightView.int8Layout)\"", with: replacement).write(to: file, atomically: false, encoding: .utf8)
            let error = #expect(throws: Mamba2Error.self) { try Mamba2ForCausalLM(directory: output) }
            let message = error.map { "\($0)" } ?? ""
            #expect(message.hasPrefix("weight 'backbone.embeddings.weight': int8 rows stored in an unknown byte order: config.json's quantization_config.layout is \(found)"), "\(message)")
        }
    }

    @Test("int8 folders convert back to fp32 with the dequantized weights")
    func backToFloat() throws {
        let config = Self.config(tied: true)
        let quantized = try Mamba2Weights.random(config: config, dtype: .int8, seed: 4)
        #expect(quantized.layers[0].mixer.inProj.dtype == .int8 && quantized.layers[0].mixer.conv1dWeight.dtype == .float32)
        let output = temporary()
        try quantized.writeHuggingFaceFolder(config: config, dtype: .float32, to: output)
        let restored = try Mamba2ForCausalLM(directory: output)
        #expect(restored.backbone.weights.layers[0].mixer.inProj.floats() == quantized.layers[0].mixer.inProj.floats())
        // Only the int8 model rounds its activations too.
        let ids = [[1, 2, 3, 4]]
        let model = Mamba2ForCausalLM(config: config, weights: quantized)
        let (widened, int8) = (try restored(.tokenIDs(ids)).logits, try model(.tokenIDs(ids)).logits)
        #expect(Difference(widened, int8).max <= 0.05 * widened.scalars.map(abs).max()!)
    }

    @Test("int8 tensors without scales, scales of the wrong shape and int8 norms are named errors")
    func malformed() throws {
        let config = Self.config(tied: true)
        let weights = try Mamba2Weights.random(config: config, dtype: .float32, seed: 5)
        var tensors = weights.huggingFaceTensors(config: config)
        let key = "backbone.layers.0.mixer.in_proj.weight"
        let quantized = tensors[key]!.quantizedToInt8()
        func loadError(_ tensors: [String: WeightView]) -> String {
            do {
                _ = try Mamba2Weights(config: config, tensors: tensors)
                return "loaded"
            } catch {
                return "\(error)"
            }
        }
        tensors[key] = quantized.quantizedValues
        #expect(loadError(tensors) == "weight '\(key)': an int8 tensor needs its block scales \(key)_scale")
        tensors[key + "_scale"] = quantized.scaleView!.reshaped([quantized.shape[0] * 2, 1])
        #expect(loadError(tensors).contains("are not the block scales of"))
        tensors[key + "_scale"] = quantized.scaleView
        #expect(loadError(tensors) == "loaded")
        tensors["backbone.layers.0.norm.weight_scale"] = quantized.scaleView
        #expect(loadError(tensors).contains("block scales without an int8 tensor backbone.layers.0.norm.weight"))
        tensors["backbone.layers.0.norm.weight_scale"] = nil
        let norm = WeightView(Tensor(shape: [2, 32], scalars: [Float](repeating: 1, count: 64)), as: .int8)
        tensors["backbone.layers.0.norm.weight"] = WeightView.quantized(values: norm.quantizedValues!, scales: norm.scaleView!)!.reshaped([64])
        #expect(loadError(tensors).contains("int8 is supported for the projection and embedding matrices only"))
    }
}

/// The tensor names of a folder's model.safetensors.
func SafeTensorsNames(_ directory: URL) throws -> Set<String> {
    let data = try Data(contentsOf: directory.appendingPathComponent("model.safetensors"))
    let length = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    let header = try JSONSerialization.jsonObject(with: data[8..<(8 + length)]) as! [String: Any]
    return Set(header.keys.filter { $0 != "__metadata__" })
}
