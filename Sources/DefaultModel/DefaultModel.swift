import Foundation

/// The small Mamba-2 this project trains itself and ships (a ~5 M-parameter Python code model;
/// see its README.md): what `mamba2 generate` runs when no `--model` is given.
public enum DefaultModel {
    /// The model folder (config.json, model.safetensors, tokenizer.json, generation_config.json).
    public static var directory: URL {
        Bundle.module.resourceURL!.appendingPathComponent("mamba2-pycode")
    }
}
