/**
 * The kernel's own KSM selftests (ksm_tests.c, ksm_functional_tests.c, LTP ksm01), ported
 * to the synchronous merge() API, plus the merge core's own semantics.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { AddressSpace } from "../helpers/internals.ts"
import { Engine, type EngineOptions } from "../helpers/internals.ts"
import { checkCounters } from "../helpers/recount.ts"
import { mapsDuplicates } from "../helpers/scanner.ts"

const PS = 4096

function filled(engine: Engine, pages: number, byte: number): AddressSpace {
  const s = engine.createSpace({ size: pages * PS })
  s.fill(0, s.size, byte)
  return s
}

/** ksm_tests.c's assert_ksm_pages_count(N) rule for N identical pages and max_page_sharing M. */
function expectedCounts(n: number, m: number): { shared: number; sharing: number } {
  if (n % m === 0 || n % m === 1) {
    const shared = Math.floor(n / m)
    return { shared, sharing: shared * (m - 1) }
  }
  const shared = Math.floor(n / m) + 1
  return { shared, sharing: n - shared }
}

describe("ksm_tests.c, synchronous", () => {
  it("-M: 10 identical pages give 1 shared / 9 sharing", () => {
    const engine = new Engine()
    const a = filled(engine, 10, 0x2a)
    const r = a.merge()
    expect(r).toMatchObject({ scanned: 10, merged: 9, inserted: 1, zeroMapped: 0 })
    const s = engine.stats()
    expect([s.pagesShared, s.pagesSharing, s.pagesUnique]).toEqual([1, 9, 0])
    expect(a.ksmStat().ksmMergingPages).toBe(10)
    expect(engine.memory().framesInUse).toBe(1)
    checkCounters(engine)
  })

  it("-U: writing to both merged pages unshares them: 0 shared / 0 sharing", () => {
    const engine = new Engine()
    const a = filled(engine, 2, 0x2a)
    a.merge()
    a.writeU8(0, 0x2d)
    a.writeU8(PS, 0x2b)
    const s = engine.stats()
    expect([s.pagesShared, s.pagesSharing]).toEqual([0, 0])
    expect([a.readU8(0), a.readU8(1), a.readU8(PS), a.readU8(PS + 1)]).toEqual([0x2d, 0x2a, 0x2b, 0x2a])
    checkCounters(engine)
  })

  it("-Z -z 0: 10 zero pages without useZeroPages merge as content: 1 / 9", () => {
    const engine = new Engine({ useZeroPages: false })
    const a = filled(engine, 10, 0)
    a.merge()
    const s = engine.stats()
    expect([s.pagesShared, s.pagesSharing, s.ksmZeroPages]).toEqual([1, 9, 0])
  })

  it("-Z -z 1: 10 zero pages with useZeroPages map the zero page: 0 / 0, 10 ksm zero pages", () => {
    const engine = new Engine({ useZeroPages: true })
    const a = filled(engine, 10, 0)
    expect(a.merge().zeroMapped).toBe(10)
    const s = engine.stats()
    expect([s.pagesShared, s.pagesSharing, s.ksmZeroPages]).toEqual([0, 0, 10])
    expect(engine.memory().framesInUse).toBe(0)
    expect(a.ksmStat().ksmZeroPages).toBe(10)
  })

  it("max_page_sharing: the kernel's rule for many N and M", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 2, max: 40 }), (n, m) => {
        const engine = new Engine({ pageSize: 512, maxPageSharing: m })
        const a = engine.createSpace({ size: n * 512 })
        a.fill(0, a.size, 7)
        a.merge()
        const s = engine.stats()
        const want = expectedCounts(n, m)
        expect([s.pagesShared, s.pagesSharing]).toEqual([want.shared, want.sharing])
        // No frame is mapped through merging by more than M pages.
        for (const e of engine.core.table.entries()) expect(engine.core.table.mappers(e)).toBeLessThanOrEqual(m)
        // Chains: one content with two or more stable frames.
        expect(s.stableNodeChains).toBe(want.shared >= 2 ? 1 : 0)
        expect(s.stableNodeDups).toBe(want.shared >= 2 ? want.shared : 0)
        checkCounters(engine)
      }),
      { numRuns: 150 },
    )
  })
})

describe("ksm_functional_tests.c, synchronous", () => {
  it("test_unmerge: unmerging 2 MiB of merged pages leaves no two pages on one frame", () => {
    const engine = new Engine()
    const a = filled(engine, 512, 0xcf)
    a.merge()
    expect(a.ksmStat().ksmMergingPages).toBeGreaterThan(0)
    expect(a.unmerge()).toBe(512)
    expect(mapsDuplicates([a])).toBe(false)
    expect(a.read(0, a.size).every((b) => b === 0xcf)).toBe(true)
    checkCounters(engine)
  })

  it("test_unmerge_zero_pages: 512 zero pages, unmerge half -> 256, write the rest -> 0", () => {
    const engine = new Engine({ useZeroPages: true })
    const a = filled(engine, 512, 0)
    a.merge()
    expect(a.ksmStat().ksmZeroPages).toBe(512)
    expect(engine.stats().ksmZeroPages).toBe(512)
    a.unmerge(0, 256 * PS)
    expect(a.ksmStat().ksmZeroPages).toBe(256)
    for (let p = 256; p < 512; p++) a.writeU32(p * PS, 1)
    expect(a.ksmStat().ksmZeroPages).toBe(0)
    expect(engine.stats().ksmZeroPages).toBe(0)
    expect(mapsDuplicates([a])).toBe(false)
    checkCounters(engine)
  })

  it("test_unmerge_discarded: discard half of a merged range, unmerge the whole", () => {
    const engine = new Engine()
    const a = filled(engine, 512, 0xcf)
    a.merge()
    a.discard(0, 256 * PS)
    a.unmerge()
    expect(mapsDuplicates([a])).toBe(false)
    checkCounters(engine)
  })

  it("test_unmerge_uffd_wp: unmerge works on write-protected (uffd-wp) pages and keeps the protection", () => {
    const engine = new Engine()
    const a = filled(engine, 512, 0xcf)
    a.merge()
    a.writeProtect(0, a.size, true)
    expect(a.unmerge()).toBe(512)
    expect(mapsDuplicates([a])).toBe(false)
    checkCounters(engine)
  })

  it("test_fork_ksm_merging_page_count: a forked child's ksmMergingPages is 0", () => {
    const engine = new Engine()
    const a = filled(engine, 16, 0xcf)
    a.merge()
    const child = a.fork()
    expect(child.ksmStat().ksmMergingPages).toBe(0)
    expect(a.ksmStat().ksmMergingPages).toBe(16)
    expect([engine.stats().pagesShared, engine.stats().pagesSharing]).toEqual([1, 15])
    checkCounters(engine)
    // The child's pages are still on the shared frame; merging them joins it (max_page_sharing_bypass).
    const r = child.merge()
    expect(r.merged).toBe(16)
    expect(engine.stats().pagesSharing).toBe(31)
    checkCounters(engine)
  })

  it("test_prot_none-like: pages written through the API after merging unshare one by one", () => {
    const engine = new Engine()
    const a = filled(engine, 512, 0x11)
    a.merge()
    for (let p = 0; p < 256; p++) a.writeU32(p * PS, p)
    a.unmerge(256 * PS, 256 * PS)
    expect(mapsDuplicates([a])).toBe(false)
    checkCounters(engine)
  })
})

describe("LTP ksm01, synchronous (three spaces)", () => {
  const pages = 64
  function ksm01(opts: EngineOptions, contents: [number, number, number]): Engine {
    const engine = new Engine({ maxPageSharing: 3 * pages, ...opts })
    contents.map((c) => filled(engine, pages, c))
    for (const s of engine.spaces()) s.merge()
    return engine
  }
  const T = 3 * pages
  it("c/a/a -> shared 2, sharing T-2", () => {
    const s = ksm01({}, [0x63, 0x61, 0x61]).stats()
    expect([s.pagesShared, s.pagesSharing]).toEqual([2, T - 2])
  })
  it("c/b/a -> shared 3, sharing T-3", () => {
    const s = ksm01({}, [0x63, 0x62, 0x61]).stats()
    expect([s.pagesShared, s.pagesSharing]).toEqual([3, T - 3])
  })
  it("all d -> shared 1, sharing T-1; all d but one e -> shared 1, sharing T-2, one unique; unmergeAll -> all 0", () => {
    const engine = ksm01({}, [0x64, 0x64, 0x64])
    let s = engine.stats()
    expect([s.pagesShared, s.pagesSharing]).toEqual([1, T - 1])
    const first = engine.spaces()[0]!
    first.writeU8(0, 0x65)
    first.fill(0, PS, 0x65)
    first.merge()
    s = engine.stats()
    expect([s.pagesShared, s.pagesSharing, s.pagesUnique]).toEqual([1, T - 2, 1])
    engine.unmergeAll()
    s = engine.stats()
    expect([s.pagesShared, s.pagesSharing, s.pagesUnique, s.ksmZeroPages, s.fullScans]).toEqual([0, 0, 0, 0, 0])
    expect(mapsDuplicates(engine.spaces() as AddressSpace[])).toBe(false)
    for (const sp of engine.spaces()) expect(sp.read(PS, PS).every((b) => b === 0x64)).toBe(true)
    checkCounters(engine)
  })
})

describe("merge core semantics", () => {
  it("an injected checksum that always collides never merges different pages", () => {
    const engine = new Engine({ pageSize: 512, checksum: () => 42, maxCandidates: 1000 })
    const a = engine.createSpace({ size: 64 * 512 })
    for (let p = 0; p < 64; p++) a.fill(p * 512, 512, p % 8 === 0 ? 0xaa : p) // 8 identical, 56 distinct
    a.writeU8(63 * 512 + 511, 1) // differs only in its last byte
    const before = a.read(0, a.size)
    const r = a.merge()
    expect(r.merged).toBe(7)
    expect(r.inserted).toBe(57)
    expect(a.read(0, a.size)).toEqual(before)
    const frames = new Map<number, number>()
    for (let p = 0; p < 64; p++) frames.set(a.pte[p]!, (frames.get(a.pte[p]!) ?? 0) + 1)
    for (const [f, n] of frames) if (n > 1) expect(f).toBe(a.pte[0])
    checkCounters(engine)
  })

  it("a merged page is write-protected: a write copies it and leaves sharing; the last mapper frees the frame", () => {
    const engine = new Engine()
    const a = filled(engine, 3, 5)
    a.merge()
    const f = a.pte[0]!
    a.writeU8(0, 6)
    expect(a.pte[0]).not.toBe(f)
    expect(engine.stats().pagesSharing).toBe(1)
    a.writeU8(PS, 6)
    a.writeU8(2 * PS, 6)
    expect(engine.core.table.size).toBe(0)
    expect([engine.stats().pagesShared, engine.stats().pagesSharing]).toEqual([0, 0])
    expect(engine.memory().framesInUse).toBe(3)
    checkCounters(engine)
  })

  it("a merge-placed zero page is distinguishable from a never-touched page", () => {
    const engine = new Engine()
    const a = engine.createSpace({ size: 4 * PS })
    a.fill(0, PS, 0)
    a.merge()
    expect(a.pte[0]).toBe(0)
    expect(a.pte[1]).toBe(0)
    expect(a.ksmStat().ksmZeroPages).toBe(1)
    expect(a.unmerge()).toBe(1) // only the merge-placed one
    expect(engine.memory().framesInUse).toBe(1)
  })

  it("pinned pages are skipped and counted, never merged", () => {
    const engine = new Engine()
    const a = filled(engine, 4, 9)
    a.pin(0, PS)
    const r = a.merge()
    expect(r.skipped.pinned).toBe(1)
    expect(r.merged).toBe(2)
    expect(a.pte[0]).not.toBe(a.pte[1])
  })

  it("never-touched pages are skipped as unpopulated", () => {
    const engine = new Engine()
    const a = engine.createSpace({ size: 4 * PS })
    expect(a.merge().skipped.unpopulated).toBe(4)
  })

  it("domains: pages merge only within one domain; zero pages always may", () => {
    const engine = new Engine()
    const x = engine.createSpace({ size: 2 * PS, domain: "x" })
    const y = engine.createSpace({ size: 2 * PS, domain: "y" })
    for (const s of [x, y]) {
      s.fill(0, PS, 0x77)
      s.fill(PS, PS, 0)
      s.merge()
    }
    expect(x.pte[0]).not.toBe(y.pte[0])
    expect(engine.stats().ksmZeroPages).toBe(2)
    expect(engine.stats().pagesUnique).toBe(2)
    const z = engine.createSpace({ size: PS, domain: "x" })
    z.fill(0, PS, 0x77)
    z.merge()
    expect(z.pte[0]).toBe(x.pte[0])
    checkCounters(engine)
  })

  it("mergeAcrossDomains lets domains merge", () => {
    const engine = new Engine({ mergeAcrossDomains: true })
    const x = engine.createSpace({ size: PS, domain: "x" })
    const y = engine.createSpace({ size: PS, domain: "y" })
    x.fill(0, PS, 1)
    y.fill(0, PS, 1)
    x.merge()
    y.merge()
    expect(x.pte[0]).toBe(y.pte[0])
  })

  it("a page merged and written keeps the other mappers' contents (copy-on-write isolation)", () => {
    const engine = new Engine()
    const a = filled(engine, 2, 1)
    const b = filled(engine, 2, 1)
    a.merge()
    b.merge()
    b.writeU32(8, 0xdeadbeef)
    expect(a.readU32(8)).toBe(0x01010101)
    expect(b.readU32(8)).toBe(0xdeadbeef)
  })

  it("dispose removes every table reference the space held", () => {
    const engine = new Engine()
    const a = filled(engine, 8, 1)
    const b = filled(engine, 8, 2)
    a.merge()
    b.merge()
    a.dispose()
    expect(engine.stats().pagesSharing).toBe(7)
    b.dispose()
    expect(engine.core.table.size).toBe(0)
    const s = engine.stats()
    expect([s.pagesShared, s.pagesSharing, s.pagesUnique, s.ksmZeroPages]).toEqual([0, 0, 0, 0])
    expect(engine.memory().framesInUse).toBe(0)
  })

  it("generalProfit = (pagesSharing + ksmZeroPages) * pageSize - merge metadata bytes", () => {
    const engine = new Engine()
    const a = filled(engine, 10, 3)
    const z = filled(engine, 4, 0)
    a.merge()
    z.merge()
    const s = engine.stats()
    expect(s.generalProfit).toBe((9 + 4) * PS - engine.core.metadataBytes)
    const k = a.ksmStat()
    expect(k.ksmProcessProfit).toBe(10 * PS - k.ksmRmapItems * 16)
  })

  it("merge is idempotent: a second call reports alreadyMerged", () => {
    const engine = new Engine()
    const a = filled(engine, 4, 3)
    a.merge()
    const r = a.merge()
    expect(r.alreadyMerged).toBe(4)
    expect(r.merged + r.inserted).toBe(0)
  })
})
