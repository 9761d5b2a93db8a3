import Tensors

/// The values a torch `state_dict` pickle builds. Anything else is refused.
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case tuple([PickleValue])
    case list(ListBox)
    case dict(DictBox)
    /// A global the unpickler allows: a name only, never imported or called.
    case global(String)
    case storage(StorageReference)
    case tensor(TensorReference)

    final class ListBox { var items: [PickleValue] = [] }
    final class DictBox { var items: [(key: PickleValue, value: PickleValue)] = [] }
}

struct StorageReference {
    let dtype: DType
    let key: String
    let elements: Int
}

struct TensorReference {
    let storage: StorageReference
    let offset: Int
    let shape: [Int]
    let strides: [Int]
}

/// A pickle interpreter for exactly what `torch.save(state_dict)` writes (protocol 2 to 5): a
/// dictionary of `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)` calls on
/// persistent storages. It knows a fixed list of globals, treats them as names, and calls
/// nothing; any other global or opcode is an error.
struct SafeUnpickler {
    static let storageTypes: [String: DType] = [
        "torch.FloatStorage": .float32, "torch.HalfStorage": .float16, "torch.BFloat16Storage": .bfloat16,
    ]
    static let knownUnsupportedStorages: Set<String> = [
        "torch.DoubleStorage", "torch.LongStorage", "torch.IntStorage", "torch.ShortStorage", "torch.CharStorage",
        "torch.ByteStorage", "torch.BoolStorage", "torch.ComplexFloatStorage", "torch.ComplexDoubleStorage",
    ]
    static let callables: Set<String> = ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter"]

    let data: UnsafeRawBufferPointer
    let file: String

    private func fail(_ offset: Int, _ reason: String) -> TorchCheckpointError {
        .malformedPickle(file: file, offset: offset, reason: reason)
    }

    func run() throws -> PickleValue {
        var stack: [PickleValue] = []
        var marks: [Int] = []
        var memo: [Int: PickleValue] = [:]
        var index = 0

        func read(_ count: Int) throws -> UnsafeRawBufferPointer {
            guard count >= 0, count <= data.count - index else { throw fail(index, "truncated") }
            defer { index += count }
            return UnsafeRawBufferPointer(rebasing: data[index..<(index + count)])
        }
        func integer(_ count: Int) throws -> Int {
            let bytes = try read(count)
            var value = 0
            for (shift, byte) in bytes.enumerated() { value |= Int(byte) << (8 * shift) }
            return value
        }
        func pop() throws -> PickleValue {
            guard let value = stack.popLast() else { throw fail(index, "stack underflow") }
            return value
        }
        func popMark() throws -> [PickleValue] {
            guard let mark = marks.popLast(), mark <= stack.count else { throw fail(index, "no MARK") }
            defer { stack.removeSubrange(mark...) }
            return Array(stack[mark...])
        }
        func line() throws -> String {
            guard let end = data[index...].firstIndex(of: 0x0A) else { throw fail(index, "unterminated line") }
            defer { index = end + 1 }
            return String(decoding: data[index..<end], as: UTF8.self)
        }
        func text(_ count: Int) throws -> String {
            guard let value = String(validating: try read(count), as: UTF8.self) else { throw fail(index, "invalid UTF-8") }
            return value
        }
        func global(_ name: String) throws -> PickleValue {
            guard Self.callables.contains(name) || Self.storageTypes[name] != nil || Self.knownUnsupportedStorages.contains(name) else {
                throw TorchCheckpointError.refusedGlobal(file: file, name: name)
            }
            return .global(name)
        }

        while true {
            let at = index
            let opcode = try integer(1)
            switch opcode {
            case 0x80: _ = try integer(1)  // PROTO
            case 0x95: _ = try read(8)  // FRAME
            case 0x2E:  // STOP
                return try pop()
            case 0x28: marks.append(stack.count)  // MARK
            case 0x29: stack.append(.tuple([]))  // EMPTY_TUPLE
            case 0x5D: stack.append(.list(PickleValue.ListBox()))  // EMPTY_LIST
            case 0x7D: stack.append(.dict(PickleValue.DictBox()))  // EMPTY_DICT
            case 0x4E: stack.append(.none)
            case 0x88: stack.append(.bool(true))
            case 0x89: stack.append(.bool(false))
            case 0x4B: stack.append(.int(try integer(1)))  // BININT1
            case 0x4D: stack.append(.int(try integer(2)))  // BININT2
            case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try integer(4)))))  // BININT
            case 0x8A:  // LONG1
                let count = try integer(1)
                guard count <= 8 else { throw fail(at, "integer of \(count) bytes is too large") }
                let bytes = try read(count)
                var value: Int = 0
                for (shift, byte) in bytes.enumerated() { value |= Int(byte) << (8 * shift) }
                if count > 0, count < 8, bytes[count - 1] & 0x80 != 0 { value -= 1 << (8 * count) }
                stack.append(.int(value))
            case 0x47:  // BINFLOAT, big-endian
                let bytes = try read(8)
                stack.append(.float(Double(bitPattern: bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })))
            case 0x58: stack.append(.string(try text(try integer(4))))  // BINUNICODE
            case 0x8C: stack.append(.string(try text(try integer(1))))  // SHORT_BINUNICODE
            case 0x8D: stack.append(.string(try text(try integer(8))))  // BINUNICODE8
            case 0x71: memo[try integer(1)] = stack.last  // BINPUT
            case 0x72: memo[try integer(4)] = stack.last  // LONG_BINPUT
            case 0x94: memo[memo.count] = stack.last  // MEMOIZE
            case 0x68, 0x6A:  // BINGET, LONG_BINGET
                let key = try integer(opcode == 0x68 ? 1 : 4)
                guard let value = memo[key] else { throw fail(at, "memo \(key) is empty") }
                stack.append(value)
            case 0x63:  // GLOBAL "module\nname\n"
                let module = try line()
                stack.append(try global(module + "." + (try line())))
            case 0x93:  // STACK_GLOBAL
                guard case let .string(name) = try pop(), case let .string(module) = try pop() else { throw fail(at, "STACK_GLOBAL needs two strings") }
                stack.append(try global(module + "." + name))
            case 0x74: stack.append(try tuple(try popMark(), at: at))  // TUPLE
            case 0x85: stack.append(try tuple([try pop()], at: at))  // TUPLE1
            case 0x86:  // TUPLE2
                let b = try pop()
                stack.append(try tuple([try pop(), b], at: at))
            case 0x87:  // TUPLE3
                let c = try pop()
                let b = try pop()
                stack.append(try tuple([try pop(), b, c], at: at))
            case 0x61:  // APPEND
                let value = try pop()
                guard case let .list(list) = stack.last else { throw fail(at, "APPEND to a non-list") }
                list.items.append(value)
            case 0x65:  // APPENDS
                let values = try popMark()
                guard case let .list(list) = stack.last else { throw fail(at, "APPENDS to a non-list") }
                list.items += values
            case 0x73:  // SETITEM
                let value = try pop()
                let key = try pop()
                guard case let .dict(dict) = stack.last else { throw fail(at, "SETITEM on a non-dict") }
                dict.items.append((key, value))
            case 0x75:  // SETITEMS
                let values = try popMark()
                guard values.count % 2 == 0, case let .dict(dict) = stack.last else { throw fail(at, "SETITEMS needs a dict and key-value pairs") }
                for pair in stride(from: 0, to: values.count, by: 2) { dict.items.append((values[pair], values[pair + 1])) }
            case 0x51:  // BINPERSID
                stack.append(try persistent(try pop(), at: at))
            case 0x52:  // REDUCE
                let arguments = try pop()
                let callable = try pop()
                stack.append(try reduce(callable, arguments, at: at))
            default:
                throw fail(at, "unsupported opcode 0x\(String(opcode, radix: 16))")
            }
        }
    }

    /// A state_dict nests tuples three deep; a deeper nest is refused before it can exhaust the
    /// stack when freed.
    static let maximumDepth = 16

    private func tuple(_ items: [PickleValue], at: Int) throws -> PickleValue {
        func depth(_ value: PickleValue, _ budget: Int) -> Int {
            guard budget > 0, case let .tuple(children) = value else { return 0 }
            return 1 + (children.map { depth($0, budget - 1) }.max() ?? 0)
        }
        let value = PickleValue.tuple(items)
        guard depth(value, Self.maximumDepth + 1) <= Self.maximumDepth else { throw fail(at, "tuples nested deeper than \(Self.maximumDepth)") }
        return value
    }

    /// `('storage', storage_type, key, location, numel)`.
    private func persistent(_ id: PickleValue, at: Int) throws -> PickleValue {
        guard case let .tuple(fields) = id, fields.count == 5, case .string("storage") = fields[0],
              case let .global(type) = fields[1], case let .string(key) = fields[2], case let .int(elements) = fields[4], elements >= 0
        else { throw fail(at, "persistent id is not ('storage', type, key, location, numel)") }
        guard let dtype = Self.storageTypes[type] else { throw TorchCheckpointError.unsupportedStorage(file: file, type: type) }
        return .storage(StorageReference(dtype: dtype, key: key, elements: elements))
    }

    private func reduce(_ callable: PickleValue, _ arguments: PickleValue, at: Int) throws -> PickleValue {
        guard case let .global(name) = callable, case let .tuple(args) = arguments else { throw fail(at, "REDUCE needs a global and a tuple") }
        switch name {
        case "collections.OrderedDict":
            guard args.isEmpty else { throw fail(at, "OrderedDict with arguments") }
            return .dict(PickleValue.DictBox())
        case "torch._utils._rebuild_tensor_v2":
            guard args.count >= 4, case let .storage(storage) = args[0], case let .int(offset) = args[1],
                  case let .tuple(sizeValues) = args[2], case let .tuple(strideValues) = args[3] else {
                throw fail(at, "_rebuild_tensor_v2 arguments are not (storage, offset, size, stride, …)")
            }
            let shape = try sizeValues.map { value -> Int in
                guard case let .int(n) = value, n >= 0 else { throw fail(at, "tensor size is not a tuple of non-negative integers") }
                return n
            }
            let strides = try strideValues.map { value -> Int in
                guard case let .int(n) = value else { throw fail(at, "tensor stride is not a tuple of integers") }
                return n
            }
            guard shape.count == strides.count, offset >= 0 else { throw fail(at, "tensor size and stride differ in rank") }
            return .tensor(TensorReference(storage: storage, offset: offset, shape: shape, strides: strides))
        case "torch._utils._rebuild_parameter":
            guard let tensor = args.first, case .tensor = tensor else { throw fail(at, "_rebuild_parameter of a non-tensor") }
            return tensor
        default:
            throw fail(at, "'\(name)' cannot be called")
        }
    }
}
