import Foundation

/// Python's `json` writes the non-standard literals `Infinity`, `-Infinity` and `NaN` (real
/// Mamba-2 config.json files carry `"time_step_limit": [0.0, Infinity]`). This rewrites such bare
/// literals, outside strings, as the strings `"Infinity"`, `"-Infinity"` and `"NaN"`, which
/// `JSONDecoder` then reads back as numbers where a number is expected.
enum LenientJSON {
    static func standardized(_ data: Data) -> Data {
        let bytes = [UInt8](data)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 16)
        var index = 0
        var inString = false
        let literals: [[UInt8]] = [Array("-Infinity".utf8), Array("Infinity".utf8), Array("NaN".utf8)]
        while index < bytes.count {
            let byte = bytes[index]
            if inString {
                out.append(byte)
                if byte == UInt8(ascii: "\\"), index + 1 < bytes.count {
                    out.append(bytes[index + 1])
                    index += 2
                    continue
                }
                if byte == UInt8(ascii: "\"") { inString = false }
                index += 1
                continue
            }
            if byte == UInt8(ascii: "\"") {
                inString = true
                out.append(byte)
                index += 1
                continue
            }
            if let literal = literals.first(where: { bytes[index...].starts(with: $0) }) {
                out.append(UInt8(ascii: "\""))
                out.append(contentsOf: literal)
                out.append(UInt8(ascii: "\""))
                index += literal.count
                continue
            }
            out.append(byte)
            index += 1
        }
        return Data(out)
    }

    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return decoder
    }
}
