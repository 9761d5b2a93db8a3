import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
#if canImport(Glibc)
import Glibc
#endif

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

    #if canImport(Glibc)
    /// POSTs `body` over a plain socket, calls `onFirstEvent` once the first server-sent event
    /// has arrived (the request is surely running then), and returns everything read until the
    /// server closes the connection. Runs on its own thread, off Swift's cooperative pool.
    static func streamedPost(port: Int, body: String, onFirstEvent: @escaping @Sendable () -> Void) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Result {
                    let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                    guard socket >= 0 else { throw CLIFailure("socket() failed") }
                    defer { close(socket) }
                    var address = sockaddr_in()
                    address.sin_family = sa_family_t(AF_INET)
                    address.sin_port = in_port_t(UInt16(port).bigEndian)
                    address.sin_addr.s_addr = inet_addr("127.0.0.1")
                    let connected = withUnsafePointer(to: &address) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                    }
                    guard connected == 0 else { throw CLIFailure("cannot connect to port \(port)") }
                    var timeout = timeval(tv_sec: 120, tv_usec: 0)
                    setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                    let request = Array("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
                    guard request.withUnsafeBytes({ Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
                        throw CLIFailure("send failed")
                    }
                    var received: [UInt8] = []
                    var signalled = false
                    var buffer = [UInt8](repeating: 0, count: 65536)
                    while true {
                        let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
                        guard count > 0 else {
                            guard count == 0 else { throw CLIFailure("recv failed or timed out") }
                            break
                        }
                        received += buffer[..<count]
                        if !signalled, String(decoding: received, as: UTF8.self).contains("data: {") {
                            signalled = true
                            onFirstEvent()
                        }
                    }
                    return String(decoding: received, as: UTF8.self)
                })
            }.start()
        }
    }

    @Test("SIGTERM lets a running stream finish, then the process exits 0")
    func gracefulShutdownOnSIGTERM() async throws {
        let (process, port, err) = try Self.startServer()
        #expect(try await Self.request("/health", port: port).status == 200)
        let body = #"{"prompt": "def fibonacci(n):", "max_tokens": 400, "temperature": 0, "stream": true}"#
        let pid = process.processIdentifier
        let reply = try await Self.streamedPost(port: port, body: body) { kill(pid, SIGTERM) }
        #expect(reply.hasPrefix("HTTP/1.1 200"))
        #expect(reply.contains("data: [DONE]"))
        #expect(reply.contains("\"finish_reason\":\"length\""))
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(stderr.contains("shutting down"))
    }
    #endif

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
