import ArgumentParser
import Foundation
import Mamba2
import Tensors

/// `mamba2 forward`: logits of a batch as a NumPy `.npy` (the contract other checks drive).
struct Forward: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the model over token ids and write the logits [batch, seq, vocab] as float32 .npy.")

    @Option(help: "Model folder (config.json and *.safetensors).")
    var model: String

    @Option(name: .customLong("ids"), help: "One row of token ids, comma-separated; repeat for a batch.")
    var idRows: [String]

    @Option(name: .customLong("mask"), help: "Attention-mask row (0/1) for each --ids row, 0 marking left padding.")
    var maskRows: [String] = []

    @Option(help: "Prefill the first K tokens in one call, then feed the rest one token at a time through the state.")
    var decodeFrom: Int?

    @Option(help: "Output .npy file.")
    var output: String

    @OptionGroup var stateDType: StateDTypeOption

    @OptionGroup var loading: WeightResidencyOption

    func run() throws {
        let ids = try idRows.map { try parseIntegerList($0, option: "--ids") }
        let mask = maskRows.isEmpty ? nil : try maskRows.map { try parseIntegerList($0, option: "--mask") }
        if let mask, mask.count != ids.count {
            throw CLIError("--mask was given \(mask.count) times for \(ids.count) --ids rows")
        }
        let length = ids[0].count
        if let row = ids.firstIndex(where: { $0.count != length }) {
            throw CLIError("--ids row \(row) has \(ids[row].count) tokens, row 0 has \(length); rows of a batch have equal length")
        }
        if let mask, let row = mask.firstIndex(where: { $0.count != length }) {
            throw CLIError("--mask row \(row) has \(mask[row].count) values for rows of \(length) tokens")
        }
        if let decodeFrom, !(0...length).contains(decodeFrom) {
            throw CLIError("--decode-from \(decodeFrom) must be between 0 and the row length \(length)")
        }
        let ssmDType = try stateDType.dtype()
        var model = try Mamba2ForCausalLM(directory: URL(fileURLWithPath: self.model), residency: loading.residency)
        model.ssmStateDType = ssmDType
        let logits = try Self.logits(model: model, ids: ids, mask: mask, decodeFrom: decodeFrom)
        try NPY.write(logits, to: URL(fileURLWithPath: output))
    }

    /// Logits `[b, l, vocab]`, from one call or from a prefill of `decodeFrom` tokens followed by
    /// single-token steps through the state.
    static func logits(model: Mamba2ForCausalLM, ids: [[Int]], mask: [[Int]]?, decodeFrom: Int?) throws -> Tensor {
        guard let split = decodeFrom else {
            return try model(.tokenIDs(ids), attentionMask: mask).logits
        }
        let length = ids.first?.count ?? 0
        var state = Mamba2State(config: model.config, batchSize: ids.count, ssmDType: model.ssmStateDType)
        var pieces: [Tensor] = []  // each [b, l_i, vocab]
        func run(_ range: Range<Int>) throws {
            let output = try model(
                .tokenIDs(ids.map { Array($0[range]) }),
                attentionMask: mask?.map { Array($0[range]) },
                state: state)
            state = output.state!
            pieces.append(output.logits)
        }
        if split > 0 { try run(0..<split) }
        for position in split..<length { try run(position..<(position + 1)) }
        let (b, v) = (ids.count, model.config.vocabSize)
        var scalars = [Float](repeating: 0, count: b * length * v)
        var offset = 0
        for piece in pieces {
            let pieceLength = piece.shape[1]
            for row in 0..<b {
                for t in 0..<pieceLength {
                    let source = (row * pieceLength + t) * v
                    let target = (row * length + offset + t) * v
                    scalars.replaceSubrange(target..<(target + v), with: piece.scalars[source..<(source + v)])
                }
            }
            offset += pieceLength
        }
        return Tensor(shape: [b, length, v], scalars: scalars)
    }
}
