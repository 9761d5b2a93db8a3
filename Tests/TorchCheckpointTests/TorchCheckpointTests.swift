import Foundation
import Testing
import Tensors
@testable import TorchCheckpoint
import TestSupport

let torchFixtures = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/torch")

func path(_ name: String) -> String { torchFixtures.appendingPathComponent(name).path }

@Suite("pytorch_model.bin without Python")
struct TorchCheckpointTests {
    @Test("a torch.save state_dict reads as zero-copy views of every float storage type")
    func valid() throws {
        let file = try TorchCheckpointFile(path: path("valid.bin"))
        let tensors = Dictionary(file.tensors, uniquingKeysWith: { a, _ in a })
        #expect(file.tensors.map(\.name) == ["weight", "half", "bf16", "row", "parameter"])
        #expect(tensors["weight"]!.shape == [2, 3] && tensors["weight"]!.floats() == [0, 1, 2, 3, 4, 5])
        #expect(tensors["half"]!.dtype == .float16 && tensors["half"]!.floats() == [1, -2, 0.5])
        #expect(tensors["bf16"]!.dtype == .bfloat16 && tensors["bf16"]!.floats() == [3, 0.25])
        // A view into the middle of another tensor's storage (offset 3).
        #expect(tensors["row"]!.shape == [3] && tensors["row"]!.floats() == [3, 4, 5])
        #expect(tensors["parameter"]!.floats() == [1, 1])
    }

    @Test("a ZIP64 archive, as torch writes one past 4 GiB, reads as the same tensors")
    func zip64() throws {
        let classic = try TorchCheckpointFile(path: path("valid.bin"))
        let file = try TorchCheckpointFile(path: path("zip64.bin"))
        #expect(file.tensors.map(\.name) == classic.tensors.map(\.name))
        for (tensor, expected) in zip(file.tensors, classic.tensors) {
            #expect(tensor.view.shape == expected.view.shape && tensor.view.dtype == expected.view.dtype, "\(tensor.name)")
            #expect(tensor.view.floats() == expected.view.floats(), "\(tensor.name)")
        }
    }

    @Test("malicious and malformed files are named errors, never executed", arguments: [
        ("evil-global.bin", "refusing pickle global 'os.system'"),
        ("bad-opcode.bin", "malformed pickle at byte 2: unsupported opcode 0xff"),
        ("short-storage.bin", "storage '0' should hold 24 bytes but has 20"),
        ("missing-storage.bin", "no entry 'valid/data/1' in the archive"),
        ("truncated.bin", "not a valid torch zip archive"),
        ("deflated.bin", "uses compression method 8; only stored entries are supported"),
        ("non-contiguous.bin", "tensor 't': not contiguous"),
        ("int64.bin", "unsupported storage type 'torch.LongStorage'"),
        ("not-a-dict.bin", "not a state_dict: the pickle holds no dictionary at the top"),
        ("zip64-bad-locator.bin", "ZIP64 end-of-central-directory record at byte 3252 lies outside the file"),
        ("zip64-short-extra.bin", "ZIP64 extra field of 'valid/.data/serialization_id' is too short"),
    ])
    func errors(file: String, fragment: String) throws {
        do {
            _ = try TorchCheckpointFile(path: path(file))
            Issue.record("no error for \(file)")
        } catch let error as TorchCheckpointError {
            #expect("\(error)".contains(fragment), "\(error)")
            #expect("\(error)".hasPrefix(path(file)))
        }
    }

    @Test("a file that is no zip at all is named")
    func notAZip() throws {
        let url = scratchURL("torch.bin")
        try Data(repeating: 7, count: 100).write(to: url)
        #expect(throws: TorchCheckpointError.malformedZip(file: url.path, reason: "no end-of-central-directory record")) {
            try TorchCheckpointFile(path: url.path)
        }
        #expect(throws: TorchCheckpointError.self) { try TorchCheckpointFile(path: "/nonexistent/pytorch_model.bin") }
    }
}

@Suite("hostile pickles")
struct HostilePickleTests {
    func unpickle(_ bytes: [UInt8]) throws -> PickleValue {
        try bytes.withUnsafeBytes { try SafeUnpickler(data: $0, file: "evil.pkl").run() }
    }

    @Test("deep nesting, huge lengths and unknown globals are errors")
    func hostile() throws {
        // N followed by a million TUPLE1s: refused at depth 17, before it can exhaust the stack.
        let nested = [0x80, 2, 0x4E] + [UInt8](repeating: 0x85, count: 1_000_000) + [0x2E]
        #expect(throws: TorchCheckpointError.malformedPickle(file: "evil.pkl", offset: 19, reason: "tuples nested deeper than 16")) { try unpickle(nested) }
        // BINUNICODE8 with a length near Int.max.
        let long = [0x80, 4, 0x8D] + [UInt8](repeating: 0xFF, count: 7) + [0x7F, 0x2E]
        #expect(throws: TorchCheckpointError.malformedPickle(file: "evil.pkl", offset: 11, reason: "truncated")) { try unpickle(long) }
        let global = [0x80, 2, 0x63] + Array("builtins\neval\n".utf8) + [0x2E]
        #expect(throws: TorchCheckpointError.refusedGlobal(file: "evil.pkl", name: "builtins.eval")) { try unpickle(global) }
    }
}
