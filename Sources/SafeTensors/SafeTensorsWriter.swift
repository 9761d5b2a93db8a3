import Foundation
import Tensors

/// Writes safetensors files: tensors in name order, data packed without gaps, the header padded
/// with spaces to a multiple of 8 bytes (as the Python `safetensors` package does).
public enum SafeTensorsWriter {
    public static func write(_ tensors: [String: WeightView], metadata: [String: String]? = nil, to url: URL) throws {
        let names = tensors.keys.sorted()
        var header = "{"
        var fields: [String] = []
        if let metadata, !metadata.isEmpty {
            let entries = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            fields.append("\"__metadata__\":{\(entries.joined(separator: ","))}")
        }
        var offset = 0
        for name in names {
            let view = tensors[name]!
            let end = offset + view.bytes.count
            let shape = view.shape.map(String.init).joined(separator: ",")
            fields.append("\(jsonString(name)):{\"dtype\":\"\(view.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        header += fields.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }

        var data = Data(capacity: 8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: headerBytes)
        for name in names { data.append(contentsOf: tensors[name]!.bytes) }
        do {
            try data.write(to: url, options: .atomic)
        } catch {
            throw SafeTensorsError.cannotWrite(file: url.path, reason: error.localizedDescription)
        }
    }

    /// One tensor to stream into a file: its bytes are produced in pieces by `fill(offset, buffer)`,
    /// which writes the bytes `[offset, offset + buffer.count)` of the tensor's data.
    public struct StreamedTensor {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        public let fill: (Int, UnsafeMutableRawBufferPointer) -> Void

        public init(name: String, dtype: DType, shape: [Int], fill: @escaping (Int, UnsafeMutableRawBufferPointer) -> Void) {
            (self.name, self.dtype, self.shape, self.fill) = (name, dtype, shape, fill)
        }

        var byteCount: Int { shape.reduce(1, *) * dtype.size }
    }

    /// Writes tensors whose bytes are produced piece by piece, so a file far larger than memory
    /// can be written (e.g. a random 7B checkpoint). Tensors go in the order given.
    public static func stream(_ tensors: [StreamedTensor], metadata: [String: String]? = nil, to url: URL, pieceBytes: Int = 64 << 20) throws {
        var fields: [String] = []
        if let metadata, !metadata.isEmpty {
            fields.append("\"__metadata__\":{" + metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",") + "}")
        }
        var offset = 0
        for tensor in tensors {
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            fields.append("\(jsonString(tensor.name)):{\"dtype\":\"\(tensor.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + tensor.byteCount)]}")
            offset += tensor.byteCount
        }
        var header = Array(("{" + fields.joined(separator: ",") + "}").utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        guard FileManager.default.createFile(atPath: url.path, contents: nil), let handle = try? FileHandle(forWritingTo: url) else {
            throw SafeTensorsError.cannotWrite(file: url.path, reason: "cannot create the file")
        }
        defer { try? handle.close() }
        do {
            var prefix = Data()
            withUnsafeBytes(of: UInt64(header.count).littleEndian) { prefix.append(contentsOf: $0) }
            prefix.append(contentsOf: header)
            try handle.write(contentsOf: prefix)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: pieceBytes, alignment: 64)
            defer { buffer.deallocate() }
            for tensor in tensors {
                var written = 0
                while written < tensor.byteCount {
                    let count = min(pieceBytes, tensor.byteCount - written)
                    let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
                    tensor.fill(written, piece)
                    try handle.write(contentsOf: Data(bytesNoCopy: piece.baseAddress!, count: count, deallocator: .none))
                    written += count
                }
            }
        } catch let error as SafeTensorsError {
            throw error
        } catch {
            throw SafeTensorsError.cannotWrite(file: url.path, reason: error.localizedDescription)
        }
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped, all other
    /// text written as it is (no Unicode normalization).
    public static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
