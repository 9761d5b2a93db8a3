// One libFuzzer input through the parser FUZZ_TARGET names, as a user's file would reach it:
// every failure must be a thrown error, never a crash, a hang or a runaway allocation.
import Foundation
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
/// The file readers take a path: each input is written here first.
let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("mamba2-fuzz-\(getpid())").path

func writeScratch(_ bytes: UnsafeBufferPointer<UInt8>) {
    let descriptor = open(scratch, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    var done = 0
    while done < bytes.count {
        let written = write(descriptor, bytes.baseAddress! + done, bytes.count - done)
        if written <= 0 { break }
        done += written
    }
    close(descriptor)
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
    default:  // sentencepiece: the protobuf, then the tokenizer made from it
        if let model = try? SentencePieceModel(bytes: Array(bytes)), let tokenizer = try? Tokenizer(bytes: model.huggingFaceJSON()) {
            _ = try? tokenizer.encode(text)
        }
    }
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func runDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
               _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(runDriver(&argc, &argv, { fuzzOne($0, $1) }))
