import DefaultModel
import Foundation
import Generation
import Mamba2
import Tensors
import Testing

/// How much int8 weights cost the built-in model on text it never saw (this repo's own Python:
/// scripts/make_fixtures.py), against bf16 and fp32 weights.
@Suite("int8 quality on the built-in model")
struct QuantizedQualityTests {
    static func logProbabilities(_ logits: Tensor) -> [[Float]] {
        let (l, v) = (logits.shape[1], logits.shape[2])
        return (0..<l).map { position in
            let row = logits.scalars[(position * v)..<((position + 1) * v)]
            let top = row.max()!
            let logSum = top + log(row.reduce(0) { $0 + exp($1 - top) })
            return row.map { $0 - logSum }
        }
    }

    @Test("int8 perplexity within 1% of bf16's; mean KL(bf16 ‖ int8) below 0.002 nats; top-1 agrees on 95% of positions")
    func perplexityAndKL() throws {
        let generator = try Generator(directory: DefaultModel.directory)
        let ids = try scriptTokenIDs(generator.tokenizer!, count: 512)
        #expect(ids.count == 512)
        let model = generator.model
        var bf16 = model.backbone.weights
        func half(_ view: WeightView) -> WeightView { WeightView(view.tensor(), as: .bfloat16) }
        bf16.embeddings = half(bf16.embeddings)
        bf16.lmHead = bf16.embeddings
        for index in bf16.layers.indices {
            bf16.layers[index].mixer.inProj = half(bf16.layers[index].mixer.inProj)
            bf16.layers[index].mixer.outProj = half(bf16.layers[index].mixer.outProj)
        }
        let int8 = model.backbone.weights.quantizedToInt8(tiedEmbeddings: true)
        let runs = [("fp32", model), ("bf16", Mamba2ForCausalLM(config: model.config, weights: bf16)), ("int8", Mamba2ForCausalLM(config: model.config, weights: int8))]
        var perplexity: [String: Float] = [:]
        var logProbabilities: [String: [[Float]]] = [:]
        for (name, lm) in runs {
            let output = try lm(.tokenIDs([ids]), labels: [ids])
            perplexity[name] = exp(output.loss!)
            logProbabilities[name] = Self.logProbabilities(output.logits)
        }
        let (reference, quantized) = (logProbabilities["bf16"]!, logProbabilities["int8"]!)
        var divergence: Float = 0
        var agree = 0
        for position in reference.indices {
            let (p, q) = (reference[position], quantized[position])
            divergence += zip(p, q).reduce(0) { $0 + exp($1.0) * ($1.0 - $1.1) }
            if p.firstIndex(of: p.max()!) == q.firstIndex(of: q.max()!) { agree += 1 }
        }
        let meanKL = divergence / Float(reference.count)
        let agreement = Float(agree) / Float(reference.count)
        print("int8 quality: perplexity fp32 \(perplexity["fp32"]!), bf16 \(perplexity["bf16"]!), int8 \(perplexity["int8"]!); mean KL(bf16 ‖ int8) \(meanKL); top-1 agreement \(agreement)")
        #expect(abs(perplexity["int8"]! / perplexity["bf16"]! - 1) < 0.01)
        #expect(meanKL < 0.002)
        #expect(agreement > 0.95)
    }
}
