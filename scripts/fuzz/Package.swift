// swift-tools-version: 6.0
// libFuzzer harness for the parsers of untrusted files (scripts/fuzz/run.sh builds and runs it).
// Its module folders are links to the package's own sources, built here with the fuzzer's
// coverage instrumentation and AddressSanitizer.
import PackageDescription

let package = Package(
    name: "mamba2-fuzz",
    targets: [
        .target(name: "CKernels"),
        .target(name: "Tensors", dependencies: ["CKernels"]),
        .target(name: "SafeTensors", dependencies: ["Tensors"]),
        .target(name: "Tokenizers"),
        .target(name: "TorchCheckpoint", dependencies: ["Tensors"]),
        .target(name: "Mamba2", dependencies: ["Tensors", "SafeTensors", "TorchCheckpoint"]),
        .executableTarget(name: "Fuzz", dependencies: ["Tensors", "SafeTensors", "TorchCheckpoint", "Tokenizers", "Mamba2"]),
    ],
    swiftLanguageModes: [.v6]
)
