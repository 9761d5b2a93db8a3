import Foundation
import SafeTensors
import Tensors

/// NumPy `.npy` version 1.0 files of little-endian float32 (`<f4`), C order.
enum NPY {
    static func write(_ tensor: Tensor, to url: URL) throws {
        let shape = tensor.shape.map(String.init).joined(separator: ", ") + (tensor.rank == 1 ? "," : "")
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(shape)), }"
        // Magic (6) + version (2) + length (2) + header + newline, padded to a multiple of 64.
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var prefix = [0x93] + Array("NUMPY".utf8) + [1, 0]
        withUnsafeBytes(of: UInt16(header.utf8.count).littleEndian) { prefix.append(contentsOf: $0) }
        prefix.append(contentsOf: Array(header.utf8))
        let output = try FileOutput(url: url)
        try output.write(prefix)
        // Little-endian in pieces of 1 M values, so the logits are never copied whole.
        var piece: [UInt8] = []
        for start in stride(from: 0, to: tensor.scalars.count, by: 1 << 20) {
            piece.removeAll(keepingCapacity: true)
            for value in tensor.scalars[start..<min(start + (1 << 20), tensor.scalars.count)] {
                withUnsafeBytes(of: value.bitPattern.littleEndian) { piece.append(contentsOf: $0) }
            }
            try output.write(piece)
        }
        try output.commit()
    }
}
