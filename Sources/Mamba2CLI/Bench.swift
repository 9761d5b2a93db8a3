import ArgumentParser
import Foundation
import Mamba2
import Tensors

/// `mamba2 bench`: prefill and decode speed, peak memory, and the machine's bandwidth bound for
/// decoding, measured in one run (median of several runs after a warm-up).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prefill and decode speed and peak memory; prints one JSON line.")

    @Option(help: "Model folder.")
    var model: String?

    @Option(help: "Random weights of a published shape instead of a folder: 130m, 370m, 780m, 1.3b, 2.7b, codestral-7b.")
    var randomShape: String?

    @Option(help: "Prompt tokens per sequence.")
    var promptLen = 512

    @Option(help: "Tokens to decode after the prompt.")
    var newTokens = 64

    @Option(help: "Sequences decoded together.")
    var batch = 1

    @Option(help: "Threads (default: all cores).")
    var threads: Int?

    @Option(help: "Forward path: fast or reference.")
    var path: String = "fast"

    @Option(help: "Weight dtype: float32, bfloat16, float16 or int8 (default: as stored; float32 for random weights).")
    var dtype: String?

    @Option(help: "Timed runs (the median is reported).")
    var runs = 3

    @Flag(name: .customLong("probe-each-token"), help: "After the timed runs, decode --new-tokens more, each followed by one read of a 1 GiB buffer in the read pattern that was fastest just before, and by a plain read of the token's own weight bytes (in the pattern fastest for them), and report each token's rate against those reads' (paired_* fields): bounds taken at the moment of each token rather than the best of nine reads after a run. For models far larger than the caches: the reads evict the weights.")
    var probeEachToken = false

    @OptionGroup var stateDType: StateDTypeOption

    @OptionGroup var loading: WeightResidencyOption

    func run() throws {
        try bench()
    }

    private func bench() throws {
        guard (model == nil) != (randomShape == nil) else { throw CLIError("give exactly one of --model and --random-shape") }
        guard model != nil || loading.residency == .mapped else { throw CLIError("--no-mmap reads a --model folder into memory; random weights are made there already") }
        guard dtype == nil || loading.residency == .mapped else {
            throw CLIError("--no-mmap with --dtype: the converted weights would live in ordinary memory beside the read copy; convert the folder with `mamba2 convert` first")
        }
        guard let forwardPath = ForwardPath(rawValue: path) else { throw CLIError("--path must be fast or reference, got \(path)") }
        guard promptLen > 0, newTokens >= 0, batch > 0, runs > 0 else {
            throw CLIError("--prompt-len, --batch and --runs must be positive and --new-tokens non-negative")
        }
        guard !probeEachToken || newTokens > 0 else { throw CLIError("--probe-each-token pairs decoded tokens with reads: give --new-tokens 1 or more") }
        let weightType = try dtype.map(parseDType)
        let ssmDType = try stateDType.dtype()
        let threadCount = threads ?? Fast.defaultThreads
        guard threadCount > 0 else { throw CLIError("--threads must be positive") }

        let loadStart = DispatchTime.now()
        let lm: Mamba2ForCausalLM
        if let randomShape {
            let config = try Mamba2Config.shape(named: randomShape)
            lm = Mamba2ForCausalLM(config: config, weights: try Mamba2Weights.random(config: config, dtype: weightType ?? .float32), threads: threadCount)
        } else {
            var loaded = try Mamba2ForCausalLM(directory: URL(fileURLWithPath: model!), threads: threadCount, residency: loading.residency, progress: loadingProgress(model!))
            if let weightType { loaded = try Self.converted(loaded, to: weightType, threads: threadCount) }
            lm = loaded
        }
        let loadSeconds = Self.seconds(since: loadStart)
        let config = lm.config

        var generator = SystemRandomNumberGenerator()
        let prompt = (0..<batch).map { _ in (0..<promptLen).map { _ in Int.random(in: 0..<config.vocabSize, using: &generator) } }
        /// - afterEachToken: hears each decoded token's seconds (its time is part of the decode's).
        func once(promptLength: Int, tokens: Int, afterEachToken: ((Double) -> Void)? = nil) throws -> (prefill: Double, decode: Double) {
            let ids = prompt.map { Array($0.prefix(promptLength)) }
            var state = Mamba2State(config: config, batchSize: batch, ssmDType: ssmDType)
            let start = DispatchTime.now()
            // As in generation: the prompt's logits are needed for its last position only.
            var output = try lm(.tokenIDs(ids), updating: &state, logitsToKeep: 1, path: forwardPath)
            let prefill = Self.seconds(since: start)
            let decodeStart = DispatchTime.now()
            for _ in 0..<tokens {
                let tokenStart = DispatchTime.now()
                let next = Self.argmaxLastPosition(output.logits)
                output = try lm(.tokenIDs(next.map { [$0] }), updating: &state, path: forwardPath)
                afterEachToken?(Self.seconds(since: tokenStart))
            }
            return (prefill, Self.seconds(since: decodeStart))
        }
        // Decoding reads every matrix once per step (embedding rows aside) and reads and writes
        // the state (conv fp32, SSM as kept). The weight bytes are the matrices' alone: the
        // norms, conv taps and per-head vectors it also reads are about 0.2% more at 7B.
        let weights = lm.backbone.weights
        let matrixBytes = weights.decodeMatrices.reduce(0) { $0 + $1.storageBytes }
        let stateBytes = Mamba2State.byteCount(config: config, batchSize: batch, ssmDType: ssmDType)
        let bytesPerStep = matrixBytes + 2 * stateBytes

        _ = try once(promptLength: min(promptLen, 16), tokens: min(newTokens, 4))
        // The machine's bandwidth drifts by tens of percent within a minute, so each timed run is
        // paired with a bandwidth probe right after it, where the peak-memory reading can be
        // reset after the probe's buffer is freed (Linux); elsewhere one probe follows all runs.
        var pairProbes = Self.canResetPeakResident
        var peakResident = 0
        var prefillRates: [Double] = []
        var decodeRates: [Double] = []
        var bandwidths: [Double] = []
        var fractions: [Double] = []
        func pairedProbe() -> Double {
            let before = Self.peakResidentBytes()
            peakResident = max(peakResident, before)
            let bandwidth = Fast.measureReadBandwidth(threads: threadCount, repeats: 3)
            Self.resetPeakResident()
            // Where the reset did not take, the probe's 1 GiB stays in VmHWM: no more paired
            // probes, and the peak read before this one stands.
            if Self.peakResidentBytes() >= before + (1 << 29) { pairProbes = false }
            bandwidths.append(bandwidth)
            return bandwidth
        }
        for _ in 0..<runs {
            let (prefill, decode) = try once(promptLength: promptLen, tokens: newTokens)
            prefillRates.append(Double(batch * promptLen) / prefill)
            guard newTokens > 0 else { continue }
            let rate = Double(batch * newTokens) / decode
            decodeRates.append(rate)
            if pairProbes { fractions.append(rate / (pairedProbe() / Double(bytesPerStep) * Double(batch))) }
        }
        // Peak memory of the model's work, read before an unpaired probe allocates its buffer
        // (and not at all after a reset that did not take).
        if pairProbes || bandwidths.isEmpty { peakResident = max(peakResident, Self.peakResidentBytes()) }
        if bandwidths.isEmpty {
            let bandwidth = Fast.measureReadBandwidth(threads: threadCount)
            bandwidths.append(bandwidth)
            fractions = decodeRates.map { $0 / (bandwidth / Double(bytesPerStep) * Double(batch)) }
        }
        let bandwidth = Self.median(bandwidths)
        // Each token against reads next to it: the machine's bandwidth drifts within a run too
        // (7B int8 tokens of one run took 0.20–0.35 s), and the best of nine reads after a run
        // catches its fastest moment. Per token, one read of the 1 GiB buffer and one plain read
        // of the token's own weight bytes, in their pages and order (the bound for those bytes
        // over a token's length; a 1 GiB read is a shorter, likelier fast moment), each in the
        // pattern fastest for it just before, taking turns at following the token directly.
        var paired: [(String, JSONLine.Value)] = []
        if probeEachToken {
            let probe = Fast.ReadProbe()
            let weightProbe = Fast.ReadProbe(reading: weights.decodeMatrices.flatMap(\.storageRegions))
            func fastestPattern(_ probe: Fast.ReadProbe) -> Int32 {
                let rates = Fast.ReadProbe.patterns.map { streams in
                    (streams, Self.median((0..<3).map { _ in probe.read(streams: streams, threads: threadCount) }))
                }
                return rates.max { $0.1 < $1.1 }!.0
            }
            let (pattern, weightPattern) = (fastestPattern(probe), fastestPattern(weightProbe))
            var fractions: [Double] = []
            var weightFractions: [Double] = []
            var reads: [Double] = []
            var weightReads: [Double] = []
            var times: [Double] = []
            _ = try once(promptLength: promptLen, tokens: newTokens) { seconds in
                let read, weightRead: Double
                if times.count % 2 == 0 {
                    read = probe.read(streams: pattern, threads: threadCount)
                    weightRead = weightProbe.read(streams: weightPattern, threads: threadCount)
                } else {
                    weightRead = weightProbe.read(streams: weightPattern, threads: threadCount)
                    read = probe.read(streams: pattern, threads: threadCount)
                }
                times.append(seconds)
                reads.append(read)
                weightReads.append(weightRead)
                fractions.append(Double(bytesPerStep) / (seconds * read))
                weightFractions.append(Double(matrixBytes) / (seconds * weightRead))
            }
            paired = [
                ("paired_tokens", .int(times.count)), ("paired_read_streams", .int(Int(pattern))),
                ("paired_read_bytes_per_second", .double(Self.median(reads))),
                ("paired_token_seconds", .double(Self.median(times))),
                ("paired_token_seconds_min", .double(times.min()!)), ("paired_token_seconds_max", .double(times.max()!)),
                ("paired_decode_fraction_of_bound", .double(Self.median(fractions))),
                ("paired_decode_fraction_of_weight_bound", .double(Self.median(fractions) * Double(matrixBytes) / Double(bytesPerStep))),
                ("paired_weight_read_bytes", .int(weightProbe.bytes)), ("paired_weight_read_streams", .int(Int(weightPattern))),
                ("paired_weight_read_bytes_per_second", .double(Self.median(weightReads))),
                ("paired_decode_fraction_of_weight_read", .double(Self.median(weightFractions))),
            ]
        }
        let parameters = Mamba2Weights.expectedShapes(for: config).values.map { $0.reduce(1, *) }.reduce(0, +)
        let fields: KeyValuePairs<String, JSONLine.Value> = [
            "model": .string(model ?? "random:\(randomShape!)"), "parameters": .int(parameters),
            "path": .string(forwardPath.rawValue), "dtype": .string(weights.inProjDType.rawValue), "state_dtype": .string(ssmDType.rawValue),
            "weights": .string(model == nil ? "random" : loading.residency.rawValue),
            "threads": .int(threadCount), "isa": .string("\(Fast.instructionSet)"), "batch": .int(batch),
            "prompt_len": .int(promptLen), "new_tokens": .int(newTokens), "runs": .int(runs),
            "load_seconds": .double(loadSeconds),
            "prefill_tokens_per_second": .double(Self.median(prefillRates)),
            "decode_tokens_per_second": .double(Self.median(decodeRates)),
            "peak_rss_bytes": .int(peakResident),
            "memory_read_bytes_per_second": .double(bandwidth),
            "decode_bytes_per_step": .int(bytesPerStep),
            "decode_bandwidth_bound_tokens_per_second": .double(bandwidth / Double(bytesPerStep) * Double(batch)),
            "decode_fraction_of_bound": .double(Self.median(fractions)),
            "decode_weight_bytes_per_step": .int(matrixBytes),
            // The same runs against the matrices' bytes alone: each ratio scaled by the bytes'.
            "decode_fraction_of_weight_bound": .double(Self.median(fractions) * Double(matrixBytes) / Double(bytesPerStep)),
        ]
        print(try JSONLine.encode(fields.map { ($0.key, $0.value) } + paired))
    }

    static func converted(_ model: Mamba2ForCausalLM, to dtype: DType, threads: Int) throws -> Mamba2ForCausalLM {
        var weights = model.backbone.weights
        if dtype == .int8 {
            let quantized = weights.quantizedToInt8(tiedEmbeddings: model.config.tieWordEmbeddings, threads: threads)
            return Mamba2ForCausalLM(config: model.config, weights: quantized, threads: threads)
        }
        func convert(_ view: WeightView) -> WeightView { view.dtype == dtype ? view : WeightView(view.tensor(), as: dtype) }
        weights.embeddings = convert(weights.embeddings)
        weights.lmHead = model.config.tieWordEmbeddings ? weights.embeddings : convert(weights.lmHead)
        for index in weights.layers.indices {
            weights.layers[index].mixer.inProj = convert(weights.layers[index].mixer.inProj)
            weights.layers[index].mixer.outProj = convert(weights.layers[index].mixer.outProj)
        }
        return Mamba2ForCausalLM(config: model.config, weights: weights, threads: threads)
    }

    static func argmaxLastPosition(_ logits: Tensor) -> [Int] {
        let (b, l, v) = (logits.shape[0], logits.shape[1], logits.shape[2])
        return (0..<b).map { row in
            let base = (row * l + l - 1) * v
            var best = 0
            for index in 1..<v where logits.scalars[base + index] > logits.scalars[base + best] { best = index }
            return best
        }
    }

    /// NaN (printed as null) for no values: `--new-tokens 0` times no decode.
    static func median(_ values: [Double]) -> Double {
        values.isEmpty ? .nan : values.sorted()[values.count / 2]
    }

    static func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }

    static var canResetPeakResident: Bool { FileManager.default.isWritableFile(atPath: "/proc/self/clear_refs") }

    /// Sets VmHWM back to the current resident size (Linux: "5" to /proc/self/clear_refs).
    static func resetPeakResident() {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return }
        try? handle.write(contentsOf: Data("5".utf8))
        try? handle.close()
    }

    /// VmHWM from /proc/self/status (0 where there is none).
    static func peakResidentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kilobytes = line.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }.first ?? 0
            return kilobytes * 1024
        }
        return 0
    }
}

extension Mamba2Weights {
    var inProjDType: DType { layers.first?.mixer.inProj.dtype ?? embeddings.dtype }

    /// The matrices a decode step reads whole, in its order: each layer's projections, then the
    /// LM head.
    var decodeMatrices: [WeightView] { layers.flatMap { [$0.mixer.inProj, $0.mixer.outProj] } + [lmHead] }
}

