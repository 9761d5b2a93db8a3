/// A dense, row-major fp32 tensor that owns its scalars: the activations of the reference path.
///
/// Shapes are written outermost dimension first (`[b, l, d]`), as everywhere in this package.
public struct Tensor: Sendable, Equatable {
    public private(set) var shape: [Int]
    public var scalars: [Float]

    public init(shape: [Int], scalars: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(shape.reduce(1, *) == scalars.count, "shape \(shape) does not hold \(scalars.count) scalars")
        self.shape = shape
        self.scalars = scalars
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, scalars: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    public var count: Int { scalars.count }
    public var rank: Int { shape.count }

    /// The same scalars under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, scalars: scalars)
    }

    /// Row-major strides, outermost first.
    public var strides: [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var stride = 1
        for axis in shape.indices.reversed() {
            strides[axis] = stride
            stride *= shape[axis]
        }
        return strides
    }

    public subscript(_ indices: Int...) -> Float {
        get { scalars[offset(indices)] }
        set { scalars[offset(indices)] = newValue }
    }

    private func offset(_ indices: [Int]) -> Int {
        precondition(indices.count == shape.count, "index rank \(indices.count) for shape \(shape)")
        var offset = 0
        for (axis, index) in indices.enumerated() {
            precondition(index >= 0 && index < shape[axis], "index \(indices) out of range for shape \(shape)")
            offset = offset * shape[axis] + index
        }
        return offset
    }

    /// Elements `[start, start + length)` of the outermost axis.
    public func slice(outer start: Int, length: Int) -> Tensor {
        let inner = shape.dropFirst().reduce(1, *)
        return Tensor(
            shape: [length] + shape.dropFirst(),
            scalars: Array(scalars[(start * inner)..<((start + length) * inner)]))
    }

    /// Appends the elements of `other` along the outermost axis: `[m, ...]` + `[n, ...]` → `[m + n, ...]`.
    public mutating func append(outer other: Tensor) {
        precondition(Array(other.shape.dropFirst()) == Array(shape.dropFirst()), "append \(other.shape) to \(shape)")
        scalars += other.scalars
        shape[0] += other.shape[0]
    }

    /// Removes element `index` of the outermost axis: `[m, ...]` → `[m − 1, ...]`.
    public mutating func remove(outer index: Int) {
        precondition(rank > 0 && (0..<shape[0]).contains(index), "remove \(index) of \(shape)")
        let inner = shape.dropFirst().reduce(1, *)
        scalars.removeSubrange((index * inner)..<((index + 1) * inner))
        shape[0] -= 1
    }

    /// Stacks tensors of one shape along a new outermost axis.
    public static func stacked(_ tensors: [Tensor]) -> Tensor {
        precondition(!tensors.isEmpty, "nothing to stack")
        let shape = tensors[0].shape
        precondition(tensors.allSatisfy { $0.shape == shape }, "stacked tensors differ in shape")
        return Tensor(shape: [tensors.count] + shape, scalars: tensors.flatMap(\.scalars))
    }
}

extension Tensor {
    /// Splits the last axis into consecutive parts of the given sizes.
    /// `[..., Σ sizes]` → `[..., sizes[i]]` for each i.
    public func split(lastAxis sizes: [Int]) -> [Tensor] {
        let width = shape.last ?? 0
        precondition(sizes.reduce(0, +) == width, "split \(sizes) of last axis \(width)")
        let rows = count / max(width, 1)
        var start = 0
        return sizes.map { size in
            var part = [Float]()
            part.reserveCapacity(rows * size)
            for row in 0..<rows {
                part.append(contentsOf: scalars[(row * width + start)..<(row * width + start + size)])
            }
            start += size
            return Tensor(shape: Array(shape.dropLast()) + [size], scalars: part)
        }
    }

    /// Multiplies every element of position `i` (of the leading axes that `weights` covers) by
    /// `weights[i]`: `[b, l, ...]` × `[b, l]`.
    public func scalingPositions(by weights: Tensor) -> Tensor {
        precondition(Array(shape.prefix(weights.rank)) == weights.shape, "scale \(shape) by \(weights.shape)")
        let inner = count / max(weights.count, 1)
        var out = self
        for position in 0..<weights.count where weights.scalars[position] != 1 {
            for i in (position * inner)..<((position + 1) * inner) { out.scalars[i] *= weights.scalars[position] }
        }
        return out
    }

    /// Applies `transform` to every scalar.
    public func map(_ transform: (Float) -> Float) -> Tensor {
        Tensor(shape: shape, scalars: scalars.map(transform))
    }

    /// Elementwise sum of two tensors of one shape.
    public static func + (lhs: Tensor, rhs: Tensor) -> Tensor {
        precondition(lhs.shape == rhs.shape, "add \(lhs.shape) and \(rhs.shape)")
        return Tensor(shape: lhs.shape, scalars: zip(lhs.scalars, rhs.scalars).map(+))
    }
}
