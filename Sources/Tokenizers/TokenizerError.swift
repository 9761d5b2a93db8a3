/// Errors from loading or using a tokenizer. Each names the file, the JSON path or the id.
public enum TokenizerError: Error, Equatable, CustomStringConvertible {
    case cannotRead(file: String, reason: String)
    case malformedJSON(file: String, offset: Int, reason: String)
    /// A SentencePiece model file that is not a valid protobuf message.
    case malformedModel(file: String, offset: Int, reason: String)
    /// A field that is missing, of the wrong type, or of an unusable value.
    case invalidField(file: String, path: String, reason: String)
    /// A `"type"` this package does not implement.
    case unknownType(file: String, path: String, type: String)
    case idOutOfRange(id: Int, vocabularySize: Int)
    /// Text the model cannot represent (no vocabulary entry, no byte fallback, no unknown token).
    case unrepresentable(text: String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .cannotRead(file, reason):
            "\(file): cannot read: \(reason)"
        case let .malformedJSON(file, offset, reason):
            "\(file): malformed JSON at byte \(offset): \(reason)"
        case let .malformedModel(file, offset, reason):
            "\(file): malformed SentencePiece model at byte \(offset): \(reason)"
        case let .invalidField(file, path, reason):
            "\(file): \(path): \(reason)"
        case let .unknownType(file, path, type):
            "\(file): \(path): unknown type \"\(type)\""
        case let .idOutOfRange(id, vocabularySize):
            "token id \(id) is outside the vocabulary [0, \(vocabularySize))"
        case let .unrepresentable(text):
            "the tokenizer cannot represent \(text.debugDescription): no vocabulary entry, byte fallback or unknown token"
        case let .invalidArgument(reason):
            "invalid argument: \(reason)"
        }
    }
}
