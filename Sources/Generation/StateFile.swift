import Foundation
import Mamba2
import SafeTensors
import Tensors

/// A generation session saved to disk: a safetensors file holding every layer's conv and SSM
/// state (`layers.{i}.conv` `[b, k − 1, conv_dim]`, `layers.{i}.ssm` `[b, h, p, n]`), the
/// next-token scores (`next_logits` `[b, v]`), and in its metadata the token history and the
/// model sizes it belongs to. Its size is fixed by the model, whatever the context length.
public enum StateFile {
    static let format = "swift-mamba2-state"
    static let version = "1"

    /// The config fields a state depends on, as `name=value` pairs.
    static func fingerprint(_ config: Mamba2Config) -> [String: String] {
        [
            "hidden_size": "\(config.hiddenSize)", "num_hidden_layers": "\(config.numHiddenLayers)",
            "num_heads": "\(config.numHeads)", "head_dim": "\(config.headDim)", "state_size": "\(config.stateSize)",
            "n_groups": "\(config.nGroups)", "conv_kernel": "\(config.convKernel)", "vocab_size": "\(config.vocabSize)",
        ]
    }

    /// Writes a settled session (`Generator.settle` feeds any pending tokens first).
    public static func write(_ session: GenerationSession, for config: Mamba2Config, to url: URL) throws {
        guard session.pending == nil else {
            throw GenerationError.invalidInput("the session's last tokens are not yet in its state: save Generator.settle(session)")
        }
        try session.state.validate(for: config, batchSize: session.batchSize)
        guard session.nextLogits.shape == [session.batchSize, config.vocabSize], session.nextLogits.count == session.batchSize * config.vocabSize else {
            throw GenerationError.invalidInput("next-token scores of shape \(session.nextLogits.shape) for \(session.batchSize) rows of \(config.vocabSize)")
        }
        var tensors: [String: WeightView] = ["next_logits": WeightView(session.nextLogits)]
        for (index, layer) in session.state.layers.enumerated() {
            tensors["layers.\(index).conv"] = WeightView(layer.conv)
            tensors["layers.\(index).ssm"] = WeightView(layer.ssm, as: layer.ssmStorage.dtype)  // bf16 widened and rounded back: exact
        }
        var metadata = fingerprint(config)
        metadata["format"] = format
        metadata["version"] = version
        metadata["history"] = session.history.map { $0.map(String.init).joined(separator: ",") }.joined(separator: ";")
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: url)
    }

    /// Reads a state file and checks it against `config`; every mismatch is named.
    public static func read(_ url: URL, for config: Mamba2Config) throws -> GenerationSession {
        let file = try SafeTensorsFile(path: url.path)
        let path = url.path
        guard file.metadata["format"] == format else {
            throw GenerationError.malformedFile(file: path, reason: "not a swift-mamba2 state file (metadata format is \(file.metadata["format"].map(\.debugDescription) ?? "missing"))")
        }
        guard file.metadata["version"] == version else {
            throw GenerationError.malformedFile(file: path, reason: "state file version \(file.metadata["version"] ?? "?") is not \(version)")
        }
        for (key, value) in fingerprint(config).sorted(by: { $0.key < $1.key }) where file.metadata[key] != value {
            throw GenerationError.stateMismatch(file: path, reason: "saved for \(key) = \(file.metadata[key] ?? "?"), the model has \(value)")
        }
        guard let historyText = file.metadata["history"] else {
            throw GenerationError.malformedFile(file: path, reason: "metadata has no token history")
        }
        let history = try historyText.split(separator: ";", omittingEmptySubsequences: false).map { row in
            try row.split(separator: ",").map { text -> Int in
                guard let id = Int(text), id >= 0, id < config.vocabSize else {
                    throw GenerationError.malformedFile(file: path, reason: "token history holds \(String(text).debugDescription), not a token id")
                }
                return id
            }
        }
        let rows = history.count
        func tensor(_ name: String, _ shape: [Int]) throws -> Tensor {
            guard file.tensors[name] != nil else { throw GenerationError.malformedFile(file: path, reason: "missing tensor '\(name)'") }
            let view = try file.view(name)
            guard view.shape == shape, view.dtype == .float32 else {
                throw GenerationError.stateMismatch(file: path, reason: "tensor '\(name)' is \(view.dtype.rawValue) \(view.shape), expected F32 \(shape)")
            }
            return view.tensor()
        }
        // The SSM state as it was kept: F32, or BF16 in every layer.
        let ssmShape = [rows, config.numHeads, config.headDim, config.stateSize]
        let ssmDType: DType = file.tensors["layers.0.ssm"]?.dtype == DType.bfloat16.rawValue ? .bfloat16 : .float32
        let layers = try (0..<config.numHiddenLayers).map { index in
            let name = "layers.\(index).ssm"
            let conv = try tensor("layers.\(index).conv", [rows, config.convKernel - 1, config.convDim])
            guard ssmDType == .bfloat16 else {
                guard file.tensors[name]?.dtype ?? DType.float32.rawValue == DType.float32.rawValue else {
                    throw GenerationError.stateMismatch(file: path, reason: "tensor '\(name)' is \(file.tensors[name]!.dtype) \(file.tensors[name]!.shape), expected F32 \(ssmShape) as layer 0's (or BF16 in every layer)")
                }
                return Mamba2State.Layer(conv: conv, ssm: try tensor(name, ssmShape))
            }
            guard file.tensors[name] != nil else { throw GenerationError.malformedFile(file: path, reason: "missing tensor '\(name)'") }
            let view = try file.view(name)
            guard view.shape == ssmShape, view.dtype == .bfloat16 else {
                throw GenerationError.stateMismatch(file: path, reason: "tensor '\(name)' is \(view.dtype.rawValue) \(view.shape), expected BF16 \(ssmShape) as layer 0's")
            }
            let bits = [UInt16](unsafeUninitializedCapacity: view.count) { buffer, initialized in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: view.bytes)  // the file's offset need not be 2-byte aligned
                initialized = view.count
            }
            return Mamba2State.Layer(conv: conv, ssmStorage: SSMStateStorage(bfloat16: bits, shape: ssmShape))
        }
        let expected = Set(["next_logits"] + (0..<config.numHiddenLayers).flatMap { ["layers.\($0).conv", "layers.\($0).ssm"] })
        if let extra = file.tensors.keys.sorted().first(where: { !expected.contains($0) }) {
            throw GenerationError.malformedFile(file: path, reason: "unexpected tensor '\(extra)'")
        }
        return GenerationSession(
            state: Mamba2State(layers: layers), nextLogits: try tensor("next_logits", [rows, config.vocabSize]),
            history: history, pending: nil)
    }

    /// Bytes a state file's tensors take for `batch` sequences whose SSM state is kept in
    /// `ssmDType` (the header adds well under 1 KB).
    public static func tensorBytes(for config: Mamba2Config, batch: Int = 1, ssmDType: DType = .float32) -> Int {
        Mamba2State.byteCount(config: config, batchSize: batch, ssmDType: ssmDType) + 4 * batch * config.vocabSize
    }
}
