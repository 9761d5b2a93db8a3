#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A memory-mapped zip archive of stored (uncompressed) entries, as `torch.save` writes, with
/// ZIP64 for archives over 4 GiB. Every offset and size is checked against the file.
final class ZipArchive: @unchecked Sendable {
    let path: String
    let base: UnsafeRawPointer
    let size: Int
    /// Entry name → the byte range of its data.
    private(set) var entries: [String: Range<Int>] = [:]

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw TorchCheckpointError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw TorchCheckpointError.cannotOpen(file: path, reason: "not a regular file")
        }
        size = Int(info.st_size)
        guard size >= 22 else { throw TorchCheckpointError.malformedZip(file: path, reason: "\(size) bytes is too short for a zip archive") }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw TorchCheckpointError.cannotOpen(file: path, reason: "mmap failed")
        }
        base = UnsafeRawPointer(map)
        // Every stored property is set, so a throw from here on runs deinit, which unmaps.
        try readDirectory()
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }

    private func fail(_ reason: String) -> TorchCheckpointError { .malformedZip(file: path, reason: reason) }

    private func u16(_ offset: Int) throws -> Int {
        guard offset >= 0, offset <= size - 2 else { throw fail("truncated at byte \(offset)") }
        return Int(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }

    private func u32(_ offset: Int) throws -> Int {
        guard offset >= 0, offset <= size - 4 else { throw fail("truncated at byte \(offset)") }
        return Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
    }

    private func u64(_ offset: Int) throws -> Int {
        guard offset >= 0, offset <= size - 8 else { throw fail("truncated at byte \(offset)") }
        let value = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        guard value < UInt64(Int.max) else { throw fail("64-bit field out of range at byte \(offset)") }
        return Int(value)
    }

    private func readDirectory() throws {
        // End of central directory: the last 0x06054b50 within the final 64 KiB + 22 bytes.
        var eocd = -1
        var offset = size - 22
        while offset >= max(0, size - 22 - 65_535) {
            if try u32(offset) == 0x0605_4B50 { eocd = offset; break }
            offset -= 1
        }
        guard eocd >= 0 else { throw fail("no end-of-central-directory record") }
        var count = try u16(eocd + 10)
        var directorySize = try u32(eocd + 12)
        var directoryOffset = try u32(eocd + 16)
        if count == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            // ZIP64: the locator sits just before the classic record.
            let locator = eocd - 20
            guard try u32(locator) == 0x0706_4B50 else { throw fail("ZIP64 fields without a ZIP64 locator") }
            let record = try u64(locator + 8)
            guard record <= size - 56 else { throw fail("ZIP64 end-of-central-directory record at byte \(record) lies outside the file") }
            guard try u32(record) == 0x0606_4B50 else { throw fail("bad ZIP64 end-of-central-directory record") }
            count = try u64(record + 32)
            directorySize = try u64(record + 40)
            directoryOffset = try u64(record + 48)
        }
        guard directoryOffset <= size, directorySize <= size - directoryOffset else { throw fail("central directory outside the file") }
        var cursor = directoryOffset
        for _ in 0..<count {
            guard try u32(cursor) == 0x0201_4B50 else { throw fail("bad central directory entry at byte \(cursor)") }
            let method = try u16(cursor + 10)
            var compressed = try u32(cursor + 20)
            var uncompressed = try u32(cursor + 24)
            let nameLength = try u16(cursor + 28)
            let extraLength = try u16(cursor + 30)
            let commentLength = try u16(cursor + 32)
            var local = try u32(cursor + 42)
            guard cursor <= size - 46 - nameLength else { throw fail("entry name outside the file") }
            let name = String(decoding: UnsafeRawBufferPointer(start: base + cursor + 46, count: nameLength), as: UTF8.self)
            // ZIP64 extended information: the 64-bit values, in this order, for fields at their maximum.
            var extra = cursor + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = try u16(extra)
                let length = try u16(extra + 2)
                if id == 0x0001 {
                    var field = extra + 4
                    /// The next 64-bit value, within this extra field.
                    func next() throws -> Int {
                        guard field + 8 <= extra + 4 + length else { throw fail("ZIP64 extra field of '\(name)' is too short") }
                        defer { field += 8 }
                        return try u64(field)
                    }
                    if uncompressed == 0xFFFF_FFFF { uncompressed = try next() }
                    if compressed == 0xFFFF_FFFF { compressed = try next() }
                    if local == 0xFFFF_FFFF { local = try next() }
                }
                extra += 4 + length
            }
            guard method == 0 else { throw TorchCheckpointError.unsupportedCompression(file: path, entry: name, method: method) }
            guard compressed == uncompressed else { throw fail("stored entry '\(name)' has different compressed and uncompressed sizes") }
            guard try u32(local) == 0x0403_4B50 else { throw fail("bad local header for '\(name)'") }
            let start = local + 30 + (try u16(local + 26)) + (try u16(local + 28))
            guard start <= size, uncompressed <= size - start else { throw fail("data of '\(name)' runs past the end of the file") }
            entries[name] = start..<(start + uncompressed)
            cursor += 46 + nameLength + extraLength + commentLength
        }
    }

    func bytes(_ name: String) throws -> UnsafeRawBufferPointer {
        guard let range = entries[name] else { throw TorchCheckpointError.missingEntry(file: path, entry: name) }
        return UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)
    }
}
