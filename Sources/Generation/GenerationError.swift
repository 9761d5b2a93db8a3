/// Errors of generation: invalid settings, bad files, mismatched states. Each names the setting,
/// the file or the field.
public enum GenerationError: Error, Equatable, CustomStringConvertible {
    case invalidSetting(name: String, reason: String)
    case malformedFile(file: String, reason: String)
    case unsupportedSetting(file: String, name: String, value: String)
    case stateMismatch(file: String, reason: String)
    case invalidInput(String)

    public var description: String {
        switch self {
        case let .invalidSetting(name, reason): "invalid generation setting '\(name)': \(reason)"
        case let .malformedFile(file, reason): "\(file): \(reason)"
        case let .unsupportedSetting(file, name, value):
            "\(file): \(name) = \(value) selects a kind of generation this package does not implement (it does greedy and sampled"
                + " decoding); remove it from the file, or from the config's `unsupported` settings, to generate without it"
        case let .stateMismatch(file, reason): "\(file): state does not fit: \(reason)"
        case let .invalidInput(reason): "invalid input: \(reason)"
        }
    }
}
