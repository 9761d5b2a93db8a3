import Foundation
import Tensors

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One tensor's entry in a safetensors header.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    /// The header's dtype string (`F32`, `BF16`, `I64`, …).
    public let dtype: String
    public let shape: [Int]
    /// Byte range relative to the start of the data section.
    public let dataOffsets: Range<Int>
}

/// Where a safetensors file's bytes are held once it is open.
public enum WeightResidency: String, Sendable {
    /// Mapped from the file (the default): zero-copy, and no load time when the page cache
    /// already holds the file.
    case mapped
    /// Read into the process's own memory, 2 MB-aligned with transparent huge pages requested
    /// (on Linux, where the kernel's THP setting may still refuse them), as llama.cpp's
    /// `--no-mmap` does. Loading reads the whole file; decoding can then be faster, since the
    /// page cache often holds a file in small pages that slow the matrix-vector products'
    /// streams (docs/benchmarks.md).
    case inMemory = "in-memory"
}

/// A safetensors file (https://github.com/huggingface/safetensors, "Format"), memory-mapped or
/// read into memory (`WeightResidency`).
///
/// Layout: an 8-byte little-endian header length `N`, `N` bytes of JSON header, then the data
/// section. The whole header is validated on open; tensors are then zero-copy views into the
/// file's bytes.
public final class SafeTensorsFile: @unchecked Sendable {
    public let path: String
    public let metadata: [String: String]
    /// Entries by tensor name.
    public let tensors: [String: TensorInfo]
    /// Whether the tensors view the file's map or a copy in memory.
    public let residency: WeightResidency
    /// Device, inode, size and modification time when opened: a copy is read only from the
    /// same, unchanged file.
    private let identity: [Int64]
    /// The file's bytes: the map, or the copy's first byte.
    private let base: UnsafeRawPointer
    private let fileSize: Int
    /// What deinit unmaps: the file's map, or the anonymous region holding the aligned copy.
    private let region: UnsafeMutableRawBufferPointer
    private let dataStart: Int

    /// Bytes per element of every dtype the safetensors format defines.
    static let elementSizes: [String: Int] = [
        "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
        "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
        "I32": 4, "U32": 4, "F32": 4,
        "I64": 8, "U64": 8, "F64": 8,
    ]
    static let maxHeaderLength: UInt64 = 100_000_000

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw SafeTensorsError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw SafeTensorsError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw SafeTensorsError.cannotOpen(file: path, reason: "not a regular file") }
        identity = Self.identity(info)
        let size = Int(info.st_size)
        guard size >= 8 else { throw SafeTensorsError.truncated(file: path, size: size) }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw SafeTensorsError.cannotOpen(file: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(map)
        fileSize = size
        region = UnsafeMutableRawBufferPointer(start: map, count: size)
        residency = .mapped
        do {
            let declared = base.loadUnaligned(as: UInt64.self).littleEndian
            guard declared >= 2, declared <= Self.maxHeaderLength, declared <= UInt64(size - 8) else {
                throw SafeTensorsError.headerLengthOutOfRange(file: path, declared: declared, fileSize: size)
            }
            let headerBytes = UnsafeRawBufferPointer(start: base + 8, count: Int(declared))
            dataStart = 8 + Int(declared)
            (metadata, tensors) = try Self.parseHeader(Data(headerBytes), dataSize: size - dataStart, file: path)
        } catch {
            munmap(UnsafeMutableRawPointer(mutating: base), size)
            throw error
        }
    }

    /// The same file read into memory: its validated header, and its bytes in a fresh
    /// anonymous region (see `WeightResidency.inMemory`), read with `pread` so the page cache's
    /// pages are never faulted into this process and the resident memory stays one copy.
    /// `progress` hears the bytes read so far. Throws, naming the file, if it cannot be read
    /// whole or is no longer the file that was opened.
    public func readIntoMemory(progress: (Int) -> Void = { _ in }) throws -> SafeTensorsFile {
        if residency == .inMemory { return self }
        let hugePage = 2 << 20
        // One huge page of slack, so the copy can start on a 2 MB boundary.
        let length = (fileSize + hugePage - 1) / hugePage * hugePage + hugePage
        guard let anonymous = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), anonymous != MAP_FAILED else {
            throw SafeTensorsError.cannotOpen(file: path, reason: "no memory for a \(fileSize)-byte copy: \(String(cString: strerror(errno)))")
        }
        let region = UnsafeMutableRawBufferPointer(start: anonymous, count: length)
        let start = anonymous + (hugePage - Int(bitPattern: anonymous) % hugePage) % hugePage
        #if os(Linux)
        madvise(start, length - (start - anonymous), MADV_HUGEPAGE)
        #endif
        do {
            let fd = open(path, O_RDONLY)
            guard fd >= 0 else { throw SafeTensorsError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
            defer { close(fd) }
            // The header was validated against the file as it was opened: read only that file.
            func checkUnchanged() throws {
                var info = stat()
                guard fstat(fd, &info) == 0 else {
                    throw SafeTensorsError.cannotOpen(file: path, reason: "fstat failed: \(String(cString: strerror(errno)))")
                }
                guard Self.identity(info) == identity else {
                    throw SafeTensorsError.cannotOpen(file: path, reason: "the file was replaced or changed since it was opened; open it again")
                }
            }
            try checkUnchanged()
            var done = 0
            while done < fileSize {
                let count = pread(fd, start + done, min(fileSize - done, 64 << 20), off_t(done))
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else {
                    throw count == 0
                        ? SafeTensorsError.cannotOpen(file: path, reason: "the file ended at byte \(done) of \(fileSize) while it was read into memory")
                        : SafeTensorsError.cannotOpen(file: path, reason: "read failed at byte \(done): \(String(cString: strerror(errno)))")
                }
                done += count
                progress(done)
            }
            try checkUnchanged()
        } catch {
            munmap(anonymous, length)
            throw error
        }
        return SafeTensorsFile(copyOf: self, base: UnsafeRawPointer(start), region: region)
    }

    private static func identity(_ info: stat) -> [Int64] {
        #if canImport(Darwin)
        let modified = info.st_mtimespec
        #else
        let modified = info.st_mtim
        #endif
        return [Int64(info.st_dev), Int64(info.st_ino), Int64(info.st_size), Int64(modified.tv_sec), Int64(modified.tv_nsec)]
    }

    private init(copyOf file: SafeTensorsFile, base: UnsafeRawPointer, region: UnsafeMutableRawBufferPointer) {
        (path, metadata, tensors, fileSize, dataStart, identity) = (file.path, file.metadata, file.tensors, file.fileSize, file.dataStart, file.identity)
        (self.base, self.region, residency) = (base, region, .inMemory)
    }

    deinit {
        munmap(region.baseAddress, region.count)
    }

    /// Bytes of the file.
    public var byteCount: Int { fileSize }

    /// Reads every page of a mapped file once (after asking the kernel to read ahead), so the
    /// first forward pass does not stall on page faults; `progress` hears the bytes read so far.
    /// A file read into memory has nothing left to read.
    public func prefetch(progress: (Int) -> Void) {
        guard residency == .mapped else { return progress(fileSize) }
        madvise(UnsafeMutableRawPointer(mutating: base), fileSize, MADV_WILLNEED)
        let page = 4096
        var checksum: UInt8 = 0
        var offset = 0
        while offset < fileSize {
            let end = min(fileSize, offset + (64 << 20))
            for position in stride(from: offset, to: end, by: page) { checksum &+= base.load(fromByteOffset: position, as: UInt8.self) }
            offset = end
            progress(offset)
        }
        if checksum == 1 { progress(offset) }  // keeps the reads
    }

    /// Tensor names in file order (by data offset).
    public var names: [String] {
        tensors.values.sorted { $0.dataOffsets.lowerBound < $1.dataOffsets.lowerBound }.map(\.name)
    }

    /// A zero-copy view of a floating-point tensor.
    public func view(_ name: String) throws -> WeightView {
        guard let info = tensors[name] else { throw SafeTensorsError.missingTensor(name: name, file: path) }
        guard let dtype = DType(rawValue: info.dtype) else {
            throw SafeTensorsError.unsupportedDType(file: path, tensor: name, dtype: info.dtype)
        }
        let bytes = UnsafeRawBufferPointer(start: base + dataStart + info.dataOffsets.lowerBound, count: info.dataOffsets.count)
        return WeightView(dtype: dtype, shape: info.shape, bytes: bytes, owner: self)
    }

    /// One value of the header object: a tensor entry, or the `__metadata__` string map.
    private enum HeaderValue: Decodable {
        case tensor(dtype: String, shape: [Int], dataOffsets: [Int])
        case metadata([String: String])

        private enum Keys: String, CodingKey { case dtype, shape, data_offsets }

        init(from decoder: any Decoder) throws {
            if decoder.codingPath.last?.stringValue == "__metadata__" {
                self = .metadata(try [String: String](from: decoder))
                return
            }
            let entry = try decoder.container(keyedBy: Keys.self)
            // Numbers are read as Double and checked here: Foundation's own integer check reports
            // no position on Linux.
            func integers(_ key: Keys) throws -> [Int] {
                try entry.decode([Double].self, forKey: key).map { value in
                    guard let integer = Int(exactly: value) else {
                        throw DecodingError.dataCorruptedError(
                            forKey: key, in: entry, debugDescription: "expected integers, got \(value)")
                    }
                    return integer
                }
            }
            self = .tensor(
                dtype: try entry.decode(String.self, forKey: .dtype),
                shape: try integers(.shape),
                dataOffsets: try integers(.data_offsets))
        }
    }

    static func parseHeader(_ header: Data, dataSize: Int, file: String) throws -> ([String: String], [String: TensorInfo]) {
        guard let json = try? JSONSerialization.jsonObject(with: header) else {
            throw SafeTensorsError.malformedHeader(file: file, reason: "not valid JSON")
        }
        guard json is [String: Any] else {
            throw SafeTensorsError.malformedHeader(file: file, reason: "not a JSON object")
        }
        let object: [String: HeaderValue]
        do {
            object = try JSONDecoder().decode([String: HeaderValue].self, from: header)
        } catch let error as DecodingError {
            throw SafeTensorsError.malformedHeader(file: file, reason: describe(error))
        }
        var metadata: [String: String] = [:]
        var tensors: [String: TensorInfo] = [:]
        for (name, value) in object {
            guard case let .tensor(dtype, shape, offsets) = value else {
                if case let .metadata(map) = value { metadata = map }
                continue
            }
            guard shape.allSatisfy({ $0 >= 0 }) else {
                throw SafeTensorsError.malformedHeader(file: file, reason: "tensor '\(name)' has a negative dimension in \(shape)")
            }
            guard offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1] else {
                throw SafeTensorsError.malformedHeader(file: file, reason: "tensor '\(name)' data_offsets \(offsets) must be [begin, end] with 0 ≤ begin ≤ end")
            }
            guard let elementSize = elementSizes[dtype] else {
                throw SafeTensorsError.unknownDType(file: file, tensor: name, dtype: dtype)
            }
            var expected: Int? = elementSize
            for dimension in shape {
                let (product, overflow) = expected?.multipliedReportingOverflow(by: dimension) ?? (0, true)
                expected = overflow ? nil : product
            }
            guard let expected, expected == offsets[1] - offsets[0] else {
                throw SafeTensorsError.byteCountMismatch(
                    file: file, tensor: name, shape: shape, dtype: dtype, expected: expected ?? Int.max, actual: offsets[1] - offsets[0])
            }
            guard offsets[1] <= dataSize else {
                throw SafeTensorsError.dataOutOfBounds(file: file, tensor: name, begin: offsets[0], end: offsets[1], dataSize: dataSize)
            }
            tensors[name] = TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: offsets[0]..<offsets[1])
        }
        let ordered = tensors.values.filter { !$0.dataOffsets.isEmpty }.sorted { $0.dataOffsets.lowerBound < $1.dataOffsets.lowerBound }
        for (previous, next) in zip(ordered, ordered.dropFirst()) where next.dataOffsets.lowerBound < previous.dataOffsets.upperBound {
            throw SafeTensorsError.overlappingData(file: file, tensor: next.name, other: previous.name)
        }
        // As the safetensors library: the tensors cover the data section exactly, no gaps.
        var covered = 0
        for info in ordered {
            guard info.dataOffsets.lowerBound == covered else {
                throw SafeTensorsError.malformedHeader(file: file, reason: "bytes [\(covered), \(info.dataOffsets.lowerBound)) of the data section belong to no tensor")
            }
            covered = info.dataOffsets.upperBound
        }
        guard covered == dataSize else {
            throw SafeTensorsError.malformedHeader(file: file, reason: "\(dataSize - covered) bytes after the last tensor belong to no tensor")
        }
        return (metadata, tensors)
    }

    /// A decoding error as "where: what", e.g. `tensor 'w': shape: expected [Int]`.
    private static func describe(_ error: DecodingError) -> String {
        let (path, what): ([any CodingKey], String) = switch error {
        case let .typeMismatch(type, context): (context.codingPath, "expected \(type)")
        case let .valueNotFound(type, context): (context.codingPath, "missing \(type)")
        case let .keyNotFound(key, context): (context.codingPath + [key], "missing")
        case let .dataCorrupted(context): (context.codingPath, context.debugDescription)
        @unknown default: ([], "\(error)")
        }
        guard let tensor = path.first?.stringValue else { return what }
        let field = path.dropFirst().map(\.stringValue).joined(separator: ".")
        return "'\(tensor)'\(field.isEmpty ? "" : " \(field)"): \(what)"
    }
}
