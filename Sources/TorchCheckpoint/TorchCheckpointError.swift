/// Everything that can be wrong with a `pytorch_model.bin`, each naming the file and the part.
public enum TorchCheckpointError: Error, Equatable, CustomStringConvertible {
    case cannotOpen(file: String, reason: String)
    case malformedZip(file: String, reason: String)
    case unsupportedCompression(file: String, entry: String, method: Int)
    case missingEntry(file: String, entry: String)
    case malformedPickle(file: String, offset: Int, reason: String)
    /// A global the safe unpickler does not allow (it never imports or calls anything).
    case refusedGlobal(file: String, name: String)
    case unsupportedStorage(file: String, type: String)
    case storageSizeMismatch(file: String, key: String, expected: Int, actual: Int)
    case badTensor(file: String, name: String, reason: String)
    case notAStateDict(file: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(file, reason): "\(file): cannot open: \(reason)"
        case let .malformedZip(file, reason): "\(file): not a valid torch zip archive: \(reason)"
        case let .unsupportedCompression(file, entry, method): "\(file): entry '\(entry)' uses compression method \(method); only stored entries are supported"
        case let .missingEntry(file, entry): "\(file): no entry '\(entry)' in the archive"
        case let .malformedPickle(file, offset, reason): "\(file): malformed pickle at byte \(offset): \(reason)"
        case let .refusedGlobal(file, name): "\(file): refusing pickle global '\(name)': only torch state_dict globals are allowed"
        case let .unsupportedStorage(file, type): "\(file): unsupported storage type '\(type)' (F32, F16 and BF16 are supported)"
        case let .storageSizeMismatch(file, key, expected, actual): "\(file): storage '\(key)' should hold \(expected) bytes but has \(actual)"
        case let .badTensor(file, name, reason): "\(file): tensor '\(name)': \(reason)"
        case let .notAStateDict(file, reason): "\(file): not a state_dict: \(reason)"
        }
    }
}
