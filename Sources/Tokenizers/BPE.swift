/// tokenizer.json `"model"` of type `"BPE"`: byte-pair encoding with merges ranked by order.
///
/// Tie-break rule (tokenizers `models/bpe/word.rs`, `merge_all`): repeatedly merge the adjacent
/// pair with the lowest merge rank, the leftmost one among equals.
final class BPEModel: @unchecked Sendable {
    /// Token text → id.
    let vocabulary: ByteStringTable
    /// id → token text.
    let tokens: [String?]
    /// (left id, right id) → (rank, merged id).
    private let merges: PairTable
    let unknownToken: String?
    let unknownID: Int32?
    let fuseUnknown: Bool
    let byteFallback: Bool
    let continuingSubwordPrefix: String?
    let endOfWordSuffix: String?
    let ignoreMerges: Bool
    /// `<0xAB>` ids for byte fallback.
    private let byteIDs: [Int32?]
    /// Word cache: word bytes → index into `cachedIDs`.
    private var cache = ByteStringTable(capacity: 4096)
    private var cachedIDs: [[Int32]] = []
    private let cacheLimit = 100_000
    private let lock = Lock()

    init(_ reader: JSONReader) throws {
        if let dropout = reader.optional("dropout"), !dropout.isNull, try dropout.double() != 0 {
            throw TokenizerError.invalidField(file: reader.file, path: dropout.path, reason: "BPE dropout is not supported (tokenization would be random)")
        }
        let vocabularyFields = try reader.required("vocab").fields()
        var vocabulary = ByteStringTable(capacity: vocabularyFields.count)
        var maximumID = -1
        for (token, value) in vocabularyFields {
            let id = try JSONReader(value, file: reader.file, path: "\(reader.path).vocab[\(token.debugDescription)]").int()
            // Ids may leave holes, but not so many that the id table outgrows the file.
            guard id >= 0, id < 4 * vocabularyFields.count + 1_000_000 else {
                throw TokenizerError.invalidField(file: reader.file, path: "\(reader.path).vocab[\(token.debugDescription)]", reason: "id \(id) out of range")
            }
            vocabulary.set(token, Int32(id))
            maximumID = max(maximumID, id)
        }
        var tokens = [String?](repeating: nil, count: maximumID + 1)
        for (token, value) in vocabularyFields {
            if case let .number(id) = value { tokens[Int(id)] = token }
        }
        self.vocabulary = vocabulary
        self.tokens = tokens

        continuingSubwordPrefix = try reader.string("continuing_subword_prefix").flatMap { $0.isEmpty ? nil : $0 }
        endOfWordSuffix = try reader.string("end_of_word_suffix").flatMap { $0.isEmpty ? nil : $0 }
        let prefixLength = continuingSubwordPrefix?.utf8.count ?? 0
        let mergeList = try reader.optional("merges")?.array() ?? []
        var merges = PairTable(capacity: mergeList.count)
        for (rank, entry) in mergeList.enumerated() {
            let pair: (String, String)
            if case let .string(text) = entry.value {
                let parts = text.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw entry.invalid("a merge must be two tokens separated by a space") }
                pair = (String(parts[0]), String(parts[1]))
            } else {
                let parts = try entry.array()
                guard parts.count == 2 else { throw entry.invalid("a merge must be a pair of tokens") }
                pair = (try parts[0].string(), try parts[1].string())
            }
            guard let left = vocabulary.value(pair.0), let right = vocabulary.value(pair.1) else {
                throw entry.invalid("merge of tokens missing from the vocabulary: \(pair.0.debugDescription) \(pair.1.debugDescription)")
            }
            let merged = pair.0 + String(decoding: Array(pair.1.utf8).dropFirst(prefixLength), as: UTF8.self)
            guard let id = vocabulary.value(merged) else {
                throw entry.invalid("merged token \(merged.debugDescription) is missing from the vocabulary")
            }
            // A repeated merge takes its last rank, as tokenizers' map of merges does.
            merges.insert(left, right, rank: Int32(rank), id: id)
        }
        self.merges = merges

        unknownToken = try reader.string("unk_token")
        unknownID = unknownToken.flatMap { vocabulary.value($0) }
        if let unknownToken, unknownID == nil {
            throw TokenizerError.invalidField(file: reader.file, path: reader.path + ".unk_token", reason: "\(unknownToken.debugDescription) is not in the vocabulary")
        }
        fuseUnknown = try reader.bool("fuse_unk", default: false)
        byteFallback = try reader.bool("byte_fallback", default: false)
        ignoreMerges = try reader.bool("ignore_merges", default: false)
        byteIDs = (0..<256).map { vocabulary.value(String(format: "<0x%02X>", $0)) }
    }

    var vocabularySize: Int { tokens.count }

    /// The ids of one pre-tokenized word.
    func tokenize(_ word: String) throws -> [Int32] {
        var word = word
        return try word.withUTF8 { bytes -> [Int32] in
            if ignoreMerges, let id = vocabulary.value(bytes) { return [id] }
            if let hit = lock.withLock({ cache.value(bytes).map { cachedIDs[Int($0)] } }) { return hit }
            let ids = try merge(bytes)
            lock.withLock {
                if cachedIDs.count < cacheLimit, bytes.count < 256 {
                    cache.set(bytes, Int32(cachedIDs.count))
                    cachedIDs.append(ids)
                }
            }
            return ids
        }
    }

    /// `merge_word`: characters to ids (with prefix/suffix, byte fallback or unknown), then merges.
    private func merge(_ bytes: UnsafeBufferPointer<UInt8>) throws -> [Int32] {
        var symbols: [Int32] = []
        symbols.reserveCapacity(bytes.count)
        var pendingUnknown = false
        var index = 0
        var scratch: [UInt8] = []
        while index < bytes.count {
            let length = Self.scalarLength(bytes[index])
            let end = min(index + length, bytes.count)
            let isFirst = index == 0
            let isLast = end == bytes.count
            scratch.removeAll(keepingCapacity: true)
            if !isFirst, let prefix = continuingSubwordPrefix { scratch += prefix.utf8 }
            scratch += bytes[index..<end]
            if isLast, let suffix = endOfWordSuffix { scratch += suffix.utf8 }
            let id = scratch.withUnsafeBufferPointer { vocabulary.value($0) }
            if let id {
                if pendingUnknown, let unknownID { symbols.append(unknownID); pendingUnknown = false }
                symbols.append(id)
            } else if byteFallback, scratch.allSatisfy({ byteIDs[Int($0)] != nil }) {
                symbols += scratch.map { byteIDs[Int($0)]! }
            } else if let unknownID {
                if pendingUnknown && !fuseUnknown { symbols.append(unknownID) }
                pendingUnknown = true
            } else {
                throw TokenizerError.unrepresentable(text: String(decoding: bytes[index..<end], as: UTF8.self))
            }
            index = end
        }
        if pendingUnknown, let unknownID { symbols.append(unknownID) }

        return applyMerges(symbols)
    }

    /// `Word::merge_all`: a min-heap of candidate merges by (rank, position), so long words
    /// (a whole unsplit text) cost O(n log n). Symbols keep their original positions; a popped
    /// candidate whose pair has changed since it was pushed is skipped.
    private func applyMerges(_ initial: [Int32]) -> [Int32] {
        let count = initial.count
        guard count > 1 else { return initial }
        var symbols = initial
        var previous = (0..<count).map { $0 - 1 }
        var next = (0..<count).map { $0 + 1 < count ? $0 + 1 : -1 }
        var alive = [Bool](repeating: true, count: count)
        var heap = MergeHeap()
        func candidate(_ position: Int) {
            let right = next[position]
            guard right >= 0 else { return }
            if let merge = merges[symbols[position], symbols[right]] { heap.push((merge.rank, Int32(position), merge.id)) }
        }
        for position in 0..<(count - 1) { candidate(position) }
        while let top = heap.pop() {
            let position = Int(top.position)
            guard alive[position], next[position] >= 0 else { continue }
            let right = next[position]
            guard let merge = merges[symbols[position], symbols[right]], merge.id == top.id else { continue }
            symbols[position] = top.id
            alive[right] = false
            next[position] = next[right]
            if next[right] >= 0 { previous[next[right]] = position }
            if previous[position] >= 0 { candidate(previous[position]) }
            candidate(position)
        }
        return (0..<count).compactMap { alive[$0] ? symbols[$0] : nil }
    }


    @inline(__always)
    static func scalarLength(_ lead: UInt8) -> Int {
        switch lead {
        case 0..<0x80: 1
        case 0xC0..<0xE0: 2
        case 0xE0..<0xF0: 3
        default: 4
        }
    }
}

/// Open addressing from a pair of token ids to its merge: cheaper than `Dictionary`'s SipHash
/// on the hottest lookup of encoding.
struct PairTable: Sendable {
    private var keys: [UInt64]
    private var values: [(rank: Int32, id: Int32)]
    private let mask: Int
    private static let empty = UInt64.max

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size *= 2 }
        keys = [UInt64](repeating: Self.empty, count: size)
        values = [(rank: Int32, id: Int32)](repeating: (0, 0), count: size)
        mask = size - 1
    }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    subscript(left: Int32, right: Int32) -> (rank: Int32, id: Int32)? {
        let key = UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
        var index = slot(key)
        while true {
            let stored = keys[index]
            if stored == key { return values[index] }
            if stored == Self.empty { return nil }
            index = (index + 1) & mask
        }
    }

    /// Inserts or replaces a pair (capacity is fixed at the merge count).
    mutating func insert(_ left: Int32, _ right: Int32, rank: Int32, id: Int32) {
        let key = UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
        var index = slot(key)
        while keys[index] != Self.empty && keys[index] != key { index = (index + 1) & mask }
        keys[index] = key
        values[index] = (rank, id)
    }
}

/// A binary min-heap of merge candidates ordered by (rank, position).
struct MergeHeap {
    private var items: [(rank: Int32, position: Int32, id: Int32)] = []

    private static func less(_ a: (rank: Int32, position: Int32, id: Int32), _ b: (rank: Int32, position: Int32, id: Int32)) -> Bool {
        a.rank != b.rank ? a.rank < b.rank : a.position < b.position
    }

    mutating func push(_ item: (rank: Int32, position: Int32, id: Int32)) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.less(items[child], items[parent]) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> (rank: Int32, position: Int32, id: Int32)? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < items.count, Self.less(items[left], items[smallest]) { smallest = left }
                if right < items.count, Self.less(items[right], items[smallest]) { smallest = right }
                guard smallest != parent else { break }
                items.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first
    }
}

import Foundation

/// A mutex for the word cache (tokenizers are shared across threads).
final class Lock: @unchecked Sendable {
    private let lock = NSLock()
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}
