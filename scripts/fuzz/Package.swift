// swift-tools-version: 6.0
// libFuzzer harness for the parsers of untrusted files (scripts/fuzz/run.sh builds and runs it,
// the package's modules with the fuzzer's coverage instrumentation and AddressSanitizer).
import PackageDescription

let package = Package(
    name: "mamba2-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "swift-mamba2", path: "../..")],
    targets: [
        // LLVMFuzzerRunDriver's C declaration.
        .target(name: "FuzzerDriver"),
        .executableTarget(
            name: "Fuzz",
            dependencies: [
                "FuzzerDriver",
                .product(name: "Generation", package: "swift-mamba2"),
                .product(name: "Mamba2", package: "swift-mamba2"),
                .product(name: "SafeTensors", package: "swift-mamba2"),
                .product(name: "Tensors", package: "swift-mamba2"),
                .product(name: "Tokenizers", package: "swift-mamba2"),
                .product(name: "TorchCheckpoint", package: "swift-mamba2"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
