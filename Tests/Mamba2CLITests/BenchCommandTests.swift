import Foundation
import Testing
import TestSupport

@Suite("mamba2 bench")
struct BenchCommandTests {
    struct Output: Decodable {
        let prefill_tokens_per_second: Double
        let decode_tokens_per_second: Double
        let peak_rss_bytes: Int
        let memory_read_bytes_per_second: Double
        let decode_bytes_per_step: Int
        let decode_bandwidth_bound_tokens_per_second: Double
        let decode_fraction_of_bound: Double
        let decode_weight_bytes_per_step: Int
        let decode_fraction_of_weight_bound: Double
        let runs: Int
        let state_dtype: String
        let weights: String
    }

    @Test("one JSON line; the bandwidth probes' 1 GiB buffers stay out of the peak memory")
    func builtInModel() throws {
        let model = fixtures.appendingPathComponent("g2-fp32").path
        let result = try runMamba2(["bench", "--model", model, "--prompt-len", "8", "--new-tokens", "4", "--runs", "2"])
        #expect(result.status == 0, "\(result.stderr)")
        let output = try JSONDecoder().decode(Output.self, from: Data(result.stdout.utf8))
        #expect(output.runs == 2 && output.prefill_tokens_per_second > 0 && output.decode_tokens_per_second > 0)
        #expect(output.memory_read_bytes_per_second > 1e8 && output.decode_bytes_per_step > 0)
        #expect(output.decode_fraction_of_bound > 0)
        #expect(abs(output.decode_bandwidth_bound_tokens_per_second - output.memory_read_bytes_per_second / Double(output.decode_bytes_per_step)) < 1e-6 * output.decode_bandwidth_bound_tokens_per_second)
        // The weight bytes alone: fewer bytes than a step moves, so a larger bound and a smaller
        // fraction, in the ratio of the bytes (each run's rate against the same probe).
        #expect(output.decode_weight_bytes_per_step > 0 && output.decode_weight_bytes_per_step < output.decode_bytes_per_step)
        let scaled = output.decode_fraction_of_bound * Double(output.decode_weight_bytes_per_step) / Double(output.decode_bytes_per_step)
        #expect(abs(output.decode_fraction_of_weight_bound - scaled) <= 1e-9 * scaled)
        // A tiny model: the process stays far below the probe's buffer.
        #expect(output.peak_rss_bytes > 0 && output.peak_rss_bytes < 1 << 29, "peak RSS \(output.peak_rss_bytes)")
    }

    @Test("--probe-each-token pairs every extra decoded token with reads; without it there are no paired figures")
    func probeEachToken() throws {
        let model = fixtures.appendingPathComponent("g2-fp32").path
        let arguments = ["bench", "--model", model, "--prompt-len", "4", "--new-tokens", "3", "--runs", "1"]
        let plain = try runMamba2(arguments)
        #expect(plain.status == 0, "\(plain.stderr)")
        #expect(!plain.stdout.contains("paired_"))
        let result = try runMamba2(arguments + ["--probe-each-token"])
        #expect(result.status == 0, "\(result.stderr)")
        let fields = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let output = try JSONDecoder().decode(Output.self, from: Data(result.stdout.utf8))
        #expect(fields["paired_tokens"] as? Int == 3)
        #expect([1, 4, 8].contains(fields["paired_read_streams"] as? Int ?? 0))
        #expect((fields["paired_read_bytes_per_second"] as? Double ?? 0) > 1e8)
        let (low, median, high) = (fields["paired_token_seconds_min"] as? Double ?? 0, fields["paired_token_seconds"] as? Double ?? 0, fields["paired_token_seconds_max"] as? Double ?? 0)
        #expect(0 < low && low <= median && median <= high, "\(low) \(median) \(high)")
        // The weight bytes' fraction is the same pairs' scaled by the bytes, as for the runs.
        let all = try #require(fields["paired_decode_fraction_of_bound"] as? Double)
        let weights = try #require(fields["paired_decode_fraction_of_weight_bound"] as? Double)
        let scaled = all * Double(output.decode_weight_bytes_per_step) / Double(output.decode_bytes_per_step)
        #expect(all > 0 && abs(weights - scaled) <= 1e-9 * scaled)
        // And each against a plain read of its own weight bytes: every matrix a step reads (two
        // per layer and the tied head, once), less the partial cache lines at each one's ends.
        let config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: model).appendingPathComponent("config.json"))) as? [String: Any])
        func size(_ key: String) -> Int { config[key] as? Int ?? 0 }
        let (hidden, layers) = (size("hidden_size"), size("num_hidden_layers"))
        let inner = size("expand") * hidden
        let inProj = (2 * inner + 2 * size("n_groups") * size("state_size") + size("num_heads")) * hidden
        #expect(output.decode_weight_bytes_per_step == 4 * (layers * (inProj + hidden * inner) + size("vocab_size") * hidden))
        let matrices = 2 * layers + 1
        let readBytes = try #require(fields["paired_weight_read_bytes"] as? Int)
        #expect(readBytes <= output.decode_weight_bytes_per_step && readBytes > output.decode_weight_bytes_per_step - 128 * matrices, "\(readBytes) of \(output.decode_weight_bytes_per_step)")
        #expect([1, 4, 8].contains(fields["paired_weight_read_streams"] as? Int ?? 0))
        for key in ["paired_weight_read_bytes_per_second", "paired_decode_fraction_of_weight_read"] {
            let value = fields[key] as? Double ?? 0
            #expect(value > 0 && value.isFinite, "\(key): \(value)")
        }
        // The reads' 1 GiB buffer comes after the peak memory was read.
        #expect(output.peak_rss_bytes > 0 && output.peak_rss_bytes < 1 << 29, "peak RSS \(output.peak_rss_bytes)")
    }

    @Test("--new-tokens 0 times the prompt only: the decode figures are null, not 0")
    func noDecode() throws {
        let model = fixtures.appendingPathComponent("g2-fp32").path
        let result = try runMamba2(["bench", "--model", model, "--prompt-len", "4", "--new-tokens", "0", "--runs", "1"])
        #expect(result.status == 0, "\(result.stderr)")
        let fields = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect((fields["prefill_tokens_per_second"] as? Double ?? 0) > 0)
        for key in ["decode_tokens_per_second", "decode_fraction_of_bound", "decode_fraction_of_weight_bound"] {
            #expect(fields[key] is NSNull, "\(key): \(String(describing: fields[key]))")
        }
    }

    @Test("--state-dtype bfloat16: each step moves 2 bytes per SSM state value instead of 4")
    func bfloat16State() throws {
        let model = fixtures.appendingPathComponent("g2-fp32")
        var outputs: [Output] = []
        for dtype in ["float32", "bfloat16"] {
            let result = try runMamba2(["bench", "--model", model.path, "--prompt-len", "4", "--new-tokens", "2", "--runs", "1", "--state-dtype", dtype])
            #expect(result.status == 0, "\(result.stderr)")
            outputs.append(try JSONDecoder().decode(Output.self, from: Data(result.stdout.utf8)))
        }
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: model.appendingPathComponent("config.json"))) as! [String: Any]
        let values = ["num_hidden_layers", "num_heads", "head_dim", "state_size"].map { config[$0] as! Int }.reduce(1, *)
        #expect(outputs.map(\.state_dtype) == ["F32", "BF16"])
        // Read and written: 2 × (4 − 2) bytes fewer per value.
        #expect(outputs[0].decode_bytes_per_step - outputs[1].decode_bytes_per_step == 4 * values)
    }

    @Test("--no-mmap reads the folder into memory and says so; forward gives the same logits with it")
    func noMmap() throws {
        let model = fixtures.appendingPathComponent("g1-sharded").path
        var outputs: [Output] = []
        for extra in [[], ["--no-mmap"]] {
            let result = try runMamba2(["bench", "--model", model, "--prompt-len", "4", "--new-tokens", "2", "--runs", "1"] + extra)
            #expect(result.status == 0, "\(result.stderr)")
            outputs.append(try JSONDecoder().decode(Output.self, from: Data(result.stdout.utf8)))
        }
        #expect(outputs.map(\.weights) == ["mapped", "in-memory"])
        for refused in [["--random-shape", "130m", "--no-mmap"], ["--model", model, "--dtype", "int8", "--no-mmap"]] {
            let result = try runMamba2(["bench"] + refused)
            #expect(result.status != 0 && result.stderr.contains("--no-mmap"), "\(refused): \(result.stderr)")
        }

        let directory = scratchURL("no-mmap")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var written: [Data] = []
        for extra in [[], ["--no-mmap"]] {
            let output = directory.appendingPathComponent("logits\(written.count).npy")
            let result = try runMamba2(["forward", "--model", model, "--ids", "1,2,3,4", "--output", output.path] + extra)
            #expect(result.status == 0, "\(result.stderr)")
            written.append(try Data(contentsOf: output))
        }
        #expect(written[0] == written[1] && written[0].count > 128)
    }

    @Test("bad settings are one-line errors")
    func badSettings() throws {
        let model = fixtures.appendingPathComponent("g2-fp32").path
        for arguments in [["--runs", "0"], ["--path", "fastest"], ["--threads", "0"], ["--probe-each-token", "--new-tokens", "0"]] {
            let result = try runMamba2(["bench", "--model", model] + arguments)
            #expect(result.status != 0 && result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
        }
        let result = try runMamba2(["bench", "--model", model, "--probe-each-token", "--new-tokens", "0"])
        #expect(result.stderr.contains("--probe-each-token") && result.stderr.contains("--new-tokens"), "\(result.stderr)")
    }
}
