// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "swift-mamba2",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "Mamba2", targets: ["Mamba2"]),
        .library(name: "SafeTensors", targets: ["SafeTensors"]),
        .library(name: "Tensors", targets: ["Tensors"]),
        .library(name: "Tokenizers", targets: ["Tokenizers"]),
        .library(name: "TorchCheckpoint", targets: ["TorchCheckpoint"]),
        .library(name: "Generation", targets: ["Generation"]),
        .library(name: "DefaultModel", targets: ["DefaultModel"]),
        .executable(name: "mamba2", targets: ["Mamba2CLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // Fast C kernels: per-function target attributes and runtime CPU dispatch (no flags).
        .target(name: "CKernels"),
        // Tensors, dtypes and the math: plain reference kernels that know nothing of models, and
        // their fast twins on CKernels.
        .target(name: "Tensors", dependencies: ["CKernels"]),
        // Safetensors files, mapped or read into memory: header validation, sharded index, writer.
        .target(name: "SafeTensors", dependencies: ["Tensors"]),
        // Hugging Face tokenizer.json: normalizers, pre-tokenizers, BPE, post-processors, decoders.
        .target(name: "Tokenizers"),
        // pytorch_model.bin (torch.save's zip + pickle) read safely, without Python.
        .target(name: "TorchCheckpoint", dependencies: ["Tensors"]),
        // Mamba2Config, weights by Hugging Face key, the model and its recurrent state.
        .target(name: "Mamba2", dependencies: ["Tensors", "SafeTensors", "TorchCheckpoint"]),
        // generate(), sampling, batching, streaming, state files, the text-generation pipeline.
        .target(name: "Generation", dependencies: ["Mamba2", "Tokenizers", "SafeTensors", "Tensors"]),
        // The small built-in model (scripts/train_default_model.py), shipped as a resource.
        .target(name: "DefaultModel", resources: [.copy("Resources/mamba2-pycode")]),
        // `mamba2 serve`: the OpenAI-compatible HTTP server (the only target that depends on HTTP).
        .target(
            name: "Mamba2Server",
            dependencies: [
                "Mamba2",
                "Generation",
                "SafeTensors",
                "Tensors",
                "Tokenizers",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The `mamba2` command-line tool.
        .executableTarget(
            name: "Mamba2CLI",
            dependencies: [
                "Mamba2",
                "SafeTensors",
                "Tensors",
                "Tokenizers",
                "Generation",
                "DefaultModel",
                "Mamba2Server",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Where the tests write files (removed when the test process exits).
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "TensorsTests", dependencies: ["Tensors", "CKernels"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors", "Tensors", "TestSupport"]),
        .testTarget(name: "TorchCheckpointTests", dependencies: ["TorchCheckpoint", "Tensors", "TestSupport"]),
        .testTarget(name: "Mamba2Tests", dependencies: ["Mamba2", "SafeTensors", "Tensors", "TestSupport"]),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers", "TestSupport"]),
        .testTarget(name: "GenerationTests", dependencies: ["Generation", "Mamba2", "SafeTensors", "Tensors", "Tokenizers", "DefaultModel", "TestSupport"]),
        .testTarget(name: "Mamba2ServerTests", dependencies: ["Mamba2Server", "Generation", "Tensors", "DefaultModel"]),
        .testTarget(name: "Mamba2CLITests", dependencies: ["Mamba2CLI", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
