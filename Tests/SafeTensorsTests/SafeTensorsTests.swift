import Foundation
import Testing
@testable import SafeTensors
import Tensors
import TestSupport

/// A fresh temporary folder per test.
func temporaryDirectory() throws -> URL {
    let url = scratchURL("safetensors")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A file of an 8-byte length, the given header text and `dataSize` zero bytes.
func rawFile(header: String, dataSize: Int = 0, declaredLength: UInt64? = nil, in directory: URL, name: String = "model.safetensors") throws -> String {
    var data = Data()
    withUnsafeBytes(of: (declaredLength ?? UInt64(header.utf8.count)).littleEndian) { data.append(contentsOf: $0) }
    data.append(contentsOf: Array(header.utf8))
    data.append(contentsOf: [UInt8](repeating: 0, count: dataSize))
    let url = directory.appendingPathComponent(name)
    try data.write(to: url)
    return url.path
}

@Suite("safetensors files")
struct SafeTensorsTests {
    @Test("written files read back, every dtype, zero-copy, with metadata")
    func roundTrip() throws {
        let directory = try temporaryDirectory()
        let url = directory.appendingPathComponent("model.safetensors")
        let a = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        let b = Tensor(shape: [3], scalars: [0.5, -0.25, 8])
        let c = Tensor(shape: [1, 1, 2], scalars: [-1, 1024])
        try SafeTensorsWriter.write(
            ["a": WeightView(a), "b": WeightView(b, as: .bfloat16), "c": WeightView(c, as: .float16), "empty": WeightView(Tensor(zeros: [0, 4]))],
            metadata: ["format": "pt"], to: url)
        let file = try SafeTensorsFile(path: url.path)
        #expect(file.metadata == ["format": "pt"])
        #expect(Set(file.tensors.keys) == ["a", "b", "c", "empty"])
        #expect(try file.view("a").tensor() == a)
        #expect(try file.view("b").dtype == .bfloat16)
        #expect(try file.view("b").tensor() == b)
        #expect(try file.view("c").tensor() == c)
        #expect(try file.view("empty").shape == [0, 4])
        // The header is padded to 8 bytes, as the Python package writes it.
        let header = try Data(contentsOf: url).prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect(header % 8 == 0)
    }

    @Test("a truncated file is named")
    func truncated() throws {
        let directory = try temporaryDirectory()
        let path = directory.appendingPathComponent("short.safetensors").path
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        #expect(throws: SafeTensorsError.truncated(file: path, size: 3)) { try SafeTensorsFile(path: path) }
    }

    @Test("a header length beyond the file is refused")
    func lyingHeaderLength() throws {
        let directory = try temporaryDirectory()
        let path = try rawFile(header: "{}", declaredLength: 1_000_000, in: directory)
        #expect(throws: SafeTensorsError.headerLengthOutOfRange(file: path, declared: 1_000_000, fileSize: 10)) {
            try SafeTensorsFile(path: path)
        }
        let huge = try rawFile(header: "{}", declaredLength: UInt64.max, in: directory, name: "huge.safetensors")
        #expect(throws: SafeTensorsError.headerLengthOutOfRange(file: huge, declared: UInt64.max, fileSize: 10)) {
            try SafeTensorsFile(path: huge)
        }
    }

    @Test("malformed headers are named", arguments: [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (#"{"w": {"dtype": "F32", "shape": [2]}}"#, "'w' data_offsets: missing"),
        (#"{"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}}"#, "'w' shape"),
        (#"{"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}"#, "negative dimension"),
        (#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}"#, "data_offsets [8, 0]"),
        (#"{"__metadata__": {"format": 1}}"#, "'__metadata__'"),
    ])
    func malformedHeader(header: String, fragment: String) throws {
        let directory = try temporaryDirectory()
        let path = try rawFile(header: header, dataSize: 8, in: directory)
        do {
            _ = try SafeTensorsFile(path: path)
            Issue.record("no error for \(header)")
        } catch let SafeTensorsError.malformedHeader(file, reason) {
            #expect(file == path)
            #expect(reason.contains(fragment), "\(reason)")
        }
    }

    @Test("unknown dtypes, wrong sizes, out-of-bounds and overlapping data are named")
    func lyingEntries() throws {
        let directory = try temporaryDirectory()
        let unknown = try rawFile(header: #"{"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 1]}}"#, dataSize: 1, in: directory, name: "a")
        #expect(throws: SafeTensorsError.unknownDType(file: unknown, tensor: "w", dtype: "Q4")) { try SafeTensorsFile(path: unknown) }

        let size = try rawFile(header: #"{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#, dataSize: 8, in: directory, name: "b")
        #expect(throws: SafeTensorsError.byteCountMismatch(file: size, tensor: "w", shape: [3], dtype: "F32", expected: 12, actual: 8)) {
            try SafeTensorsFile(path: size)
        }

        let bounds = try rawFile(header: #"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}"#, dataSize: 8, in: directory, name: "c")
        #expect(throws: SafeTensorsError.dataOutOfBounds(file: bounds, tensor: "w", begin: 0, end: 16, dataSize: 8)) {
            try SafeTensorsFile(path: bounds)
        }

        let overlap = try rawFile(
            header: #"{"u": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "v": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#,
            dataSize: 12, in: directory, name: "d")
        #expect(throws: SafeTensorsError.overlappingData(file: overlap, tensor: "v", other: "u")) { try SafeTensorsFile(path: overlap) }

        let overflow = try rawFile(header: #"{"w": {"dtype": "F64", "shape": [4611686018427387904, 4], "data_offsets": [0, 8]}}"#, dataSize: 8, in: directory, name: "e")
        #expect(throws: SafeTensorsError.byteCountMismatch(file: overflow, tensor: "w", shape: [4611686018427387904, 4], dtype: "F64", expected: Int.max, actual: 8)) {
            try SafeTensorsFile(path: overflow)
        }
    }

    @Test("non-float tensors open but are refused as weights; missing names are named")
    func unsupportedAndMissing() throws {
        let directory = try temporaryDirectory()
        let path = try rawFile(header: #"{"ids": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}"#, dataSize: 8, in: directory)
        let file = try SafeTensorsFile(path: path)
        #expect(throws: SafeTensorsError.unsupportedDType(file: path, tensor: "ids", dtype: "I64")) { try file.view("ids") }
        #expect(throws: SafeTensorsError.missingTensor(name: "w", file: path)) { try file.view("w") }
    }

    @Test("an unreadable path is named")
    func missingFile() {
        #expect(throws: SafeTensorsError.self) { try SafeTensorsFile(path: "/nonexistent/model.safetensors") }
        do {
            _ = try SafeTensorsFile(path: "/nonexistent/model.safetensors")
        } catch {
            #expect("\(error)".hasPrefix("/nonexistent/model.safetensors: cannot open"))
        }
    }
}

@Suite("checkpoint folders")
struct CheckpointTests {
    @Test("sharded checkpoints resolve every tensor through the index")
    func sharded() throws {
        let directory = try temporaryDirectory()
        try SafeTensorsWriter.write(["a": WeightView(Tensor(shape: [2], scalars: [1, 2]))], to: directory.appendingPathComponent("model-00001-of-00002.safetensors"))
        try SafeTensorsWriter.write(["b": WeightView(Tensor(shape: [1], scalars: [3]))], to: directory.appendingPathComponent("model-00002-of-00002.safetensors"))
        let index = #"{"metadata": {"total_size": 12}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#
        try Data(index.utf8).write(to: directory.appendingPathComponent(Checkpoint.indexName))
        let checkpoint = try Checkpoint(directory: directory)
        #expect(checkpoint.names == ["a", "b"])
        #expect(checkpoint.files.count == 2)
        #expect(try checkpoint.view("b").floats() == [3])
    }

    @Test("index errors name the index, the shard or the tensor")
    func badIndexes() throws {
        let directory = try temporaryDirectory()
        let indexURL = directory.appendingPathComponent(Checkpoint.indexName)
        try Data("{".utf8).write(to: indexURL)
        #expect(throws: SafeTensorsError.malformedIndex(file: indexURL.path, reason: "\"weight_map\" must be a JSON object of tensor name to shard file name")) {
            try Checkpoint(directory: directory)
        }
        try Data(#"{"metadata": {}}"#.utf8).write(to: indexURL)
        #expect(throws: SafeTensorsError.malformedIndex(file: indexURL.path, reason: "no \"weight_map\" object")) { try Checkpoint(directory: directory) }

        try Data(#"{"weight_map": {"a": "missing.safetensors"}}"#.utf8).write(to: indexURL)
        let missingShard = directory.appendingPathComponent("missing.safetensors").path
        do {
            _ = try Checkpoint(directory: directory)
            Issue.record("no error for a missing shard")
        } catch let SafeTensorsError.cannotOpen(file, _) {
            #expect(file == missingShard)
        }

        try SafeTensorsWriter.write(["a": WeightView(Tensor(shape: [1], scalars: [1]))], to: directory.appendingPathComponent("one.safetensors"))
        try Data(#"{"weight_map": {"a": "one.safetensors", "b": "one.safetensors"}}"#.utf8).write(to: indexURL)
        #expect(throws: SafeTensorsError.missingTensor(name: "b", file: directory.appendingPathComponent("one.safetensors").path)) {
            try Checkpoint(directory: directory)
        }

        try Data(#"{"weight_map": {"a": "../one.safetensors"}}"#.utf8).write(to: indexURL)
        #expect(throws: SafeTensorsError.self) { try Checkpoint(directory: directory) }
    }

    @Test("a folder without weights is named; loose shards must not repeat a tensor")
    func folders() throws {
        let empty = try temporaryDirectory()
        #expect(throws: SafeTensorsError.noWeights(directory: empty.path)) { try Checkpoint(directory: empty) }

        let loose = try temporaryDirectory()
        try SafeTensorsWriter.write(["a": WeightView(Tensor(shape: [1], scalars: [1]))], to: loose.appendingPathComponent("x.safetensors"))
        try SafeTensorsWriter.write(["a": WeightView(Tensor(shape: [1], scalars: [2]))], to: loose.appendingPathComponent("y.safetensors"))
        #expect(throws: SafeTensorsError.tensorInSeveralShards(
            tensor: "a", files: [loose.appendingPathComponent("x.safetensors").path, loose.appendingPathComponent("y.safetensors").path])) {
            try Checkpoint(directory: loose)
        }
    }
}

@Suite("safetensors coverage")
struct SafeTensorsCoverageTests {
    @Test("gaps and trailing bytes in the data section are refused, as the safetensors library does")
    func coverage() throws {
        let directory = try temporaryDirectory()
        let gap = try rawFile(header: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}"#, dataSize: 12, in: directory, name: "gap")
        #expect(throws: SafeTensorsError.malformedHeader(file: gap, reason: "bytes [4, 8) of the data section belong to no tensor")) { try SafeTensorsFile(path: gap) }
        let trailing = try rawFile(header: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#, dataSize: 9, in: directory, name: "trailing")
        #expect(throws: SafeTensorsError.malformedHeader(file: trailing, reason: "5 bytes after the last tensor belong to no tensor")) { try SafeTensorsFile(path: trailing) }
    }

    @Test("a file read into memory holds the same tensors, and a sharded checkpoint reads every shard")
    func readIntoMemory() throws {
        let directory = try temporaryDirectory()
        let url = directory.appendingPathComponent("model.safetensors")
        let a = Tensor(shape: [3, 64], scalars: (0..<192).map { Float($0) * 0.5 - 7 })
        try SafeTensorsWriter.write(["a": WeightView(a), "b": WeightView(a, as: .bfloat16)], metadata: ["k": "v"], to: url)
        let mapped = try SafeTensorsFile(path: url.path)
        var heard: [Int] = []
        let copy = try mapped.readIntoMemory { heard.append($0) }
        #expect(mapped.residency == .mapped && copy.residency == .inMemory)
        #expect(copy.metadata == ["k": "v"] && copy.tensors == mapped.tensors && copy.byteCount == mapped.byteCount)
        #expect(heard.last == mapped.byteCount)
        for name in ["a", "b"] {
            #expect(Array(try copy.view(name).bytes) == Array(try mapped.view(name).bytes))
            // A copy, not the map.
            #expect(try copy.view(name).bytes.baseAddress != mapped.view(name).bytes.baseAddress)
        }
        #expect(try copy.readIntoMemory() === copy)

        let sharded = try temporaryDirectory()
        try SafeTensorsWriter.write(["a": WeightView(a)], to: sharded.appendingPathComponent("one.safetensors"))
        try SafeTensorsWriter.write(["b": WeightView(a, as: .float16)], to: sharded.appendingPathComponent("two.safetensors"))
        let checkpoint = try Checkpoint(directory: sharded)
        var totals: [(Int, Int)] = []
        let inMemory = try checkpoint.readIntoMemory { totals.append(($0, $1)) }
        #expect(inMemory.files.allSatisfy { $0.residency == .inMemory })
        #expect(totals.last.map { $0 == (checkpoint.byteCount, checkpoint.byteCount) } == true)
        #expect(try inMemory.view("a").tensor() == a && inMemory.view("b").tensor() == checkpoint.view("b").tensor())
    }

    @Test("a file that changes between opening and reading into memory is named")
    func shrunkBeforeReading() throws {
        let directory = try temporaryDirectory()
        let url = directory.appendingPathComponent("model.safetensors")
        try SafeTensorsWriter.write(["a": WeightView(Tensor(shape: [1024], scalars: [Float](repeating: 1, count: 1024)))], to: url)
        let file = try SafeTensorsFile(path: url.path)
        let handle = try FileHandle(forWritingTo: url)
        try handle.truncate(atOffset: UInt64(file.byteCount - 100))
        try handle.close()
        let error = #expect(throws: SafeTensorsError.self) { try file.readIntoMemory() }
        guard case let .cannotOpen(named, reason) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(named == url.path && reason.contains("replaced or changed since it was opened"))
    }
}

@Suite("writing files of any size")
struct FileOutputTests {
    /// Foundation's `Data.write(to:)` wrote wrong bytes past 2 GiB on Linux, which corrupted
    /// every converted shard larger than that; the file here is 2 GiB + 64 MiB and a small
    /// tensor follows the large one.
    @Test("a safetensors file past 2 GiB reads back byte for byte")
    func pastTwoGiB() throws {
        let piece = 1 << 24  // UInt32 words: 64 MiB
        let words = 33 * piece
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: words * 4, alignment: 64)
        defer { buffer.deallocate() }
        // Distinct words within each piece, the pieces copied, then each 4 KB page stamped with
        // its number: no shift or repeat of the bytes leaves them equal.
        let values = buffer.bindMemory(to: UInt32.self)
        for index in 0..<piece { values[index] = UInt32(index) }
        for copy in 1..<33 { (values.baseAddress! + copy * piece).update(from: values.baseAddress!, count: piece) }
        for page in 0..<(words / 1024) { values[page * 1024] = UInt32(page) | 0x8000_0000 }
        let owner = NSObject()
        let big = WeightView(dtype: .float32, shape: [words], bytes: UnsafeRawBufferPointer(buffer), owner: owner)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("model.safetensors")
        try SafeTensorsWriter.write(["big": big, "tail": WeightView(Tensor(shape: [3], scalars: [1, 2, 3]))], to: url)

        let file = try SafeTensorsFile(path: url.path)
        let read = try file.view("big").bytes
        #expect(read.count == buffer.count)
        // Compared in 64 MB pieces, so a failure names where the bytes went wrong.
        for start in stride(from: 0, to: buffer.count, by: 64 << 20) {
            let count = min(64 << 20, buffer.count - start)
            if memcmp(read.baseAddress! + start, buffer.baseAddress! + start, count) != 0 {
                Issue.record("bytes differ in [\(start), \(start + count))")
                break
            }
        }
        #expect(try file.view("tail").tensor() == Tensor(shape: [3], scalars: [1, 2, 3]))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["model.safetensors"])
    }

    @Test("outputs to one destination write their own temporary files; the last commit wins whole, a dropped output leaves nothing")
    func outputsToOneDestination() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("x.safetensors")
        let (first, second) = (try FileOutput(url: url), try FileOutput(url: url))
        try first.write([1, 2, 3])
        try second.write([4, 5])
        try first.write([6])
        #expect(first.offset == 4)
        try first.commit()
        #expect(try Data(contentsOf: url) == Data([1, 2, 3, 6]))
        try second.commit()
        #expect(try Data(contentsOf: url) == Data([4, 5]))
        #expect(throws: SafeTensorsError.cannotWrite(file: url.path, reason: "already committed (or its commit failed)")) { try second.commit() }
        do {
            let dropped = try FileOutput(url: url)
            try dropped.write([9])
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["x.safetensors"])
        #expect(try Data(contentsOf: url) == Data([4, 5]))
    }
}
