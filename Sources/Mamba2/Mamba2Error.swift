/// Errors from loading or running a Mamba-2 model. Each names the file, field or tensor at fault.
public enum Mamba2Error: Error, Equatable, CustomStringConvertible {
    case cannotRead(file: String, reason: String)
    case malformedConfig(file: String, reason: String)
    case invalidConfig(field: String, reason: String)
    case unsupportedConfig(field: String, reason: String)
    case missingWeight(name: String, expectedShape: [Int])
    case unexpectedWeight(name: String, shape: [Int])
    case weightShapeMismatch(name: String, expected: [Int], actual: [Int])
    case unsupportedWeight(name: String, reason: String)
    case invalidInput(String)
    case tokenIDOutOfRange(id: Int, vocabularySize: Int, row: Int, position: Int)
    case labelOutOfRange(label: Int, vocabularySize: Int, row: Int, position: Int)
    case stateMismatch(String)

    public var description: String {
        switch self {
        case let .cannotRead(file, reason):
            "\(file): cannot read: \(reason)"
        case let .malformedConfig(file, reason):
            "\(file): malformed config: \(reason)"
        case let .invalidConfig(field, reason):
            "invalid config field '\(field)': \(reason)"
        case let .unsupportedConfig(field, reason):
            "unsupported config field '\(field)': \(reason)"
        case let .missingWeight(name, expectedShape):
            "missing weight '\(name)' (expected shape \(expectedShape))"
        case let .unexpectedWeight(name, shape):
            "unexpected weight '\(name)' of shape \(shape): not part of this Mamba-2 config"
        case let .weightShapeMismatch(name, expected, actual):
            "weight '\(name)' has shape \(actual), expected \(expected)"
        case let .unsupportedWeight(name, reason):
            "weight '\(name)': \(reason)"
        case let .invalidInput(reason):
            "invalid input: \(reason)"
        case let .tokenIDOutOfRange(id, vocabularySize, row, position):
            "token id \(id) at row \(row), position \(position) is outside the vocabulary [0, \(vocabularySize))"
        case let .labelOutOfRange(label, vocabularySize, row, position):
            "label \(label) at row \(row), position \(position) is neither -100 nor in [0, \(vocabularySize))"
        case let .stateMismatch(reason):
            "state does not fit this model or batch: \(reason)"
        }
    }
}
