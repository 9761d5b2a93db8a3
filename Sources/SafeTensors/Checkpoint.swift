import Foundation
import Tensors

/// The safetensors weights of a model folder: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists in its `weight_map`, or else every `*.safetensors` file.
public struct Checkpoint: Sendable {
    public let directory: URL
    /// Open files, each mapped once (or read into memory once).
    public let files: [SafeTensorsFile]
    private let location: [String: SafeTensorsFile]

    public static let indexName = "model.safetensors.index.json"

    public init(directory: URL) throws {
        self.directory = directory
        let fileManager = FileManager.default
        let indexURL = directory.appendingPathComponent(Self.indexName)
        let singleURL = directory.appendingPathComponent("model.safetensors")
        var files: [SafeTensorsFile] = []
        var location: [String: SafeTensorsFile] = [:]

        if fileManager.fileExists(atPath: indexURL.path) {
            let shardByTensor = try Self.readIndex(indexURL)
            var opened: [String: SafeTensorsFile] = [:]
            for (tensor, shard) in shardByTensor.sorted(by: { $0.key < $1.key }) {
                guard !shard.contains("/"), !shard.hasPrefix(".") else {
                    throw SafeTensorsError.malformedIndex(file: indexURL.path, reason: "shard name '\(shard)' for '\(tensor)' must be a file in the same folder")
                }
                let file: SafeTensorsFile
                if let existing = opened[shard] {
                    file = existing
                } else {
                    file = try SafeTensorsFile(path: directory.appendingPathComponent(shard).path)
                    opened[shard] = file
                    files.append(file)
                }
                guard file.tensors[tensor] != nil else {
                    throw SafeTensorsError.missingTensor(name: tensor, file: file.path)
                }
                location[tensor] = file
            }
        } else if fileManager.fileExists(atPath: singleURL.path) {
            let file = try SafeTensorsFile(path: singleURL.path)
            files = [file]
            for name in file.tensors.keys { location[name] = file }
        } else {
            let names = (try? fileManager.contentsOfDirectory(atPath: directory.path)) ?? []
            for name in names.filter({ $0.hasSuffix(".safetensors") }).sorted() {
                let file = try SafeTensorsFile(path: directory.appendingPathComponent(name).path)
                files.append(file)
                for tensor in file.tensors.keys {
                    if let other = location[tensor] {
                        throw SafeTensorsError.tensorInSeveralShards(tensor: tensor, files: [other.path, file.path])
                    }
                    location[tensor] = file
                }
            }
            guard !files.isEmpty else { throw SafeTensorsError.noWeights(directory: directory.path) }
        }
        self.files = files
        self.location = location
    }

    /// Bytes of every file.
    public var byteCount: Int { files.map(\.byteCount).reduce(0, +) }

    private init(directory: URL, files: [SafeTensorsFile], location: [String: SafeTensorsFile]) {
        (self.directory, self.files, self.location) = (directory, files, location)
    }

    /// The same checkpoint with every file read into memory (see `WeightResidency.inMemory`);
    /// `progress` hears (bytes read, total).
    public func readIntoMemory(progress: (Int, Int) -> Void = { _, _ in }) throws -> Checkpoint {
        let total = byteCount
        var done = 0
        var copies: [ObjectIdentifier: SafeTensorsFile] = [:]
        for file in files {
            copies[ObjectIdentifier(file)] = try file.readIntoMemory { progress(done + $0, total) }
            done += file.byteCount
        }
        return Checkpoint(
            directory: directory, files: files.map { copies[ObjectIdentifier($0)]! },
            location: location.mapValues { copies[ObjectIdentifier($0)]! })
    }

    /// Reads every file once (see `SafeTensorsFile.prefetch`); `progress` hears (bytes read, total).
    public func prefetch(progress: (Int, Int) -> Void) {
        let total = byteCount
        var done = 0
        for file in files {
            file.prefetch { progress(done + $0, total) }
            done += file.byteCount
        }
    }

    /// Every tensor name, sorted.
    public var names: [String] { location.keys.sorted() }

    public func info(_ name: String) -> TensorInfo? { location[name]?.tensors[name] }

    /// A zero-copy view of tensor `name`, from whichever shard holds it.
    public func view(_ name: String) throws -> WeightView {
        guard let file = location[name] else { throw SafeTensorsError.missingTensor(name: name, file: directory.path) }
        return try file.view(name)
    }

    private struct Index: Decodable {
        let weight_map: [String: String]
    }

    private static func readIndex(_ url: URL) throws -> [String: String] {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw SafeTensorsError.cannotOpen(file: url.path, reason: error.localizedDescription)
        }
        do {
            return try JSONDecoder().decode(Index.self, from: data).weight_map
        } catch DecodingError.keyNotFound {
            throw SafeTensorsError.malformedIndex(file: url.path, reason: "no \"weight_map\" object")
        } catch {
            throw SafeTensorsError.malformedIndex(file: url.path, reason: "\"weight_map\" must be a JSON object of tensor name to shard file name")
        }
    }
}
