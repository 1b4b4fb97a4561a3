import Testing

@testable import EcoWattServer

#if canImport(Glibc)
import Glibc
#endif

/// Issue 23: what glibc keeps after `free` goes back to the kernel.
@Suite struct MemoryTrimmerTests {
    /// 96 MiB allocated in 1 KiB blocks and freed but for one block in 64: glibc keeps the freed pages (the live blocks
    /// stop the heap from shrinking at its top) until the trim hands them back.
    @Test func memoryFreedButKeptByTheAllocatorIsHandedBackToTheKernel() throws {
        #if canImport(Glibc)
        let count = 96 * 1024
        var blocks: [UnsafeMutableRawPointer] = []
        blocks.reserveCapacity(count)
        for _ in 0..<count {
            let block = try #require(malloc(1024))
            memset(block, 1, 1024)
            blocks.append(block)
        }
        for (index, block) in blocks.enumerated() where index % 64 != 0 { free(block) }
        defer { for (index, block) in blocks.enumerated() where index % 64 == 0 { free(block) } }
        let clock = ContinuousClock()
        var released = 0
        let took = clock.measure { released = MemoryTrimmer.trim() }
        // About 94 MiB were freed; other tests allocating meanwhile may hide some of it, not half.
        #expect(released >= 48 << 20, "released \(released >> 20) MiB in \(took)")
        print("malloc_trim released \(released >> 20) MiB in \(took)")
        #endif
    }
}
