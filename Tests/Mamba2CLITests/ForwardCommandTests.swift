import Foundation
import Testing
import TestSupport

/// End-to-end tests of the built `mamba2` binary.
let fixtures = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/models")

/// The folder of the built products (where `mamba2` sits beside the test bundle).
let mamba2Binary: URL = {
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    while directory.path != "/" {
        let candidate = directory.appendingPathComponent("mamba2")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        directory.deleteLastPathComponent()
    }
    return URL(fileURLWithPath: "mamba2")
}()

struct RunResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

func runMamba2(_ arguments: [String]) throws -> RunResult {
    let process = Process()
    process.executableURL = mamba2Binary
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return RunResult(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
}

/// Reads a float32 `.npy` (version 1.0, C order): its shape and values.
func readNPY(_ url: URL) throws -> (shape: [Int], values: [Float]) {
    let data = try Data(contentsOf: url)
    #expect(data.prefix(8) == Data([0x93] + Array("NUMPY".utf8) + [1, 0]))
    let headerLength = Int(data[8]) | Int(data[9]) << 8
    let header = String(decoding: data[10..<(10 + headerLength)], as: UTF8.self)
    #expect(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"))
    #expect((10 + headerLength) % 64 == 0)
    let shapeText = header.components(separatedBy: "'shape': (")[1].components(separatedBy: ")")[0]
    let shape = shapeText.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    let body = data[(10 + headerLength)...]
    var values: [Float] = []
    for offset in stride(from: body.startIndex, to: body.endIndex, by: 4) {
        var bits: UInt32 = 0
        for byte in 0..<4 { bits |= UInt32(body[offset + byte]) << (8 * UInt32(byte)) }
        values.append(Float(bitPattern: bits))
    }
    return (shape, values)
}

struct GoldenCase: Decodable {
    let name: String
    let input_ids: [[Int]]
    let attention_mask: [[Int]]?
    let logits: [[[Float]]]?
}

func goldenCase(_ fixture: String, _ name: String) throws -> GoldenCase {
    struct Expected: Decodable { let cases: [GoldenCase] }
    let data = try Data(contentsOf: fixtures.appendingPathComponent(fixture).appendingPathComponent("expected.json"))
    return try JSONDecoder().decode(Expected.self, from: data).cases.first { $0.name == name }!
}

func temporaryFile(_ name: String) -> URL {
    scratchURL(name)
}

@Suite("mamba2 forward")
struct ForwardCommandTests {
    @Test("writes transformers' logits as [batch, seq, vocab] float32 .npy", arguments: [
        ("g1-tied", "single-len13", nil as Int?),
        ("g1-sharded", "single-len7", 3),
        ("g2-fp32", "padded-batch", nil),
        ("g2-fp32", "padded-batch", 4),
        ("g1-tied", "padded-batch", 0),
    ])
    func logits(fixture: String, caseName: String, decodeFrom: Int?) throws {
        let golden = try goldenCase(fixture, caseName)
        let output = temporaryFile("logits.npy")
        var arguments = ["forward", "--model", fixtures.appendingPathComponent(fixture).path, "--output", output.path]
        for row in golden.input_ids { arguments += ["--ids", row.map(String.init).joined(separator: ",")] }
        for row in golden.attention_mask ?? [] { arguments += ["--mask", row.map(String.init).joined(separator: ",")] }
        if let decodeFrom { arguments += ["--decode-from", String(decodeFrom)] }
        let result = try runMamba2(arguments)
        #expect(result.status == 0, "\(result.stderr)")
        let (shape, values) = try readNPY(output)
        let expected = golden.logits!
        #expect(shape == [expected.count, expected[0].count, expected[0][0].count])
        let flat = expected.flatMap { $0.flatMap { $0 } }
        let maximum = zip(values, flat).map { abs($0 - $1) }.max() ?? .infinity
        #expect(values.count == flat.count && maximum <= 1e-4, "max |Δ| \(maximum)")
    }

    @Test("--state-dtype bfloat16 keeps the SSM state in bf16: close to transformers' fp32 logits, not equal")
    func bfloat16State() throws {
        let golden = try goldenCase("g2-fp32", "padded-batch")
        let output = temporaryFile("bf16-state.npy")
        var arguments = ["forward", "--model", fixtures.appendingPathComponent("g2-fp32").path, "--output", output.path, "--decode-from", "4", "--state-dtype", "bfloat16"]
        for row in golden.input_ids { arguments += ["--ids", row.map(String.init).joined(separator: ",")] }
        for row in golden.attention_mask ?? [] { arguments += ["--mask", row.map(String.init).joined(separator: ",")] }
        let result = try runMamba2(arguments)
        #expect(result.status == 0, "\(result.stderr)")
        let values = try readNPY(output).1
        let flat = golden.logits!.flatMap { $0.flatMap { $0 } }
        let maximum = zip(values, flat).map { abs($0 - $1) }.max() ?? .infinity
        #expect(values.count == flat.count && maximum <= 0.01 * flat.map(abs).max()! && maximum > 1e-6, "max |Δ| \(maximum)")
    }

    @Test("bad arguments and files give a one-line error and a non-zero exit", arguments: [
        (["--model", "/nonexistent/model", "--ids", "1,2"], "/nonexistent/model/config.json"),
        (["--ids", "1,x"], "--ids '1,x' must be a comma-separated list of integers"),
        (["--ids", "1,2,50"], "token id 50 at row 0, position 2 is outside the vocabulary [0, 50)"),
        (["--ids", "1,2", "--ids", "3"], "--ids row 1 has 1 tokens, row 0 has 2"),
        (["--ids", "1,2", "--mask", "1,1", "--mask", "1,1"], "--mask was given 2 times for 1 --ids rows"),
        (["--ids", "1,2", "--decode-from", "3"], "--decode-from 3 must be between 0 and the row length 2"),
        (["--ids", "1,2", "--output", "/nonexistent/dir/out.npy"], "/nonexistent/dir/out.npy: cannot write"),
        (["--ids"], "Missing value for '--ids <ids>'"),
        (["--ids", "1,2,3", "--ids", "4", "--decode-from", "1"], "--ids row 1 has 1 tokens, row 0 has 3"),
        (["--ids", "1,2,3", "--mask", "1", "--decode-from", "1"], "--mask row 0 has 1 values for rows of 3 tokens"),
        (["--ids", "1", "--bogus"], "Unknown option '--bogus'"),
        (["--ids", "1,2", "--state-dtype", "int8"], "--state-dtype must be float32 or bfloat16, got int8"),
    ])
    func errors(arguments: [String], fragment: String) throws {
        var full = ["forward"] + arguments
        if !arguments.contains("--model") { full += ["--model", fixtures.appendingPathComponent("g1-tied").path] }
        if !arguments.contains("--output") { full += ["--output", temporaryFile("x.npy").path] }
        let result = try runMamba2(full)
        #expect(result.status != 0)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(result.stderr)")
        #expect(result.stderr.contains(fragment), "\(result.stderr)")
    }
}

@Suite("mamba2 convert")
struct ConvertCommandTests {
    @Test("converts a mamba_ssm folder to HF safetensors that forward reads; bad arguments are named")
    func convert() throws {
        let output = temporaryFile("converted")
        let result = try runMamba2(["convert", "--model", fixtures.appendingPathComponent("g1-mamba-ssm-bin").path, "--output", output.path, "--dtype", "float32"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(FileManager.default.fileExists(atPath: output.appendingPathComponent("model.safetensors").path))
        let forward = try runMamba2(["forward", "--model", output.path, "--ids", "1,2,3", "--output", temporaryFile("x.npy").path])
        #expect(forward.status == 0, "\(forward.stderr)")
        // The fixtures' odd widths cannot be quantized: the folder is written, and stderr says so.
        let int8 = try runMamba2(["convert", "--model", fixtures.appendingPathComponent("g1-tied").path, "--output", temporaryFile("int8").path, "--dtype", "int8"])
        #expect(int8.status == 0, "\(int8.stderr)")
        #expect(int8.stderr.contains("note: kept in fp32, rows that do not split into int8 blocks of 32: backbone.embeddings.weight (rows of 15)"), "\(int8.stderr)")
        let bad = try runMamba2(["convert", "--model", fixtures.appendingPathComponent("g1-tied").path, "--output", output.path, "--dtype", "int4"])
        #expect(bad.status != 0 && bad.stderr.contains("--dtype must be float32, bfloat16, float16 or int8, got int4"))
    }

    @Test("a write that fails (the file-size limit reached) is named, and leaves neither weights nor a temporary file")
    func failedWrite() throws {
        let output = temporaryFile("limited")
        // The shell caps the files it may write at 16 blocks (8 KiB or 16 KiB; the weights are
        // 29 KB) and ignores SIGXFSZ, so write(2) fails with EFBIG instead of a signal ending it.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "ulimit -f 16; trap '' XFSZ; exec \"$0\" \"$@\"", mamba2Binary.path,
                             "convert", "--model", fixtures.appendingPathComponent("g2-fp32").path, "--output", output.path]
        let err = Pipe()
        process.standardError = err
        try process.run()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus != 0)
        #expect(stderr.contains("\(output.appendingPathComponent("model.safetensors").path): cannot write: write failed at byte"), "\(stderr)")
        let left = try FileManager.default.contentsOfDirectory(atPath: output.path)
        #expect(!left.contains { $0.contains("safetensors") }, "\(left)")
    }
}
