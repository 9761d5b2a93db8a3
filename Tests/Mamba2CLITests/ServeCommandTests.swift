import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

@Suite("mamba2 serve")
struct ServeCommandTests {
    /// Starts `mamba2 serve --port 0` and reads the port it reports on stderr.
    static func startServer(_ arguments: [String] = []) throws -> (Process, port: Int, stderr: Pipe) {
        let process = Process()
        process.executableURL = mamba2Binary
        process.arguments = ["serve", "--port", "0"] + arguments
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // A server that never reports its port is stopped, which ends the read below.
        let started = Flag()
        DispatchQueue.global().asyncAfter(deadline: .now() + 60) { if !started.isRaised { process.terminate() } }
        var text = ""
        while true {
            let data = err.fileHandleForReading.availableData
            if data.isEmpty { break }
            text += String(decoding: data, as: UTF8.self)
            if let range = text.range(of: #"http://127\.0\.0\.1:(\d+)"#, options: .regularExpression),
               let port = Int(text[range].split(separator: ":").last!) {
                started.raise()
                return (process, port, err)
            }
        }
        process.terminate()
        throw CLIFailure("no port reported; stderr: \(text)")
    }

    static func request(_ path: String, port: Int, body: String? = nil) async throws -> (status: Int, body: String) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        if let body {
            request.httpMethod = "POST"
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    @Test("SIGTERM lets a running stream finish, then the process exits 0")
    func gracefulShutdownOnSIGTERM() async throws {
        let (process, port, err) = try Self.startServer()
        #expect(try await Self.request("/health", port: port).status == 200)
        let body = #"{"prompt": "def fibonacci(n):", "max_tokens": 400, "temperature": 0, "stream": true}"#
        let stream = Task { try await Self.request("/v1/completions", port: port, body: body) }
        let deadline = Date().addingTimeInterval(30)
        while !(try await Self.request("/health", port: port).body.contains("\"running\":1")) {
            guard Date() < deadline else { throw CLIFailure("the request never showed as running") }
            try await Task.sleep(for: .milliseconds(5))
        }
        kill(process.processIdentifier, SIGTERM)
        let reply = try await stream.value
        #expect(reply.status == 200)
        #expect(reply.body.hasSuffix("data: [DONE]\n\n"))
        #expect(reply.body.contains("\"finish_reason\":\"length\""))
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(stderr.contains("shutting down"))
    }

    @Test("bad options are one-line errors", arguments: [
        (["--max-batch", "0"], "--max-batch must be between 1 and 4096"),
        (["--shutdown-grace", "1e30"], "--shutdown-grace must be between 0 and 86400"),
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--model", "/nonexistent"], "/nonexistent/config.json"),
    ])
    func badOptions(arguments: [String], message: String) throws {
        let result = try runMamba2(["serve"] + arguments)
        #expect(result.status != 0)
        #expect(result.stderr.hasPrefix("Error: ") && result.stderr.contains(message), "\(result.stderr)")
    }
}

/// A flag raised on one thread and read on another.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var raised = false

    var isRaised: Bool { lock.withLock { raised } }
    func raise() { lock.withLock { raised = true } }
}

struct CLIFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
