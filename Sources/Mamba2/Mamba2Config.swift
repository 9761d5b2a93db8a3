import Foundation

/// transformers' `Mamba2Config`: every field, with transformers' defaults, plus the sizes derived
/// from them. Decodes a Hugging Face `config.json`, or the original mamba_ssm `config.json`
/// (`d_model`, `n_layer`, `ssm_cfg`, …) mapped as transformers' converter maps it.
public struct Mamba2Config: Sendable, Equatable {
    /// `vocab_size`, default 32768.
    public var vocabSize = 32768
    /// `hidden_size` (d), default 4096.
    public var hiddenSize = 4096
    /// `state_size` (n), default 128.
    public var stateSize = 128
    /// `num_hidden_layers`, default 64.
    public var numHiddenLayers = 64
    /// `layer_norm_epsilon`, default 1e-5: every RMSNorm, the gated one included.
    public var layerNormEpsilon: Float = 1e-5
    /// `pad_token_id`, default 1.
    public var padTokenID: Int? = 1
    /// `bos_token_id`, default 0.
    public var bosTokenID: Int? = 0
    /// `eos_token_id` (one id or a list), default 2.
    public var eosTokenIDs: [Int] = [2]
    /// `expand`, default 2: intermediate size = expand · hidden_size.
    public var expand = 2
    /// `conv_kernel` (k), default 4.
    public var convKernel = 4
    /// `n_groups` (g), default 8: heads share B and C within a group.
    public var nGroups = 8
    /// `num_heads` (h), default 128.
    public var numHeads = 128
    /// `head_dim` (p), default 64.
    public var headDim = 64
    /// `use_bias`, default false: biases of `in_proj` and `out_proj`.
    public var useBias = false
    /// `use_conv_bias`, default true.
    public var useConvBias = true
    /// `hidden_act`, default "silu": the activation after the convolution.
    public var hiddenAct = "silu"
    /// `initializer_range`, default 0.1 (training only).
    public var initializerRange = 0.1
    /// `residual_in_fp32`, default true. This package keeps the residual stream in fp32 always.
    public var residualInFP32 = true
    /// `time_step_rank`, default "auto" = ⌈hidden_size / 16⌉ (unused by the Mamba-2 forward).
    public var timeStepRank: Int?
    /// `time_step_min`, default 0.001 (initialization only).
    public var timeStepMin = 0.001
    /// `time_step_max`, default 0.1 (initialization only).
    public var timeStepMax = 0.1
    /// `time_step_floor`, default 1e-4 (initialization only).
    public var timeStepFloor = 1e-4
    /// `time_step_limit`, default (0, ∞): `dt` is clamped to this range after the softplus.
    public var timeStepLimit: ClosedRange<Float> = 0...Float.infinity
    /// `rescale_prenorm_residual`, default false (initialization only).
    public var rescalePrenormResidual = false
    /// `use_cache`, default true.
    public var useCache = true
    /// `chunk_size` (q), default 256: the block length of the chunked SSD.
    public var chunkSize = 256
    /// `tie_word_embeddings`, default false: the LM head reuses the embedding matrix.
    public var tieWordEmbeddings = false
    /// `quantization_config.layout` of an int8 folder (`mamba2 convert --dtype int8`): how its
    /// int8 matrices order their bytes. Loading int8 tensors needs `WeightView.int8Layout`.
    public var int8Layout: String?

    public init() {}

    // MARK: Derived sizes

    /// e = expand · hidden_size = num_heads · head_dim.
    public var intermediateSize: Int { expand * hiddenSize }
    /// Channels of the depthwise convolution: `[x, B, C]` = e + 2·g·n.
    public var convDim: Int { intermediateSize + 2 * nGroups * stateSize }
    /// Width of `in_proj`'s output, split `[z, x, B, C, dt]` = e + conv_dim + h.
    public var inProjSize: Int { intermediateSize + convDim + numHeads }
    /// Heads sharing one group's B and C.
    public var headsPerGroup: Int { numHeads / nGroups }
    /// Channels normalized together by the gated RMSNorm: e / g.
    public var normGroupSize: Int { intermediateSize / nGroups }

    /// Throws a named error for any inconsistent or unsupported field.
    public func validate() throws {
        let positive: [(String, Int)] = [
            ("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("state_size", stateSize),
            ("num_hidden_layers", numHiddenLayers), ("expand", expand), ("conv_kernel", convKernel),
            ("n_groups", nGroups), ("num_heads", numHeads), ("head_dim", headDim), ("chunk_size", chunkSize),
        ]
        for (field, value) in positive where value <= 0 {
            throw Mamba2Error.invalidConfig(field: field, reason: "must be positive, got \(value)")
        }
        guard numHiddenLayers <= 10_000 else {
            throw Mamba2Error.invalidConfig(field: "num_hidden_layers", reason: "\(numHiddenLayers) is beyond any Mamba-2 model (at most 10000)")
        }
        // Bounds far above any real model keep every derived size from overflowing.
        for (field, value) in positive where value > 1 << 24 {
            throw Mamba2Error.invalidConfig(field: field, reason: "\(value) is beyond any Mamba-2 model (at most \(1 << 24))")
        }
        guard hiddenSize * expand == numHeads * headDim else {
            throw Mamba2Error.invalidConfig(
                field: "num_heads",
                reason: "hidden_size * expand (\(hiddenSize * expand)) must equal num_heads * head_dim (\(numHeads * headDim))")
        }
        guard numHeads % nGroups == 0 else {
            throw Mamba2Error.invalidConfig(field: "n_groups", reason: "num_heads (\(numHeads)) must be a multiple of n_groups (\(nGroups))")
        }
        guard layerNormEpsilon.isFinite, layerNormEpsilon >= 0 else {
            throw Mamba2Error.invalidConfig(field: "layer_norm_epsilon", reason: "must be finite and non-negative, got \(layerNormEpsilon)")
        }
        guard timeStepLimit.lowerBound >= 0, !timeStepLimit.lowerBound.isNaN, !timeStepLimit.upperBound.isNaN else {
            throw Mamba2Error.invalidConfig(field: "time_step_limit", reason: "must be [min, max] with 0 ≤ min ≤ max, got \(timeStepLimit)")
        }
        guard ["silu", "swish"].contains(hiddenAct) else {
            throw Mamba2Error.unsupportedConfig(field: "hidden_act", reason: "only \"silu\" is supported (Mamba-2's activation), got \"\(hiddenAct)\"")
        }
    }
}

// MARK: - Decoding

extension Mamba2Config {
    /// Reads `config.json` in `directory` (Hugging Face or mamba_ssm form), or Mistral's
    /// `params.json` when there is no `config.json`, and validates it.
    public init(directory: URL) throws {
        let config = directory.appendingPathComponent("config.json")
        let params = directory.appendingPathComponent("params.json")
        if !FileManager.default.fileExists(atPath: config.path), FileManager.default.fileExists(atPath: params.path) {
            try self.init(file: params)
        } else {
            try self.init(file: config)
        }
    }

    /// Reads and validates a config file (Hugging Face or mamba_ssm form).
    public init(file: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: file)
        } catch {
            throw Mamba2Error.cannotRead(file: file.path, reason: error.localizedDescription)
        }
        try self.init(json: data, file: file.path)
    }

    /// Decodes and validates config JSON; `file` names the source in errors.
    public init(json: Data, file: String = "config.json") throws {
        let object: JSONObject
        do {
            object = try LenientJSON.decoder().decode(JSONObject.self, from: LenientJSON.standardized(json))
        } catch let error as Mamba2Error {
            throw error
        } catch let DecodingError.typeMismatch(_, context) where context.codingPath.isEmpty {
            throw Mamba2Error.malformedConfig(file: file, reason: "the top level must be a JSON object")
        } catch let error as DecodingError {
            throw Mamba2Error.malformedConfig(file: file, reason: Self.describe(error))
        }
        do {
            if object.contains("d_model") {
                try self.init(mambaSSM: object)
            } else if object.contains("dim") && object.contains("n_layers") {
                try self.init(mistral: object)
            } else {
                try self.init(huggingFace: object)
            }
        } catch let error as FieldError {
            throw Mamba2Error.invalidConfig(field: error.field, reason: "\(error.reason) (in \(file))")
        }
        try validate()
    }

    private init(huggingFace json: JSONObject) throws {
        self.init()
        if let type = try json.string("model_type"), type != "mamba2" {
            throw Mamba2Error.unsupportedConfig(field: "model_type", reason: "expected \"mamba2\", got \"\(type)\"")
        }
        vocabSize = try json.int("vocab_size") ?? vocabSize
        hiddenSize = try json.int("hidden_size") ?? hiddenSize
        stateSize = try json.int("state_size") ?? stateSize
        numHiddenLayers = try json.int("num_hidden_layers") ?? numHiddenLayers
        layerNormEpsilon = try json.float("layer_norm_epsilon") ?? layerNormEpsilon
        padTokenID = try json.optionalInt("pad_token_id", default: padTokenID)
        bosTokenID = try json.optionalInt("bos_token_id", default: bosTokenID)
        eosTokenIDs = try json.intList("eos_token_id") ?? eosTokenIDs
        expand = try json.int("expand") ?? expand
        convKernel = try json.int("conv_kernel") ?? convKernel
        nGroups = try json.int("n_groups") ?? nGroups
        numHeads = try json.int("num_heads") ?? numHeads
        headDim = try json.int("head_dim") ?? headDim
        useBias = try json.bool("use_bias") ?? useBias
        useConvBias = try json.bool("use_conv_bias") ?? useConvBias
        hiddenAct = try json.string("hidden_act") ?? hiddenAct
        initializerRange = try json.double("initializer_range") ?? initializerRange
        residualInFP32 = try json.bool("residual_in_fp32") ?? residualInFP32
        timeStepRank = try json.intOrAuto("time_step_rank")
        timeStepMin = try json.double("time_step_min") ?? timeStepMin
        timeStepMax = try json.double("time_step_max") ?? timeStepMax
        timeStepFloor = try json.double("time_step_floor") ?? timeStepFloor
        timeStepLimit = try json.range("time_step_limit") ?? timeStepLimit
        rescalePrenormResidual = try json.bool("rescale_prenorm_residual") ?? rescalePrenormResidual
        useCache = try json.bool("use_cache") ?? useCache
        chunkSize = try json.int("chunk_size") ?? chunkSize
        tieWordEmbeddings = try json.bool("tie_word_embeddings") ?? tieWordEmbeddings
        int8Layout = try json.object("quantization_config")?.string("layout")
        if try json.bool("norm_before_gate") == true {
            throw Mamba2Error.unsupportedConfig(field: "norm_before_gate", reason: "Mamba-2 checkpoints gate before the norm (false)")
        }
        if timeStepRank == nil { timeStepRank = (hiddenSize + 15) / 16 }
    }

    /// The original mamba_ssm `MambaConfig`, as transformers' `convert_mamba2_ssm_checkpoint_to_pytorch.py` maps it, except that the
    /// `ssm_cfg` sizes are honoured rather than replaced by transformers' defaults.
    private init(mambaSSM json: JSONObject) throws {
        self.init()
        hiddenSize = try json.int("d_model") ?? hiddenSize
        numHiddenLayers = try json.int("n_layer") ?? numHiddenLayers
        if let intermediate = try json.int("d_intermediate"), intermediate != 0 {
            throw Mamba2Error.unsupportedConfig(field: "d_intermediate", reason: "MLP layers between mixers (\(intermediate)) are not part of Mamba-2")
        }
        if let attention = try json.intList("attn_layer_idx"), !attention.isEmpty {
            throw Mamba2Error.unsupportedConfig(field: "attn_layer_idx", reason: "hybrid attention layers \(attention) are not part of Mamba-2")
        }
        if try json.bool("rms_norm") == false {
            throw Mamba2Error.unsupportedConfig(field: "rms_norm", reason: "Mamba-2 uses RMSNorm")
        }
        residualInFP32 = try json.bool("residual_in_fp32") ?? true
        tieWordEmbeddings = try json.bool("tie_embeddings") ?? true
        layerNormEpsilon = try json.float("norm_epsilon") ?? 1e-5
        nGroups = try json.int("n_groups") ?? 1
        // mamba_ssm pads the embedding to a multiple of pad_vocab_size_multiple (default 8).
        let vocabulary = try json.int("vocab_size") ?? vocabSize
        let multiple = try json.int("pad_vocab_size_multiple") ?? 8
        guard multiple > 0 else { throw FieldError(field: "pad_vocab_size_multiple", reason: "must be positive") }
        vocabSize = (vocabulary + multiple - 1) / multiple * multiple
        // The converter's token ids: `<|endoftext|>` (0) of the GPT-NeoX tokenizer for all three.
        padTokenID = 0
        bosTokenID = 0
        eosTokenIDs = [0]
        // mamba_ssm's Mamba2 defaults, which equal transformers' except n_groups.
        if let ssm = try json.object("ssm_cfg") {
            let layer = try ssm.string("layer") ?? "Mamba1"
            guard layer == "Mamba2" else {
                throw Mamba2Error.unsupportedConfig(field: "ssm_cfg.layer", reason: "\"\(layer)\" is not Mamba-2 (mamba_ssm defaults to Mamba1 when absent)")
            }
            stateSize = try ssm.int("d_state", path: "ssm_cfg") ?? 128
            convKernel = try ssm.int("d_conv", path: "ssm_cfg") ?? 4
            expand = try ssm.int("expand", path: "ssm_cfg") ?? 2
            headDim = try ssm.int("headdim", path: "ssm_cfg") ?? 64
            nGroups = try ssm.int("ngroups", path: "ssm_cfg") ?? nGroups
            chunkSize = try ssm.int("chunk_size", path: "ssm_cfg") ?? 256
            useBias = try ssm.bool("bias", path: "ssm_cfg") ?? false
            useConvBias = try ssm.bool("conv_bias", path: "ssm_cfg") ?? true
            timeStepLimit = try ssm.range("dt_limit", path: "ssm_cfg") ?? timeStepLimit
            timeStepMin = try ssm.double("dt_min", path: "ssm_cfg") ?? timeStepMin
            timeStepMax = try ssm.double("dt_max", path: "ssm_cfg") ?? timeStepMax
            if try ssm.bool("rmsnorm", path: "ssm_cfg") == false {
                throw Mamba2Error.unsupportedConfig(field: "ssm_cfg.rmsnorm", reason: "the ungated-norm variant is not supported")
            }
            if try ssm.bool("norm_before_gate", path: "ssm_cfg") == true {
                throw Mamba2Error.unsupportedConfig(field: "ssm_cfg.norm_before_gate", reason: "Mamba-2 checkpoints gate before the norm (false)")
            }
            if try ssm.bool("D_has_hdim", path: "ssm_cfg") == true {
                throw Mamba2Error.unsupportedConfig(field: "ssm_cfg.D_has_hdim", reason: "D per channel is not supported (transformers has D per head)")
            }
            guard headDim > 0, expand > 0, hiddenSize > 0, hiddenSize <= 1 << 24, expand <= 1 << 8 else {
                throw FieldError(field: "ssm_cfg", reason: "d_model, expand and headdim must be positive and sane")
            }
            if let mlp = try ssm.int("d_ssm", path: "ssm_cfg"), mlp != expand * hiddenSize {
                throw Mamba2Error.unsupportedConfig(field: "ssm_cfg.d_ssm", reason: "a partial SSM with an MLP branch is not supported")
            }
        } else {
            throw Mamba2Error.unsupportedConfig(field: "ssm_cfg", reason: "absent: mamba_ssm then builds Mamba1 layers")
        }
        numHeads = expand * hiddenSize / headDim
        timeStepRank = (hiddenSize + 15) / 16
    }

    /// Mistral's `params.json` (mistralai/Mamba-Codestral-7B-v0.1: `dim`, `n_layers`, `n_groups`,
    /// `vocab_size`, `tie_embeddings`, …), as transformers' converter maps it: the SSM sizes are
    /// transformers' defaults (Codestral's), unless the file names them.
    private init(mistral json: JSONObject) throws {
        self.init()
        hiddenSize = try json.int("dim") ?? hiddenSize
        numHiddenLayers = try json.int("n_layers") ?? numHiddenLayers
        nGroups = try json.int("n_groups") ?? 1
        residualInFP32 = try json.bool("residual_in_fp32") ?? residualInFP32
        tieWordEmbeddings = try json.bool("tie_embeddings") ?? tieWordEmbeddings
        layerNormEpsilon = try json.float("norm_eps") ?? layerNormEpsilon
        if try json.bool("rms_norm") == false {
            throw Mamba2Error.unsupportedConfig(field: "rms_norm", reason: "Mamba-2 uses RMSNorm")
        }
        let vocabulary = try json.int("vocab_size") ?? vocabSize
        let multiple = try json.int("pad_vocab_size_multiple") ?? 1
        guard multiple > 0 else { throw FieldError(field: "pad_vocab_size_multiple", reason: "must be positive") }
        vocabSize = (vocabulary + multiple - 1) / multiple * multiple
        headDim = try json.int("head_dim") ?? headDim
        stateSize = try json.int("state_size") ?? json.int("d_state") ?? stateSize
        expand = try json.int("expand") ?? expand
        convKernel = try json.int("conv_kernel") ?? json.int("d_conv") ?? convKernel
        chunkSize = try json.int("chunk_size") ?? chunkSize
        guard headDim > 0 else { throw FieldError(field: "head_dim", reason: "must be positive") }
        numHeads = expand * hiddenSize / headDim
        timeStepRank = (hiddenSize + 15) / 16
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case let .dataCorrupted(context):
            "not valid JSON (\(context.debugDescription))"
        default:
            "\(error)"
        }
    }
}
