import CKernels
import Foundation
import Testing
@testable import Tensors

/// `parallelFor` runs on CKernels' spinning pool when it is free, on Dispatch when another caller
/// holds it or more threads than cores are asked for; every way must visit each index once.
@Suite("parallelFor visits every index exactly once, on the pool and off it")
struct ParallelForTests {
    /// How often `parallelFor` visited each index of `0..<count`, each visit taking a few
    /// microseconds, so a slice still running when `parallelFor` returns would show up as a 0.
    static func visits(_ count: Int, threads: Int) -> [Int] {
        let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(count, 1))
        counts.initialize(repeating: 0)
        defer { counts.deallocate() }
        // Slices are disjoint, so plain writes suffice; a slice given twice shows up as a 2.
        Fast.parallelFor(count, threads: threads) { range in
            for index in range {
                let start = DispatchTime.now().uptimeNanoseconds
                while DispatchTime.now().uptimeNanoseconds - start < 2_000 {}
                counts[index] += 1
            }
        }
        return Array(counts.prefix(count))
    }

    @Test("counts and thread counts, below and above the number of cores",
          arguments: [0, 1, 2, 7, 8, 9, 100, 1001], [1, 2, 3, 8])
    func coverage(count: Int, threads: Int) {
        #expect(Self.visits(count, threads: threads) == Array(repeating: 1, count: count))
    }

    @Test("two threads on a machine with two or more cores run on the pool")
    func usesThePool() {
        guard Fast.defaultThreads >= 2 else { return }
        let before = Fast.pooledJobs
        // Tests running alongside may hold the pool for a while (a large product holds it for
        // milliseconds); within a few seconds some call must find it free.
        let deadline = Date().addingTimeInterval(10)
        while Fast.pooledJobs == before && Date() < deadline {
            #expect(Self.visits(16, threads: 2) == Array(repeating: 1, count: 16))
            Thread.sleep(forTimeInterval: 0.001)
        }
        #expect(Fast.pooledJobs > before)
    }

    @Test("back-to-back calls, and calls after the workers have gone to sleep")
    func sleepingWorkers() throws {
        for round in 0..<6 {
            for _ in 0..<50 { #expect(Self.visits(97, threads: 2) == Array(repeating: 1, count: 97)) }
            // Longer than the workers spin, so the next call wakes them from their condition variable.
            if round % 2 == 1 { Thread.sleep(forTimeInterval: 0.01) }
        }
    }

    @Test("a parallelFor inside another one")
    func nested() {
        let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: 10 * 50)
        counts.initialize(repeating: 0)
        defer { counts.deallocate() }
        Fast.parallelFor(10, threads: 2) { outer in
            for row in outer {
                Fast.parallelFor(50, threads: 2) { inner in
                    for column in inner { counts[row * 50 + column] += 1 }
                }
            }
        }
        #expect(Array(counts) == Array(repeating: 1, count: 500))
    }

    @Test("many callers at once: one holds the pool, the others go through Dispatch")
    func concurrentCallers() async {
        let failures = await withTaskGroup(of: Int.self) { group in
            for caller in 0..<8 {
                group.addTask {
                    var failures = 0
                    for call in 0..<100 {
                        let count = 1 + (caller * 100 + call) % 200
                        if Self.visits(count, threads: 2) != Array(repeating: 1, count: count) { failures += 1 }
                    }
                    return failures
                }
            }
            return await group.reduce(0, +)
        }
        #expect(failures == 0)
    }

    @Test("an instruction-set cap holds for its caller, the slices it hands out and the pool jobs it runs, never for other threads")
    func instructionSetCap() throws {
        let best = try #require(Fast.availableInstructionSets.last)
        // The pool's threads, then Dispatch's (more threads than cores).
        for threads in [2, Fast.defaultThreads + 1] {
            let seen = Locked<Set<Fast.InstructionSet>>([])
            let other = Locked<Fast.InstructionSet?>(nil)
            Fast.withInstructionSet(.portable) {
                // Slices long enough that every thread takes some.
                Fast.parallelFor(64, threads: threads) { _ in
                    let start = DispatchTime.now().uptimeNanoseconds
                    while DispatchTime.now().uptimeNanoseconds - start < 200_000 {}
                    seen.update { _ = $0.insert(Fast.instructionSet) }
                }
                let done = DispatchSemaphore(value: 0)
                Thread { other.update { $0 = Fast.instructionSet }; done.signal() }.start()
                done.wait()
            }
            #expect(seen.value == [.portable], "threads \(threads)")
            #expect(other.value == best, "threads \(threads)")
            #expect(Fast.instructionSet == best, "the cap is lifted on return")
        }
        // The C kernels' own pool jobs (as the fused step's heads) run under the caller's cap:
        // each participant records the level it dispatches to.
        guard Fast.defaultThreads >= 2 else { return }
        let levels = Locked<[Int32: Int32]>([:])
        let deadline = Date().addingTimeInterval(10)
        var ran = false
        while !ran && Date() < deadline {  // another test may hold the pool for a while
            ran = Fast.withInstructionSet(.portable) { ck_pool_run(2, recordLevel, Unmanaged.passUnretained(levels).toOpaque()) } != 0
            if !ran { Thread.sleep(forTimeInterval: 0.001) }
        }
        #expect(ran && levels.value == [0: 0, 1: 0], "\(levels.value)")
    }
}

/// A value shared between threads behind a lock.
private final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value

    init(_ value: Value) { stored = value }

    var value: Value { lock.withLock { stored } }

    func update(_ change: (inout Value) -> Void) { lock.withLock { change(&stored) } }
}

/// A pool job that records each participant's level by its index; the caller waits (up to
/// 10 s) for the worker to join, which it can while the job is open.
private let recordLevel: ck_job = { context, participant in
    let levels = Unmanaged<Locked<[Int32: Int32]>>.fromOpaque(context!).takeUnretainedValue()
    levels.update { $0[participant] = ck_isa() }
    guard participant == 0 else { return }
    let start = DispatchTime.now().uptimeNanoseconds
    while levels.value[1] == nil && DispatchTime.now().uptimeNanoseconds - start < 10_000_000_000 {}
}
