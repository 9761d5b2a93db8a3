import DefaultModel
import Foundation
import Generation
@testable import Mamba2Server
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A server on a free loopback port, running inside the test process.
final class RunningServer: Sendable {
    let server: CompletionServer
    let port: Int
    private let task: Task<Void, any Error>

    private init(server: CompletionServer, port: Int, task: Task<Void, any Error>) {
        self.server = server
        self.port = port
        self.task = task
    }

    static func start(
        maxBatch: Int = 8, maxQueue: Int = 64, limits: RequestLimits = RequestLimits(), shutdownGrace: Double = 30
    ) async throws -> RunningServer {
        let options = ServerOptions(port: 0, maxBatch: maxBatch, maxQueue: maxQueue, limits: limits, shutdownGrace: shutdownGrace, modelID: "mamba2-pycode")
        let server = try CompletionServer(generator: try sharedGenerator(), hasChatTemplate: false, options: options)
        let (ports, portInput) = AsyncStream<Int>.makeStream()
        let task = Task {
            // A failed start ends the port stream too, so nobody waits for a port forever.
            defer { portInput.finish() }
            try await server.run { port in portInput.yield(port) }
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else { throw ClientError("the server did not report its port") }
        return RunningServer(server: server, port: port, task: task)
    }

    /// Shuts down gracefully and waits for `run` to return.
    func stop() async throws {
        await server.shutdown()
        try await task.value
    }

    func waitForRun() async throws {
        try await task.value
    }
}

/// The built-in model, loaded once for every test.
func sharedGenerator() throws -> Generator {
    try GeneratorCache.shared.get()
}

private final class GeneratorCache: @unchecked Sendable {
    static let shared = GeneratorCache()
    private let lock = NSLock()
    private var generator: Generator?

    func get() throws -> Generator {
        try lock.withLock {
            if let generator { return generator }
            let loaded = try Generator(directory: DefaultModel.directory)
            generator = loaded
            return loaded
        }
    }
}

/// A flag one task raises and a client thread reads.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var raised = false

    var isRaised: Bool { lock.withLock { raised } }
    func raise() { lock.withLock { raised = true } }
}

/// Polls `condition` until it holds, failing the test (not hanging it) after `seconds`.
func waitUntil(_ what: String, seconds: Double = 30, _ condition: () -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        guard Date() < deadline else { throw ClientError("gave up after \(seconds) s waiting until \(what)") }
        try await Task.sleep(for: .milliseconds(5))
    }
}

struct ClientError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// What an HTTP/1.1 exchange returned.
struct HTTPReply {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]

    var text: String { String(decoding: body, as: UTF8.self) }

    func json() throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            throw ClientError("the body is not a JSON object: \(text)")
        }
        return object
    }

    /// The `data:` payloads of a server-sent-event body, in order.
    var events: [String] {
        text.components(separatedBy: "\n\n").compactMap { block in
            block.hasPrefix("data: ") ? String(block.dropFirst(6)) : nil
        }
    }

    /// The error object of an OpenAI error body.
    func error() throws -> [String: Any] {
        guard let error = try json()["error"] as? [String: Any] else { throw ClientError("no error object in \(text)") }
        return error
    }
}

/// A plain blocking HTTP/1.1 client over a POSIX socket, run on its own thread so that waiting
/// for the server never blocks Swift's cooperative pool (which the server itself runs on).
enum HTTP {
    /// Sends one request with `Connection: close` and reads the reply to the end.
    static func send(_ method: String, _ path: String, port: Int, body: String? = nil) async throws -> HTTPReply {
        try await onThread {
            let socket = try connect(port: port)
            defer { close(socket) }
            try write(socket, request(method, path, body: body))
            var bytes: [UInt8] = []
            while let chunk = try read(socket) { bytes += chunk }
            return try parse(bytes)
        }
    }

    static func post(_ path: String, port: Int, json body: String) async throws -> HTTPReply {
        try await send("POST", path, port: port, body: body)
    }

    /// Sends a request and closes the connection once `bytes` of the reply have arrived, or
    /// `hangUp` is raised (a client that goes away mid-stream); returns what it read.
    static func postAndHangUp(_ path: String, port: Int, json body: String, after bytes: Int = .max, when hangUp: Flag? = nil) async throws -> String {
        try await onThread {
            let socket = try connect(port: port)
            defer { close(socket) }
            // Short receive timeouts, so the flag is seen even while the server sends nothing.
            var timeout = timeval(tv_sec: 0, tv_usec: 20_000)
            setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            try write(socket, request("POST", path, body: body))
            var received: [UInt8] = []
            let deadline = Date().addingTimeInterval(120)
            while received.count < bytes, !(hangUp?.isRaised ?? false), Date() < deadline {
                var buffer = [UInt8](repeating: 0, count: 65536)
                let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
                if count == 0 { break }
                if count < 0 {
                    guard errno == EAGAIN || errno == EWOULDBLOCK else { throw ClientError("recv failed") }
                    continue
                }
                received += buffer[..<count]
            }
            return String(decoding: received, as: UTF8.self)
        }
    }

    /// Raw bytes sent as they are (for malformed requests).
    static func raw(_ data: [UInt8], port: Int) async throws -> HTTPReply {
        try await onThread {
            let socket = try connect(port: port)
            defer { close(socket) }
            try write(socket, data)
            var bytes: [UInt8] = []
            while let chunk = try read(socket) { bytes += chunk }
            return try parse(bytes)
        }
    }

    static func request(_ method: String, _ path: String, body: String?) -> [UInt8] {
        let payload = Array((body ?? "").utf8)
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        if body != nil { head += "Content-Type: application/json\r\nContent-Length: \(payload.count)\r\n" }
        return Array((head + "\r\n").utf8) + payload
    }

    private static func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try work() }) }
            thread.start()
        }
    }

    private static func connect(port: Int) throws -> Int32 {
        #if canImport(Glibc)
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let socket = Darwin.socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard socket >= 0 else { throw ClientError("socket() failed") }
        var timeout = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                #if canImport(Glibc)
                Glibc.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                #else
                Darwin.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                #endif
            }
        }
        guard result == 0 else {
            close(socket)
            throw ClientError("connection to port \(port) refused")
        }
        return socket
    }

    private static func write(_ socket: Int32, _ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            #if canImport(Glibc)
            let count = bytes[sent...].withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            #else
            let count = bytes[sent...].withUnsafeBytes { Darwin.send(socket, $0.baseAddress, $0.count, 0) }
            #endif
            guard count > 0 else { throw ClientError("send failed") }
            sent += count
        }
    }

    /// The next bytes, or nil at the end of the stream.
    private static func read(_ socket: Int32) throws -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { throw ClientError("recv failed or timed out") }
        return count == 0 ? nil : Array(buffer[..<count])
    }

    /// Splits status line, headers and body; a chunked body is de-chunked.
    private static func parse(_ bytes: [UInt8]) throws -> HTTPReply {
        let separator = Array("\r\n\r\n".utf8)
        guard let end = (0...(max(0, bytes.count - 4))).first(where: { bytes[$0..<min(bytes.count, $0 + 4)].elementsEqual(separator) }) else {
            throw ClientError("no complete HTTP head in \(bytes.count) bytes")
        }
        let lines = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw ClientError("bad status line \(lines[0])") }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Array(bytes[(end + 4)...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" { body = try dechunk(body) }
        return HTTPReply(status: status, headers: headers, body: body)
    }

    private static func dechunk(_ bytes: [UInt8]) throws -> [UInt8] {
        var output: [UInt8] = []
        var index = 0
        while index < bytes.count {
            guard let lineEnd = (index..<(bytes.count - 1)).first(where: { bytes[$0] == 13 && bytes[$0 + 1] == 10 }),
                  let size = Int(String(decoding: bytes[index..<lineEnd], as: UTF8.self).split(separator: ";")[0], radix: 16) else {
                throw ClientError("malformed chunked body")
            }
            if size == 0 { break }
            let start = lineEnd + 2
            guard start + size <= bytes.count else { throw ClientError("truncated chunk") }
            output += bytes[start..<(start + size)]
            index = start + size + 2
        }
        return output
    }
}

/// The greedy text the library gives for `prompt` alone (batch of one), as the server's
/// completions return it: special tokens dropped.
func soloGreedyText(_ prompt: String, maxTokens: Int) throws -> (text: String, tokens: Int, finish: FinishReason) {
    let generator = try sharedGenerator()
    let ids = try generator.tokenizer!.encode(prompt).ids
    let config = generator.defaults.overriding(maxNewTokens: maxTokens, doSample: false)
    let result = try generator.generate([ids], config: config)
    let text = try generator.tokenizer!.decode(result.tokens[0], skipSpecialTokens: true)
    return (text, result.tokens[0].count, result.finishReasons[0])
}

func jsonString(_ object: [String: Any]) throws -> String {
    String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
}
