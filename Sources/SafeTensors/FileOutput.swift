import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A file written front to back with POSIX `write`, under a temporary name of its own beside
/// the destination, which `commit` syncs and renames over the destination: readers
/// never see half a file, a failed or abandoned write leaves no file behind, and of two
/// writers to one destination the last to commit wins whole.
///
/// Files of any size: Foundation's `Data.write(to:)` (Swift 6.3.1, Linux) wrote wrong bytes
/// after its first `write(2)`, which Linux caps at 2 GiB − 4 KiB, and so corrupted every
/// checkpoint shard larger than that. Here each `write` is at most 64 MB and a partial write
/// is resumed where it stopped.
public final class FileOutput {
    public let path: String
    private var temporaryPath = ""
    private var descriptor: Int32 = -1
    private var committed = false
    /// A `write` threw: the file is incomplete and must not be committed.
    private var failed = false
    /// Bytes written so far.
    public private(set) var offset = 0

    public init(url: URL) throws {
        path = url.path
        let directory = url.deletingLastPathComponent()
        // A fresh name per writer (O_EXCL), so concurrent writers never share a temporary file.
        for _ in 0..<100 {
            let candidate = directory.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).partial").path
            descriptor = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            let code = errno
            if descriptor >= 0 {
                temporaryPath = candidate
                return
            }
            if code != EEXIST { throw SafeTensorsError.cannotWrite(file: path, reason: String(cString: strerror(code))) }
        }
        throw SafeTensorsError.cannotWrite(file: path, reason: "no free temporary name beside it")
    }

    deinit {
        if descriptor >= 0 {
            close(descriptor)
            unlink(temporaryPath)
        }
    }

    /// Appends `bytes`.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard descriptor >= 0 else { throw SafeTensorsError.cannotWrite(file: path, reason: "written after its commit") }
        guard var next = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let count = writeSome(descriptor, next, min(left, 64 << 20))
            let code = errno
            if count < 0 && code == EINTR { continue }
            guard count > 0 else {
                failed = true
                let reason = count == 0 ? "no bytes written" : String(cString: strerror(code))
                throw SafeTensorsError.cannotWrite(file: path, reason: "write failed at byte \(offset): \(reason)")
            }
            next += count
            left -= count
            offset += count
        }
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Syncs the file (`fsync`), closes it and moves it to its destination, replacing any file
    /// there, then syncs the directory. A failed commit, or one after a failed write, removes the
    /// temporary file; the output cannot be committed again.
    public func commit() throws {
        guard !committed else { throw SafeTensorsError.cannotWrite(file: path, reason: "already committed (or its commit failed)") }
        committed = true
        let fd = descriptor
        descriptor = -1
        func fail(_ step: String, _ code: Int32) -> SafeTensorsError {
            unlink(temporaryPath)
            return SafeTensorsError.cannotWrite(file: path, reason: "\(step) failed: \(String(cString: strerror(code)))")
        }
        guard !failed else {
            close(fd)
            unlink(temporaryPath)
            throw SafeTensorsError.cannotWrite(file: path, reason: "not committed: an earlier write failed")
        }
        // EINVAL: a file system that cannot sync, as Foundation allows.
        if fsync(fd) != 0 && errno != EINVAL {
            let code = errno
            close(fd)
            throw fail("fsync", code)
        }
        if close(fd) != 0 { throw fail("close", errno) }
        if rename(temporaryPath, path) != 0 { throw fail("rename", errno) }
        // The new name lasts a crash once its directory is synced too (as far as the file system
        // can: the file is in place either way, so a directory that cannot be synced is no error).
        let directory = open(URL(fileURLWithPath: path).deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            close(directory)
        }
    }
}

/// POSIX `write`, out of reach of `FileOutput.write` inside the class.
private func writeSome(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, bytes, count)
}
