// One libFuzzer input through the parser FUZZ_TARGET names, as a user's file reaches it: every
// failure must be a thrown error, never a crash, a hang or a runaway allocation.
import Foundation
import FuzzerDriver
import Mamba2
import SafeTensors
import Tensors
import Tokenizers
import TorchCheckpoint

let target = ProcessInfo.processInfo.environment["FUZZ_TARGET"] ?? "safetensors"
let targets = ["safetensors", "torch", "config", "tokenizer", "sentencepiece"]
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

/// Writes the input to the scratch file; a failure stops the run, so no input is ever parsed
/// as another's bytes.
func writeScratch(_ bytes: UnsafeBufferPointer<UInt8>) {
    let descriptor = open(scratch, O_WRONLY | O_TRUNC | O_NOFOLLOW)
    var done = 0
    while descriptor >= 0, done < bytes.count {
        let written = write(descriptor, bytes.baseAddress! + done, bytes.count - done)
        if written <= 0 { break }
        done += written
    }
    guard descriptor >= 0, done == bytes.count, close(descriptor) == 0 else { fatalError("cannot write the input to \(scratch)") }
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
