/// Everything that can be wrong with a safetensors file or a sharded checkpoint. Each case names
/// the file and, where there is one, the tensor.
public enum SafeTensorsError: Error, Equatable, CustomStringConvertible {
    case cannotOpen(file: String, reason: String)
    case truncated(file: String, size: Int)
    case headerLengthOutOfRange(file: String, declared: UInt64, fileSize: Int)
    case malformedHeader(file: String, reason: String)
    case unknownDType(file: String, tensor: String, dtype: String)
    case unsupportedDType(file: String, tensor: String, dtype: String)
    case byteCountMismatch(file: String, tensor: String, shape: [Int], dtype: String, expected: Int, actual: Int)
    case dataOutOfBounds(file: String, tensor: String, begin: Int, end: Int, dataSize: Int)
    case overlappingData(file: String, tensor: String, other: String)
    case missingTensor(name: String, file: String)
    case noWeights(directory: String)
    case malformedIndex(file: String, reason: String)
    case tensorInSeveralShards(tensor: String, files: [String])
    case cannotWrite(file: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(file, reason):
            "\(file): cannot open: \(reason)"
        case let .truncated(file, size):
            "\(file): truncated safetensors file (\(size) bytes; needs an 8-byte header length and a header)"
        case let .headerLengthOutOfRange(file, declared, fileSize):
            "\(file): header length \(declared) does not fit in a file of \(fileSize) bytes (or exceeds the 100 MB limit)"
        case let .malformedHeader(file, reason):
            "\(file): malformed safetensors header: \(reason)"
        case let .unknownDType(file, tensor, dtype):
            "\(file): tensor '\(tensor)' has unknown dtype '\(dtype)'"
        case let .unsupportedDType(file, tensor, dtype):
            "\(file): tensor '\(tensor)' has dtype \(dtype); only F32, BF16 and F16 weights are supported"
        case let .byteCountMismatch(file, tensor, shape, dtype, expected, actual):
            "\(file): tensor '\(tensor)' of shape \(shape) and dtype \(dtype) needs \(expected) bytes but its data_offsets span \(actual)"
        case let .dataOutOfBounds(file, tensor, begin, end, dataSize):
            "\(file): tensor '\(tensor)' data_offsets [\(begin), \(end)] fall outside the \(dataSize)-byte data section"
        case let .overlappingData(file, tensor, other):
            "\(file): tensors '\(tensor)' and '\(other)' overlap in the data section"
        case let .missingTensor(name, file):
            "\(file): no tensor named '\(name)'"
        case let .noWeights(directory):
            "\(directory): no weights (model.safetensors, model.safetensors.index.json, other *.safetensors or pytorch_model.bin)"
        case let .malformedIndex(file, reason):
            "\(file): malformed safetensors index: \(reason)"
        case let .tensorInSeveralShards(tensor, files):
            "tensor '\(tensor)' appears in several shards: \(files.joined(separator: ", "))"
        case let .cannotWrite(file, reason):
            "\(file): cannot write: \(reason)"
        }
    }
}
