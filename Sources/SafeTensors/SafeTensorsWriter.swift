import Foundation
import Tensors

/// Writes safetensors files: data packed without gaps, the header padded with spaces to a
/// multiple of 8 bytes (as the Python `safetensors` package does), through `FileOutput`.
public enum SafeTensorsWriter {
    /// Writes `tensors` from their views, in name order, straight to the file (no copy of the
    /// whole file in memory).
    public static func write(_ tensors: [String: WeightView], metadata: [String: String]? = nil, to url: URL) throws {
        let names = tensors.keys.sorted()
        let entries = names.map { name in
            let view = tensors[name]!
            return (name: name, dtype: view.dtype, shape: view.shape, byteCount: view.bytes.count)
        }
        let output = try FileOutput(url: url)
        try output.write(header(entries, metadata: metadata))
        for name in names { try output.write(tensors[name]!.bytes) }
        try output.commit()
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
        let output = try FileOutput(url: url)
        try output.write(header(tensors.map { ($0.name, $0.dtype, $0.shape, $0.byteCount) }, metadata: metadata))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: pieceBytes, alignment: 64)
        defer { buffer.deallocate() }
        for tensor in tensors {
            var written = 0
            while written < tensor.byteCount {
                let count = min(pieceBytes, tensor.byteCount - written)
                let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
                tensor.fill(written, piece)
                try output.write(UnsafeRawBufferPointer(piece))
                written += count
            }
        }
        try output.commit()
    }

    /// The 8-byte header length and the header for tensors packed in this order without gaps,
    /// padded with spaces to a multiple of 8 bytes.
    static func header(_ tensors: [(name: String, dtype: DType, shape: [Int], byteCount: Int)], metadata: [String: String]?) -> [UInt8] {
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
        return withUnsafeBytes(of: UInt64(header.count).littleEndian, Array.init) + header
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
