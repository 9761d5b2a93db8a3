/// A hash table from byte strings (UTF-8) to integers, with lookups that take a buffer and
/// allocate nothing. Keys compare byte for byte, never by Unicode equivalence.
struct ByteStringTable: Sendable {
    private var keyBytes: [UInt8] = []
    /// Per entry: start and length in `keyBytes`, and the value.
    private var entries: [(start: Int32, length: Int32, value: Int32)] = []
    /// Open addressing: entry index + 1, 0 for empty.
    private var slots: [Int32]
    private var mask: Int

    init(capacity: Int = 16) {
        var size = 16
        while size < capacity * 2 { size *= 2 }
        slots = [Int32](repeating: 0, count: size)
        mask = size - 1
    }

    var count: Int { entries.count }

    @inline(__always)
    static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        // FNV-1a, 64-bit.
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3
        }
        return Int(truncatingIfNeeded: hash ^ (hash >> 29))
    }

    func value(_ bytes: UnsafeBufferPointer<UInt8>) -> Int32? {
        var slot = Self.hash(bytes) & mask
        return keyBytes.withUnsafeBufferPointer { stored in
            while true {
                let entryIndex = slots[slot]
                if entryIndex == 0 { return nil }
                let entry = entries[Int(entryIndex) - 1]
                if Int(entry.length) == bytes.count,
                   bytes.count == 0 || memcmp(stored.baseAddress! + Int(entry.start), bytes.baseAddress!, bytes.count) == 0 {
                    return entry.value
                }
                slot = (slot + 1) & mask
            }
        }
    }

    func value(_ text: String) -> Int32? {
        var text = text
        return text.withUTF8 { value($0) }
    }

    /// Inserts or replaces.
    mutating func set(_ bytes: UnsafeBufferPointer<UInt8>, _ value: Int32) {
        if entries.count * 2 >= slots.count { grow() }
        var slot = Self.hash(bytes) & mask
        while true {
            let entryIndex = slots[slot]
            if entryIndex == 0 { break }
            let entry = entries[Int(entryIndex) - 1]
            if Int(entry.length) == bytes.count, keyBytes[Int(entry.start)..<(Int(entry.start) + bytes.count)].elementsEqual(bytes) {
                entries[Int(entryIndex) - 1].value = value
                return
            }
            slot = (slot + 1) & mask
        }
        entries.append((Int32(keyBytes.count), Int32(bytes.count), value))
        keyBytes.append(contentsOf: bytes)
        slots[slot] = Int32(entries.count)
    }

    mutating func set(_ text: String, _ value: Int32) {
        var text = text
        text.withUTF8 { set($0, value) }
    }

    private mutating func grow() {
        let size = slots.count * 2
        slots = [Int32](repeating: 0, count: size)
        mask = size - 1
        keyBytes.withUnsafeBufferPointer { stored in
            for (index, entry) in entries.enumerated() {
                let key = UnsafeBufferPointer(rebasing: stored[Int(entry.start)..<(Int(entry.start) + Int(entry.length))])
                var slot = Self.hash(key) & mask
                while slots[slot] != 0 { slot = (slot + 1) & mask }
                slots[slot] = Int32(index + 1)
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
