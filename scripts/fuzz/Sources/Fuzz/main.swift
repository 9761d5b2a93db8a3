// One libFuzzer input through the parser FUZZ_TARGET names, as a user's file reaches it: every
// failure must be a thrown error, never a crash, a hang or a runaway allocation.
import Foundation
import FuzzerDriver
import Generation
import Mamba2
import SafeTensors
import Tensors
import Tokenizers
import TorchCheckpoint

let target = ProcessInfo.processInfo.environment["FUZZ_TARGET"] ?? "safetensors"
let targets = ["safetensors", "torch", "config", "tokenizer", "sentencepiece", "generation", "tokenizer-config", "index", "state"]
guard targets.contains(target) else {
    FileHandle.standardError.write(Data("FUZZ_TARGET must be one of \(targets.joined(separator: ", ")), got \(target)\n".utf8))
    exit(2)
}

/// The file readers take a path: each input is written to this fresh file (mkstemp) first.
let scratch: String = {
    var template = Array(FileManager.default.temporaryDirectory.appendingPathComponent("mamba2-fuzz-XXXXXX").path.utf8CString)
    let descriptor = mkstemp(&template)
    guard descriptor >= 0 else { fatalError("no temporary file for the fuzzer's inputs") }
    close(descriptor)
    return String(cString: template)
}()
atexit { unlink(scratch) }

/// The readers that take a model folder: each input becomes one file of this fresh folder
/// (mkdtemp), beside whatever the target puts there once.
let scratchFolder: String = {
    var template = Array(FileManager.default.temporaryDirectory.appendingPathComponent("mamba2-fuzz-XXXXXX").path.utf8CString)
    guard mkdtemp(&template) != nil else { fatalError("no temporary folder for the fuzzer's inputs") }
    return String(cString: template)
}()
atexit { try? FileManager.default.removeItem(atPath: scratchFolder) }

/// The test fixtures (run.sh passes their path): the index's shards and the state's model.
let fixtures = URL(fileURLWithPath: ProcessInfo.processInfo.environment["FUZZ_FIXTURES"] ?? "Tests/Fixtures")
let shardedModel = fixtures.appendingPathComponent("models/g1-sharded")
/// The model whose state files the state target reads (run.sh saves its seeds with it).
let stateModel: Mamba2Config? = target == "state" ? try? Mamba2Config(file: fixtures.appendingPathComponent("models/g1-tied/config.json")) : nil
if target == "state", stateModel == nil { fatalError("no \(fixtures.path)/models/g1-tied/config.json: set FUZZ_FIXTURES") }
if target == "index" {
    // The index names these shards; a fuzzed one may name others, which are then missing.
    let shards = (try? FileManager.default.contentsOfDirectory(atPath: shardedModel.path))?.filter { $0.hasSuffix(".safetensors") } ?? []
    guard !shards.isEmpty else { fatalError("no shards in \(shardedModel.path): set FUZZ_FIXTURES") }
    for shard in shards {
        try! FileManager.default.createSymbolicLink(
            atPath: scratchFolder + "/" + shard, withDestinationPath: shardedModel.appendingPathComponent(shard).path)
    }
}

/// Writes the input to the scratch file (or `path`); a failure stops the run, so no input is
/// ever parsed as another's bytes.
func writeScratch(_ bytes: UnsafeBufferPointer<UInt8>, to path: String = scratch) {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0o600)
    var done = 0
    while descriptor >= 0, done < bytes.count {
        let written = write(descriptor, bytes.baseAddress! + done, bytes.count - done)
        if written <= 0 { break }
        done += written
    }
    guard descriptor >= 0, done == bytes.count, close(descriptor) == 0 else { fatalError("cannot write the input to \(path)") }
}

let text = "Hello, world! def f(x):\n\treturn x ** 2  # ünïcödé 漢字 🙂 ▁"

func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = UnsafeBufferPointer(start: data, count: data == nil ? 0 : size)
    switch target {
    case "safetensors":
        writeScratch(bytes)
        if let file = try? SafeTensorsFile(path: scratch) {
            for name in file.names { _ = (try? file.view(name))?.floats() }
            if let copy = try? file.readIntoMemory() { for name in copy.names { _ = (try? copy.view(name))?.floats() } }
        }
    case "torch":
        writeScratch(bytes)
        if let file = try? TorchCheckpointFile(path: scratch) { for tensor in file.tensors { _ = tensor.view.floats() } }
    case "config":
        _ = try? Mamba2Config(json: Data(buffer: bytes))
    case "tokenizer":
        if let tokenizer = try? Tokenizer(bytes: Array(bytes)), let encoding = try? tokenizer.encode(text) {
            _ = try? tokenizer.decode(encoding.ids)
        }
    case "generation":
        writeScratch(bytes)
        _ = try? GenerationConfig(file: URL(fileURLWithPath: scratch)).validate()
    case "tokenizer-config":
        writeScratch(bytes, to: scratchFolder + "/tokenizer_config.json")
        _ = try? TokenizerConfig(directory: URL(fileURLWithPath: scratchFolder))
    case "index":
        writeScratch(bytes, to: scratchFolder + "/" + Checkpoint.indexName)
        if let checkpoint = try? Checkpoint(directory: URL(fileURLWithPath: scratchFolder)) {
            for file in checkpoint.files { for name in file.names { _ = (try? file.view(name))?.floats() } }
        }
    case "state":
        writeScratch(bytes)
        if let session = try? StateFile.read(URL(fileURLWithPath: scratch), for: stateModel!) {
            _ = try? session.state.validate(for: stateModel!, batchSize: session.batchSize)
        }
    default:  // sentencepiece: the protobuf, then the tokenizer made from it, both forms
        writeScratch(bytes)
        for legacy in [false, true] {
            if let tokenizer = try? Tokenizer(sentencePieceModel: URL(fileURLWithPath: scratch), legacy: legacy),
               let encoding = try? tokenizer.encode(text) {
                _ = try? tokenizer.decode(encoding.ids)
            }
        }
    }
    return 0
}

var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { fuzzOne($0, $1) })
