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
        // The values' own bytes: little-endian, as the package's hosts are (the safetensors files
        // it writes and maps hold host-order values too).
        try tensor.scalars.withUnsafeBytes { try output.write($0) }
        try output.commit()
    }
}
