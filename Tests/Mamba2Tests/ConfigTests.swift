import Foundation
import Testing
@testable import Mamba2

@Suite("Mamba2Config")
struct ConfigTests {
    static func decode(_ json: String) throws -> Mamba2Config {
        try Mamba2Config(json: Data(json.utf8), file: "test/config.json")
    }

    static let small = #""hidden_size": 16, "num_heads": 4, "head_dim": 8, "n_groups": 2, "state_size": 4, "vocab_size": 10, "num_hidden_layers": 1"#

    @Test("a transformers 5 config decodes with every field and derived size")
    func fixtureConfig() throws {
        let config = try Mamba2Config(directory: fixturesDirectory.appendingPathComponent("g3-untied-bias"))
        #expect(config.hiddenSize == 18)
        #expect(config.numHeads == 6 && config.headDim == 6 && config.nGroups == 3)
        #expect(config.stateSize == 5 && config.convKernel == 3 && config.chunkSize == 4)
        #expect(config.useBias && !config.useConvBias && !config.residualInFP32 && !config.tieWordEmbeddings)
        #expect(config.timeStepLimit == 0.01...0.05)
        #expect(config.layerNormEpsilon == 1e-6)
        #expect(config.padTokenID == 1 && config.bosTokenID == 0 && config.eosTokenIDs == [2])
        #expect(config.intermediateSize == 36)
        #expect(config.convDim == 36 + 2 * 3 * 5)
        #expect(config.inProjSize == 36 + 66 + 6)
        #expect(config.headsPerGroup == 2 && config.normGroupSize == 12)
    }

    @Test("defaults are transformers' Mamba2Config defaults (Codestral's shape)")
    func defaults() throws {
        let config = try Self.decode("{}")
        #expect(config.hiddenSize == 4096 && config.numHiddenLayers == 64 && config.numHeads == 128 && config.headDim == 64)
        #expect(config.nGroups == 8 && config.stateSize == 128 && config.chunkSize == 256 && config.vocabSize == 32768)
        #expect(config.timeStepLimit == 0...Float.infinity)
        #expect(config.timeStepRank == 256)
        #expect(config.layerNormEpsilon == 1e-5)
    }

    @Test("time_step_limit infinity as Python's bare Infinity, transformers 5's __float__ or a string")
    func infinityForms() throws {
        for limit in ["[0.0, Infinity]", #"[0.0, {"__float__": "Infinity"}]"#, #"[0.0, "inf"]"#] {
            let config = try Self.decode("{\(Self.small), \"time_step_limit\": \(limit)}")
            #expect(config.timeStepLimit == 0...Float.infinity, "\(limit)")
        }
        // A string that merely contains "Infinity" is left alone.
        let config = try Self.decode(#"{"hidden_act": "silu", "architectures": ["Infinity NaN"], "time_step_limit": [0.001, 0.1]}"#)
        #expect(config.timeStepLimit == 0.001...0.1)
    }

    @Test("eos_token_id may be a list, time_step_rank an integer, ids null")
    func flexibleFields() throws {
        let config = try Self.decode(#"{"eos_token_id": [2, 7], "time_step_rank": 3, "pad_token_id": null}"#)
        #expect(config.eosTokenIDs == [2, 7])
        #expect(config.timeStepRank == 3)
        #expect(config.padTokenID == nil)
    }

    @Test("inconsistent sizes are named errors")
    func validation() throws {
        #expect(throws: Mamba2Error.invalidConfig(field: "num_heads", reason: "hidden_size * expand (32) must equal num_heads * head_dim (40)")) {
            try Self.decode(#"{"hidden_size": 16, "num_heads": 5, "head_dim": 8, "n_groups": 1}"#)
        }
        #expect(throws: Mamba2Error.invalidConfig(field: "n_groups", reason: "num_heads (4) must be a multiple of n_groups (3)")) {
            try Self.decode(#"{"hidden_size": 16, "num_heads": 4, "head_dim": 8, "n_groups": 3}"#)
        }
        #expect(throws: Mamba2Error.invalidConfig(field: "chunk_size", reason: "must be positive, got 0")) {
            try Self.decode("{\(Self.small), \"chunk_size\": 0}")
        }
        #expect(throws: Mamba2Error.unsupportedConfig(field: "hidden_act", reason: "only \"silu\" is supported (Mamba-2's activation), got \"gelu\"")) {
            try Self.decode("{\(Self.small), \"hidden_act\": \"gelu\"}")
        }
        #expect(throws: Mamba2Error.invalidConfig(field: "time_step_limit", reason: "expected min ≤ max, got [0.1, 0.01] (in test/config.json)")) {
            try Self.decode("{\(Self.small), \"time_step_limit\": [0.1, 0.01]}")
        }
        #expect(throws: Mamba2Error.unsupportedConfig(field: "model_type", reason: "expected \"mamba2\", got \"mamba\"")) {
            try Self.decode(#"{"model_type": "mamba"}"#)
        }
    }

    @Test("a field of the wrong type is named with its file")
    func wrongType() throws {
        #expect(throws: Mamba2Error.invalidConfig(field: "hidden_size", reason: "expected an integer (in test/config.json)")) {
            try Self.decode(#"{"hidden_size": "big"}"#)
        }
        #expect(throws: Mamba2Error.invalidConfig(field: "use_bias", reason: "expected true or false (in test/config.json)")) {
            try Self.decode(#"{"use_bias": 1}"#)
        }
        #expect(throws: Mamba2Error.invalidConfig(field: "num_heads", reason: "expected an integer (in test/config.json)")) {
            try Self.decode(#"{"num_heads": 2.5}"#)
        }
    }

    @Test("malformed JSON and missing files name the file")
    func malformed() throws {
        do {
            _ = try Self.decode(#"{"hidden_size": 16,"#)
            Issue.record("no error")
        } catch let Mamba2Error.malformedConfig(file, reason) {
            #expect(file == "test/config.json")
            #expect(reason.hasPrefix("not valid JSON"))
        }
        #expect(throws: Mamba2Error.malformedConfig(file: "test/config.json", reason: "the top level must be a JSON object")) {
            try Self.decode("[1]")
        }
        let missing = URL(fileURLWithPath: "/nonexistent/model")
        do {
            _ = try Mamba2Config(directory: missing)
            Issue.record("no error")
        } catch let Mamba2Error.cannotRead(file, _) {
            #expect(file == "/nonexistent/model/config.json")
        }
    }

    @Test("the original mamba_ssm config maps as transformers' converter does, honouring ssm_cfg")
    func mambaSSM() throws {
        let config = try Mamba2Config(directory: fixturesDirectory.appendingPathComponent("g1-mamba-ssm"))
        let hf = try Mamba2Config(directory: fixturesDirectory.appendingPathComponent("g1-tied"))
        #expect(config.vocabSize == 50)  // 47 rounded up to a multiple of 10
        #expect(config.hiddenSize == hf.hiddenSize && config.numHiddenLayers == hf.numHiddenLayers)
        #expect(config.numHeads == hf.numHeads && config.headDim == hf.headDim && config.nGroups == hf.nGroups)
        #expect(config.stateSize == hf.stateSize && config.convKernel == hf.convKernel && config.chunkSize == hf.chunkSize)
        #expect(config.tieWordEmbeddings && config.residualInFP32)
        #expect(config.padTokenID == 0 && config.bosTokenID == 0 && config.eosTokenIDs == [0])

        // state-spaces/mamba2-130m as published: only {"layer": "Mamba2"} in ssm_cfg.
        let published = try Self.decode(#"""
            {"d_model": 768, "d_intermediate": 0, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {"layer": "Mamba2"},
             "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true,
             "pad_vocab_size_multiple": 16, "tie_embeddings": true}
            """#)
        #expect(published.vocabSize == 50288)
        #expect(published.numHeads == 24 && published.headDim == 64 && published.stateSize == 128 && published.nGroups == 1)
        #expect(published.inProjSize == 2 * 1536 + 2 * 128 + 24)
    }

    @Test("mamba_ssm configs that are not Mamba-2 are refused by name")
    func mambaSSMUnsupported() throws {
        #expect(throws: Mamba2Error.unsupportedConfig(field: "ssm_cfg.layer", reason: "\"Mamba1\" is not Mamba-2 (mamba_ssm defaults to Mamba1 when absent)")) {
            try Self.decode(#"{"d_model": 64, "n_layer": 2, "vocab_size": 10, "ssm_cfg": {}}"#)
        }
        #expect(throws: Mamba2Error.unsupportedConfig(field: "attn_layer_idx", reason: "hybrid attention layers [1] are not part of Mamba-2")) {
            try Self.decode(#"{"d_model": 64, "n_layer": 2, "vocab_size": 10, "ssm_cfg": {"layer": "Mamba2"}, "attn_layer_idx": [1]}"#)
        }
        #expect(throws: Mamba2Error.unsupportedConfig(field: "d_intermediate", reason: "MLP layers between mixers (128) are not part of Mamba-2")) {
            try Self.decode(#"{"d_model": 64, "n_layer": 2, "vocab_size": 10, "d_intermediate": 128, "ssm_cfg": {"layer": "Mamba2"}}"#)
        }
    }

    @Test("Mistral's params.json maps as transformers' converter maps Codestral's")
    func mistralParams() throws {
        let codestral = try Self.decode(#"""
            {"dim": 4096, "n_layers": 64, "vocab_size": 32768, "n_groups": 8, "rms_norm": true, "residual_in_fp32": true,
             "fused_add_norm": true, "pad_vocab_size_multiple": 1, "tie_embeddings": false}
            """#)
        #expect(codestral.hiddenSize == 4096 && codestral.numHiddenLayers == 64 && codestral.nGroups == 8)
        #expect(codestral.numHeads == 128 && codestral.headDim == 64 && codestral.stateSize == 128 && codestral.chunkSize == 256)
        #expect(codestral.vocabSize == 32768 && !codestral.tieWordEmbeddings)
        let fixture = try Mamba2Config(directory: fixturesDirectory.appendingPathComponent("g1-mistral"))
        let hf = try Mamba2Config(directory: fixturesDirectory.appendingPathComponent("g1-tied"))
        #expect(fixture.numHeads == hf.numHeads && fixture.headDim == hf.headDim && fixture.stateSize == hf.stateSize)
        #expect(!fixture.tieWordEmbeddings)
    }
}
