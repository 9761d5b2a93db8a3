import Foundation
import SafeTensors
import Tensors

/// What the model reads: token ids, or embeddings computed elsewhere (transformers' `inputs_embeds`).
public enum Mamba2Input: Sendable {
    /// `[b][l]` token ids; every row has the same length.
    case tokenIDs([[Int]])
    /// `[b, l, d]`.
    case embeddings(Tensor)
}

/// transformers' `Mamba2Output`.
public struct Mamba2Output: Sendable {
    /// `[b, l, d]`, after `norm_f`.
    public var lastHiddenState: Tensor
    /// When asked for: transformers 5's `hidden_states`, the output of every block, then the
    /// final normed state (`num_hidden_layers + 1` tensors of `[b, l, d]`).
    public var hiddenStates: [Tensor]?
    /// The state after these tokens, when a state was given or `useCache` set.
    public var state: Mamba2State?
}

/// transformers' `Mamba2Model`: embeddings → N × (RMSNorm → mixer → residual) → `norm_f`.
public struct Mamba2Model: Sendable {
    public let config: Mamba2Config
    public let weights: Mamba2Weights
    /// Threads of the fast path (all cores by default).
    public var threads: Int
    /// How states this model starts store the SSM state: `.float32` (default) or `.bfloat16`
    /// (see `Mamba2State.init(config:batchSize:ssmDType:)`); any other dtype is an error when a
    /// state is made.
    public var ssmStateDType: DType = .float32
    let fast: Mamba2FastForward

    public init(config: Mamba2Config, weights: Mamba2Weights, threads: Int = Fast.defaultThreads) {
        self.config = config
        self.weights = weights
        self.threads = max(1, threads)
        fast = Mamba2FastForward(config: config, weights: weights)
    }

    /// Runs the model over a batch.
    /// - attentionMask: `[b][l]` of 0/1, 0 marking left padding.
    /// - state: continue from this state (e.g. after a prompt); its advanced copy is returned.
    /// - useCache: return the state even when none was given (starting from zeros).
    public func callAsFunction(
        _ input: Mamba2Input,
        attentionMask: [[Int]]? = nil,
        state: Mamba2State? = nil,
        useCache: Bool = false,
        outputHiddenStates: Bool = false,
        scan: SSMScan = .automatic,
        path: ForwardPath = .fast
    ) throws -> Mamba2Output {
        let batch = try batchSize(of: input)
        if state == nil { try Mamba2State.checkSSMDType(ssmStateDType) }
        var current = state ?? Mamba2State(config: config, batchSize: batch, ssmDType: ssmStateDType)
        var output = try self(input, attentionMask: attentionMask, updating: &current, outputHiddenStates: outputHiddenStates, scan: scan, path: path)
        output.state = state != nil || useCache ? current : nil
        return output
    }

    /// Runs the model and advances `state` in place: the decoding loop's form, which copies no
    /// state when the caller holds the only reference to it. The output's `state` is nil.
    public func callAsFunction(
        _ input: Mamba2Input,
        attentionMask: [[Int]]? = nil,
        updating state: inout Mamba2State,
        outputHiddenStates: Bool = false,
        scan: SSMScan = .automatic,
        path: ForwardPath = .fast
    ) throws -> Mamba2Output {
        var hiddenStates = try embed(input)  // [b, l, d]
        let (b, l) = (hiddenStates.shape[0], hiddenStates.shape[1])
        let mask = try maskTensor(attentionMask, batch: b, length: l)  // [b, l]
        try state.validate(for: config, batchSize: b)
        if case let .chunked(chunkSize?) = scan, chunkSize <= 0 {
            throw Mamba2Error.invalidInput("chunk size must be positive, got \(chunkSize)")
        }

        if path == .fast {
            let (output, all) = fast(hiddenStates, mask: mask, state: &state, scan: scan, threads: threads, collect: outputHiddenStates)
            return Mamba2Output(lastHiddenState: output, hiddenStates: outputHiddenStates ? all : nil, state: nil)
        }
        var all: [Tensor] = []
        for (index, block) in weights.layers.enumerated() {
            let residual = hiddenStates  // [b, l, d], fp32 (residual_in_fp32 holds by construction)
            let normed = Reference.rmsNorm(hiddenStates, weight: block.norm, epsilon: config.layerNormEpsilon)
            let mixer = Mamba2Mixer(config: config, weights: block.mixer)
            hiddenStates = residual + mixer(normed, mask: mask, state: &state.layers[index], scan: scan)
            if outputHiddenStates { all.append(hiddenStates) }
        }
        hiddenStates = Reference.rmsNorm(hiddenStates, weight: weights.normF, epsilon: config.layerNormEpsilon)
        if outputHiddenStates { all.append(hiddenStates) }
        return Mamba2Output(lastHiddenState: hiddenStates, hiddenStates: outputHiddenStates ? all : nil, state: nil)
    }

    /// The batch size of an input, before it is validated in full.
    func batchSize(of input: Mamba2Input) throws -> Int {
        switch input {
        case let .tokenIDs(rows): return max(rows.count, 1)
        case let .embeddings(tensor): return tensor.rank == 3 ? max(tensor.shape[0], 1) : 1
        }
    }

    /// `[b, l, d]` from ids (checked against the vocabulary) or given embeddings.
    func embed(_ input: Mamba2Input) throws -> Tensor {
        switch input {
        case let .tokenIDs(rows):
            guard let length = rows.first?.count, length > 0 else {
                throw Mamba2Error.invalidInput("input_ids must hold at least one row of at least one token")
            }
            for (row, ids) in rows.enumerated() {
                guard ids.count == length else {
                    throw Mamba2Error.invalidInput("input_ids row \(row) has \(ids.count) tokens, row 0 has \(length); pad rows to one length")
                }
                for (position, id) in ids.enumerated() where id < 0 || id >= config.vocabSize {
                    throw Mamba2Error.tokenIDOutOfRange(id: id, vocabularySize: config.vocabSize, row: row, position: position)
                }
            }
            return Reference.embedding(rows.flatMap { $0 }, table: weights.embeddings)
                .reshaped([rows.count, length, config.hiddenSize])
        case let .embeddings(tensor):
            guard tensor.rank == 3, tensor.shape[0] > 0, tensor.shape[1] > 0, tensor.shape[2] == config.hiddenSize,
                  tensor.count == tensor.shape.reduce(1, *) else {
                throw Mamba2Error.invalidInput("inputs_embeds has shape \(tensor.shape), expected [batch, length, \(config.hiddenSize)]")
            }
            return tensor
        }
    }

    /// The 0/1 mask as `[b, l]`, or nil when there is none.
    func maskTensor(_ mask: [[Int]]?, batch: Int, length: Int) throws -> Tensor? {
        guard let mask else { return nil }
        guard mask.count == batch, mask.allSatisfy({ $0.count == length }) else {
            throw Mamba2Error.invalidInput("attention_mask must be [\(batch)][\(length)] like the input, got \(mask.count) rows of \(mask.map(\.count))")
        }
        guard mask.allSatisfy({ $0.allSatisfy { $0 == 0 || $0 == 1 } }) else {
            throw Mamba2Error.invalidInput("attention_mask values must be 0 or 1")
        }
        return Tensor(shape: [batch, length], scalars: mask.flatMap { $0.map(Float.init) })
    }
}

/// transformers' `Mamba2CausalLMOutput`.
public struct Mamba2CausalLMOutput: Sendable {
    /// Mean shifted cross-entropy over labels that are not −100, when labels were given.
    public var loss: Float?
    /// `[b, l, vocab]`.
    public var logits: Tensor
    public var hiddenStates: [Tensor]?
    public var state: Mamba2State?
}

/// transformers' `Mamba2ForCausalLM`: the backbone and a linear head (tied or not).
public struct Mamba2ForCausalLM: Sendable {
    public private(set) var backbone: Mamba2Model
    public var config: Mamba2Config { backbone.config }
    /// See `Mamba2Model.ssmStateDType`.
    public var ssmStateDType: DType {
        get { backbone.ssmStateDType }
        set { backbone.ssmStateDType = newValue }
    }

    public init(config: Mamba2Config, weights: Mamba2Weights, threads: Int = Fast.defaultThreads) {
        backbone = Mamba2Model(config: config, weights: weights, threads: threads)
    }

    /// Loads a model folder: `config.json` (Hugging Face or mamba_ssm form) and its weights
    /// (safetensors, sharded or not, or mamba_ssm's `pytorch_model.bin`), memory-mapped or, with
    /// `residency: .inMemory`, read into memory.
    public init(
        directory: URL, threads: Int = Fast.defaultThreads, residency: WeightResidency = .mapped,
        progress: ((Int, Int) -> Void)? = nil
    ) throws {
        let config = try Mamba2Config(directory: directory)
        let weights = try Mamba2Weights(config: config, directory: directory, residency: residency, progress: progress)
        self.init(config: config, weights: weights, threads: threads)
    }

    /// Runs the model; see `Mamba2Model.callAsFunction`. With `labels` (`[b][l]`, −100 to
    /// ignore), also the next-token loss: position t's logits are scored against label t + 1.
    /// `logitsToKeep` (transformers' `logits_to_keep`): only the last that many positions get
    /// logits (`[b, keep, vocab]`; 0 keeps all), which spares generation a head product per
    /// prompt token.
    public func callAsFunction(
        _ input: Mamba2Input,
        attentionMask: [[Int]]? = nil,
        state: Mamba2State? = nil,
        useCache: Bool = false,
        labels: [[Int]]? = nil,
        outputHiddenStates: Bool = false,
        logitsToKeep: Int = 0,
        scan: SSMScan = .automatic,
        path: ForwardPath = .fast
    ) throws -> Mamba2CausalLMOutput {
        let output = try backbone(
            input, attentionMask: attentionMask, state: state, useCache: useCache,
            outputHiddenStates: outputHiddenStates, scan: scan, path: path)
        return try head(output, labels: labels, logitsToKeep: logitsToKeep, path: path)
    }

    /// Runs the model and advances `state` in place (see `Mamba2Model`); the output's `state` is nil.
    public func callAsFunction(
        _ input: Mamba2Input,
        attentionMask: [[Int]]? = nil,
        updating state: inout Mamba2State,
        labels: [[Int]]? = nil,
        outputHiddenStates: Bool = false,
        logitsToKeep: Int = 0,
        scan: SSMScan = .automatic,
        path: ForwardPath = .fast
    ) throws -> Mamba2CausalLMOutput {
        let output = try backbone(
            input, attentionMask: attentionMask, updating: &state, outputHiddenStates: outputHiddenStates, scan: scan, path: path)
        return try head(output, labels: labels, logitsToKeep: logitsToKeep, path: path)
    }

    /// The LM head and the loss.
    private func head(_ output: Mamba2Output, labels: [[Int]]?, logitsToKeep: Int, path: ForwardPath) throws -> Mamba2CausalLMOutput {
        guard logitsToKeep >= 0 else { throw Mamba2Error.invalidInput("logitsToKeep must be ≥ 0, got \(logitsToKeep)") }
        if labels != nil && logitsToKeep != 0 { throw Mamba2Error.invalidInput("a loss needs every position's logits (logitsToKeep 0)") }
        var hidden = output.lastHiddenState  // [b, l, d]
        let (b, l, d) = (hidden.shape[0], hidden.shape[1], hidden.shape[2])
        if logitsToKeep > 0 && logitsToKeep < l {
            // [b, l, d] → [b, keep, d]: the last positions of every row.
            var kept: [Float] = []
            kept.reserveCapacity(b * logitsToKeep * d)
            for row in 0..<b { kept += hidden.scalars[((row * l + l - logitsToKeep) * d)..<((row + 1) * l * d)] }
            hidden = Tensor(shape: [b, logitsToKeep, d], scalars: kept)
        }
        let logits = switch path {  // [b, keep, vocab]
        case .reference: Reference.linear(hidden, weight: backbone.weights.lmHead)
        case .fast: Fast.linear(hidden, weight: backbone.weights.lmHead, threads: backbone.threads)
        }
        let loss = try labels.map { try Self.causalLanguageModelingLoss(logits: logits, labels: $0) }
        return Mamba2CausalLMOutput(loss: loss, logits: logits, hiddenStates: output.hiddenStates, state: output.state)
    }

    /// transformers' `ForCausalLMLoss`: labels shifted left by one, −100 ignored, mean over the
    /// rest (NaN when every label is ignored, as torch gives).
    /// - logits: `[b, l, v]`, labels: `[b][l]`.
    public static func causalLanguageModelingLoss(logits: Tensor, labels: [[Int]]) throws -> Float {
        let (b, l, v) = (logits.shape[0], logits.shape[1], logits.shape[2])
        guard labels.count == b, labels.allSatisfy({ $0.count == l }) else {
            throw Mamba2Error.invalidInput("labels must be [\(b)][\(l)] like the input, got \(labels.count) rows of \(labels.map(\.count))")
        }
        var total: Double = 0
        var counted = 0
        for row in 0..<b {
            for position in 0..<l {
                let label = labels[row][position]
                guard label == -100 || (0..<v).contains(label) else {
                    throw Mamba2Error.labelOutOfRange(label: label, vocabularySize: v, row: row, position: position)
                }
                guard position > 0, label != -100 else { continue }
                let base = (row * l + position - 1) * v
                let scores = logits.scalars[base..<(base + v)]
                let maximum = scores.max()!
                let logSumExp = Double(maximum) + log(scores.reduce(0.0) { $0 + exp(Double($1 - maximum)) })
                total += logSumExp - Double(scores[base + label])
                counted += 1
            }
        }
        return Float(total / Double(counted))
    }
}
