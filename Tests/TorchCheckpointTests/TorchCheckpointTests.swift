import Foundation
import Testing
import Tensors
@testable import TorchCheckpoint

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
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("torch-\(UUID().uuidString).bin")
        try Data(repeating: 7, count: 100).write(to: url)
        #expect(throws: TorchCheckpointError.malformedZip(file: url.path, reason: "no end-of-central-directory record")) {
            try TorchCheckpointFile(path: url.path)
        }
        #expect(throws: TorchCheckpointError.self) { try TorchCheckpointFile(path: "/nonexistent/pytorch_model.bin") }
    }
}
