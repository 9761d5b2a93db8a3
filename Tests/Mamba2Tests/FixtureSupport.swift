import Foundation
import Mamba2
import Tensors

/// `Tests/Fixtures/models/`, made by `scripts/make_fixtures.py`.
let fixturesDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/models")

/// One fixture model and the outputs transformers computed for it (`expected.json`).
struct Fixture {
    struct Case: Decodable {
        let name: String
        let input_ids: [[Int]]
        let attention_mask: [[Int]]?
        let logits: [[[Float]]]?
        let labels: [[Int]]?
        let loss: Float?
        let hidden_states: [[[[Float]]]]?
        let logits_fp32_weights: [[[Float]]]?
        let rows_alone: [String]?
    }

    private struct Expected: Decodable {
        let cases: [Case]
    }

    let name: String
    let directory: URL
    let cases: [Case]

    init(_ name: String) throws {
        self.name = name
        directory = fixturesDirectory.appendingPathComponent(name)
        let data = try Data(contentsOf: directory.appendingPathComponent("expected.json"))
        cases = try JSONDecoder().decode(Expected.self, from: data).cases
    }

    func model() throws -> Mamba2ForCausalLM { try Mamba2ForCausalLM(directory: directory) }

    func `case`(_ name: String) -> Case { cases.first { $0.name == name }! }

    static let all = ["g1-tied", "g1-sharded", "g1-mamba-ssm", "g1-mamba-ssm-bin", "g1-mistral", "g3-untied-bias", "g2-fp32", "g2-bf16", "g2-fp16"]
}

extension Tensor {
    init(_ nested: [[[Float]]]) {
        self.init(shape: [nested.count, nested[0].count, nested[0][0].count], scalars: nested.flatMap { $0.flatMap { $0 } })
    }
}

/// Max and mean |a − b| and the index of the max, for readable failures.
struct Difference: CustomStringConvertible {
    let max: Float
    let mean: Float
    let at: [Int]

    init(_ a: Tensor, _ b: Tensor) {
        precondition(a.shape == b.shape, "compare \(a.shape) with \(b.shape)")
        var (maximum, sum, index): (Float, Float, Int) = (0, 0, 0)
        for i in 0..<a.count {
            let delta = abs(a.scalars[i] - b.scalars[i])
            sum += delta
            if delta > maximum || delta.isNaN { (maximum, index) = (delta.isNaN ? .infinity : delta, i) }
        }
        max = maximum
        mean = sum / Float(Swift.max(a.count, 1))
        var position: [Int] = []
        var rest = index
        for stride in a.strides { position.append(rest / stride); rest %= stride }
        at = position
    }

    var description: String { "max |Δ| \(max) at \(at), mean \(mean)" }
}

/// Positions `[start, end)` of axis 1: `[b, l, ...]` → `[b, end − start, ...]`.
func positions(_ tensor: Tensor, _ range: Range<Int>) -> Tensor {
    let (b, l) = (tensor.shape[0], tensor.shape[1])
    let inner = tensor.count / max(b * l, 1)
    var scalars: [Float] = []
    for row in 0..<b {
        scalars += tensor.scalars[((row * l + range.lowerBound) * inner)..<((row * l + range.upperBound) * inner)]
    }
    return Tensor(shape: [b, range.count] + tensor.shape.dropFirst(2), scalars: scalars)
}

/// Concatenates `[b, l_i, ...]` tensors along axis 1.
func concatenatePositions(_ tensors: [Tensor]) -> Tensor {
    let b = tensors[0].shape[0]
    let inner = tensors[0].count / max(b * tensors[0].shape[1], 1)
    var scalars: [Float] = []
    for row in 0..<b {
        for tensor in tensors {
            let l = tensor.shape[1]
            scalars += tensor.scalars[(row * l * inner)..<((row + 1) * l * inner)]
        }
    }
    let length = tensors.map { $0.shape[1] }.reduce(0, +)
    return Tensor(shape: [b, length] + tensors[0].shape.dropFirst(2), scalars: scalars)
}
