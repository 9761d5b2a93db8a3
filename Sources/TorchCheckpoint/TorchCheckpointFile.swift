import Tensors

/// A `pytorch_model.bin` (the zip format of `torch.save`) read without Python and without
/// executing its pickle: every tensor of the state_dict as a zero-copy view into the mapped file.
public final class TorchCheckpointFile: Sendable {
    public let path: String
    /// Tensor name → view, in file order of the state_dict.
    public let tensors: [(name: String, view: WeightView)]

    public init(path: String) throws {
        self.path = path
        let archive = try ZipArchive(path: path)
        guard let pickleName = archive.entries.keys.filter({ $0.hasSuffix("/data.pkl") }).sorted().first else {
            throw TorchCheckpointError.missingEntry(file: path, entry: "<name>/data.pkl")
        }
        let prefix = String(pickleName.dropLast("data.pkl".count))
        let root = try SafeUnpickler(data: try archive.bytes(pickleName), file: path).run()
        guard case let .dict(dict) = root else {
            throw TorchCheckpointError.notAStateDict(file: path, reason: "the pickle holds no dictionary at the top")
        }
        var tensors: [(String, WeightView)] = []
        var seen = Set<String>()
        for (key, value) in dict.items {
            guard case let .string(name) = key else { throw TorchCheckpointError.notAStateDict(file: path, reason: "a key is not a string") }
            guard case let .tensor(reference) = value else { throw TorchCheckpointError.notAStateDict(file: path, reason: "'\(name)' is not a tensor") }
            guard seen.insert(name).inserted else { throw TorchCheckpointError.notAStateDict(file: path, reason: "'\(name)' appears twice") }
            tensors.append((name, try Self.view(reference, name: name, archive: archive, prefix: prefix)))
        }
        self.tensors = tensors
    }

    private static func view(_ tensor: TensorReference, name: String, archive: ZipArchive, prefix: String) throws -> WeightView {
        let storage = tensor.storage
        let bytes = try archive.bytes(prefix + "data/" + storage.key)
        let size = storage.dtype.size
        let (expectedBytes, overflow) = storage.elements.multipliedReportingOverflow(by: size)
        guard !overflow, bytes.count == expectedBytes else {
            throw TorchCheckpointError.storageSizeMismatch(file: archive.path, key: storage.key, expected: overflow ? Int.max : expectedBytes, actual: bytes.count)
        }
        // Only row-major contiguous tensors are views; anything else would need a copy.
        var expected = 1
        for (dimension, stride) in zip(tensor.shape, tensor.strides).reversed() where dimension != 1 {
            guard stride == expected else { throw TorchCheckpointError.badTensor(file: archive.path, name: name, reason: "not contiguous (stride \(tensor.strides) for size \(tensor.shape))") }
            let (product, overflow) = expected.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw TorchCheckpointError.badTensor(file: archive.path, name: name, reason: "size \(tensor.shape) overflows") }
            expected = product
        }
        let count = tensor.shape.contains(0) ? 0 : expected
        guard tensor.offset <= storage.elements, count <= storage.elements - tensor.offset else {
            throw TorchCheckpointError.badTensor(file: archive.path, name: name, reason: "elements [\(tensor.offset), \(tensor.offset + count)) fall outside its storage of \(storage.elements)")
        }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[(tensor.offset * size)..<((tensor.offset + count) * size)])
        return WeightView(dtype: storage.dtype, shape: tensor.shape, bytes: slice, owner: archive)
    }
}
