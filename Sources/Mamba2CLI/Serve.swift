import ArgumentParser
import DefaultModel
import Dispatch
import Foundation
import Mamba2Server

/// `mamba2 serve`: the OpenAI-compatible HTTP server.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a model over HTTP with OpenAI's completions API (streaming, concurrent batched decoding).")

    @Option(help: "Model folder (default: the built-in mamba2-pycode model).")
    var model: String?

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one).")
    var port = 8080

    @Option(help: "Requests decoding together in one batched step.")
    var maxBatch = 8

    @Option(help: "Requests waiting for a slot before new ones are refused with 429.")
    var maxQueue = 64

    @Option(help: "Longest prompt in tokens; longer prompts get 400.")
    var maxPromptTokens = 8192

    @Option(help: "Largest max_tokens a request may ask for.")
    var maxTokens = 4096

    @Option(help: "Seconds running requests get to finish on SIGINT/SIGTERM.")
    var shutdownGrace: Double = 30

    @Option(help: "Prompt tokens read between two decode steps (a long prompt delays running requests by one chunk).")
    var prefillChunk = 256

    @OptionGroup var stateDType: StateDTypeOption

    @OptionGroup var loading: WeightResidencyOption

    func validate() throws {
        guard (1...4096).contains(maxBatch) else { throw CLIError("--max-batch must be between 1 and 4096, got \(maxBatch)") }
        guard (0...1_000_000).contains(maxQueue) else { throw CLIError("--max-queue must be between 0 and 1000000, got \(maxQueue)") }
        guard (1...1_000_000).contains(maxPromptTokens) else { throw CLIError("--max-prompt-tokens must be between 1 and 1000000, got \(maxPromptTokens)") }
        guard (1...1_000_000).contains(maxTokens) else { throw CLIError("--max-tokens must be between 1 and 1000000, got \(maxTokens)") }
        guard (0...86_400).contains(shutdownGrace) else { throw CLIError("--shutdown-grace must be between 0 and 86400 seconds, got \(shutdownGrace)") }
        guard (1...1_000_000).contains(prefillChunk) else { throw CLIError("--prefill-chunk must be between 1 and 1000000, got \(prefillChunk)") }
        guard (0...65535).contains(port) else { throw CLIError("--port must be between 0 and 65535, got \(port)") }
    }

    func run() async throws {
        let directory = model.map { URL(fileURLWithPath: $0) } ?? DefaultModel.directory
        let options = ServerOptions(
            host: host, port: port, maxBatch: maxBatch, maxQueue: maxQueue,
            limits: RequestLimits(maxPromptTokens: maxPromptTokens, maxNewTokens: maxTokens),
            shutdownGrace: shutdownGrace, prefillChunk: prefillChunk, modelID: directory.standardizedFileURL.lastPathComponent,
            ssmStateDType: try stateDType.dtype())
        let server = try CompletionServer(directory: directory, residency: loading.residency, options: options)
        // SIGINT/SIGTERM start a graceful shutdown; a second one ends the process at once.
        let signals = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number)
            let received = LockedFlag()
            source.setEventHandler {
                if received.setOnce() {
                    FileHandle.standardError.write(Data("mamba2 serve: shutting down (running requests get \(Int(shutdownGrace)) s)\n".utf8))
                    Task { await server.shutdown() }
                } else {
                    Foundation.exit(128 + number)
                }
            }
            source.resume()
            return source
        }
        defer { signals.forEach { $0.cancel() } }
        do {
            try await server.run { port in
                FileHandle.standardError.write(Data("mamba2 serve: \(options.modelID) on http://\(host):\(port) (max batch \(maxBatch))\n".utf8))
            }
        } catch {
            throw CLIError("cannot serve on \(host):\(port): \(error)")
        }
    }
}

/// True the first time only (signal handlers run on a Dispatch queue).
private final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var set = false

    func setOnce() -> Bool {
        lock.withLock {
            defer { set = true }
            return !set
        }
    }
}
