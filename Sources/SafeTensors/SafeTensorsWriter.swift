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
