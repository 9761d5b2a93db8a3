import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A file written front to back with POSIX `write`, under a temporary name beside it that
/// `commit` renames over the destination, so a reader never sees half a file and a failed
/// write leaves no file behind.
///
/// Files of any size: swift-corelibs-foundation's `Data.write(to:)` (Swift 6.3, Linux) wrote
/// wrong bytes past the first 2 GiB (the most one `write` moves), which corrupted every
/// checkpoint shard larger than that. Here each `write` is at most 64 MB and its partial
/// writes are resumed where they stopped.
public final class FileOutput {
    public let path: String
    private let temporaryPath: String
    private var descriptor: Int32
    /// Bytes written so far.
    public private(set) var offset = 0

    public init(url: URL) throws {
        path = url.path
        temporaryPath = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).partial").path
        descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else { throw SafeTensorsError.cannotWrite(file: path, reason: String(cString: strerror(errno))) }
    }

    deinit {
        if descriptor >= 0 {
            close(descriptor)
            unlink(temporaryPath)
        }
    }

    /// Appends `bytes`.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard descriptor >= 0 else { throw SafeTensorsError.cannotWrite(file: path, reason: "written after commit") }
        guard var next = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let count = writeSome(descriptor, next, min(left, 64 << 20))
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                throw SafeTensorsError.cannotWrite(file: path, reason: "write failed at byte \(offset): \(String(cString: strerror(errno)))")
            }
            next += count
            left -= count
            offset += count
        }
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Closes the file and moves it to its destination, replacing any file there.
    public func commit() throws {
        guard descriptor >= 0 else { return }
        let closed = close(descriptor)
        descriptor = -1
        guard closed == 0 else {
            unlink(temporaryPath)
            throw SafeTensorsError.cannotWrite(file: path, reason: "close failed: \(String(cString: strerror(errno)))")
        }
        guard rename(temporaryPath, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporaryPath)
            throw SafeTensorsError.cannotWrite(file: path, reason: reason)
        }
    }
}

/// POSIX `write`, out of reach of `FileOutput.write` inside the class.
private func writeSome(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, bytes, count)
}
