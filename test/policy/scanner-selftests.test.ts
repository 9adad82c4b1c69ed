/**
 * The kernel's KSM selftests (ksm_tests.c, ksm_functional_tests.c) and LTP ksm01/ksm07,
 * ported to the background scanner. Each runs under both policies where it applies
 * ("tracked" with stablePasses 1, which needs ksmd's two passes too).
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Engine, type EngineOptions } from "../helpers/internals.ts"
import { checkCounters } from "../helpers/recount.ts"
import { allBytes, checkScanCounters, filled, fullScans, mapsDuplicates, POLICIES, PS } from "../helpers/scanner.ts"

/** ksm_tests.c's assert_ksm_pages_count(N) rule for N identical pages and max_page_sharing M. */
function expectedCounts(n: number, m: number): { shared: number; sharing: number } {
  if (n % m === 0 || n % m === 1) {
    const shared = Math.floor(n / m)
    return { shared, sharing: shared * (m - 1) }
  }
  const shared = Math.floor(n / m) + 1
  return { shared, sharing: n - shared }
}

for (const { name, options } of POLICIES) {
  describe(`ksm_tests.c under the ${name} scanner`, () => {
    it("-M -p 10: 10 pages of '*' give 1 shared / 9 sharing after two full scans, not before", () => {
      const engine = new Engine()
      const a = filled(engine, 10, 0x2a)
      const ksmd = engine.scanner({ ...options, pagesToScan: 10 })
      fullScans(ksmd, 1)
      expect([engine.stats().pagesShared, engine.stats().pagesSharing]).toEqual([0, 0])
      fullScans(ksmd, 1)
      const s = engine.stats()
      expect([s.pagesShared, s.pagesSharing]).toEqual([1, 9])
      expect(a.ksmStat().ksmMergingPages).toBe(10)
      expect(engine.memory().framesInUse).toBe(1)
      expect(allBytes(a, 0x2a)).toBe(true)
      expect(s.pagesUnique).toBe(0)
      checkCounters(engine)
      checkScanCounters(engine, ksmd)
    })

    it("-U: writing to both merged pages, then one full scan: 0 shared / 0 sharing", () => {
      const engine = new Engine()
      const a = filled(engine, 2, 0x2a)
      const ksmd = engine.scanner(options)
      fullScans(ksmd)
      expect(engine.stats().pagesSharing).toBe(1)
      a.writeU8(0, 0x2d)
      a.writeU8(PS, 0x2b)
      fullScans(ksmd, 1)
      const s = engine.stats()
      expect([s.pagesShared, s.pagesSharing]).toEqual([0, 0])
      expect([a.readU8(0), a.readU8(1), a.readU8(PS), a.readU8(PS + 1)]).toEqual([0x2d, 0x2a, 0x2b, 0x2a])
      checkCounters(engine)
      checkScanCounters(engine, ksmd)
    })

    it("-Z -z 0: 10 zero pages without useZeroPages merge as content: 1 / 9", () => {
      const engine = new Engine({ useZeroPages: false })
      filled(engine, 10, 0)
      fullScans(engine.scanner(options))
      const s = engine.stats()
      expect([s.pagesShared, s.pagesSharing, s.ksmZeroPages]).toEqual([1, 9, 0])
      checkCounters(engine)
    })

    it("-Z -z 1: 10 zero pages with useZeroPages map the zero page: 0 / 0, 10 ksm zero pages", () => {
      const engine = new Engine({ useZeroPages: true })
      const a = filled(engine, 10, 0)
      fullScans(engine.scanner(options))
      const s = engine.stats()
      expect([s.pagesShared, s.pagesSharing, s.ksmZeroPages]).toEqual([0, 0, 10])
      expect(a.ksmStat().ksmZeroPages).toBe(10)
      expect(engine.memory().framesInUse).toBe(0)
      expect(allBytes(a, 0)).toBe(true)
      checkCounters(engine)
    })

    it("volatile pages never merge: pages rewritten between every pass stay private", () => {
      const engine = new Engine()
      const a = filled(engine, 8, 0x41)
      const ksmd = engine.scanner(options)
      for (let round = 0; round < 6; round++) {
        fullScans(ksmd, 1)
        // Every page changes before each pass (but all stay identical to each other).
        for (let p = 0; p < 8; p++) a.writeU32(p * PS, round + 1)
      }
      const s = engine.stats()
      expect([s.pagesShared, s.pagesSharing, s.pagesUnique]).toEqual([0, 0, 0])
      expect(s.pagesVolatile).toBe(8)
      expect(s.pagesUnshared).toBe(0)
      expect(mapsDuplicates([a])).toBe(false)
      checkScanCounters(engine, ksmd)
    })

    it("pages outside MADV_MERGEABLE ranges are never touched", () => {
      const engine = new Engine()
      const a = filled(engine, 8, 0x33, false)
      a.advise(0, 4 * PS, "mergeable")
      fullScans(engine.scanner(options), 3)
      expect(engine.stats().pagesSharing).toBe(3)
      for (let p = 4; p < 8; p++) expect(a.pflags[p]! & 2).toBe(0) // PAGE_MERGED
      expect(new Set([4, 5, 6, 7].map((p) => a.pte[p])).size).toBe(4)
      checkCounters(engine)
    })

    it("max_page_sharing: the kernel's rule for N identical pages and M", () => {
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 120 }), fc.integer({ min: 2, max: 20 }), (n, m) => {
          const engine = new Engine({ pageSize: 512, maxPageSharing: m })
          const a = engine.createSpace({ size: n * 512 })
          a.fill(0, a.size, 7)
          a.advise(0, a.size, "mergeable")
          fullScans(engine.scanner({ ...options, pagesToScan: 1000 }))
          const s = engine.stats()
          const want = expectedCounts(n, m)
          expect([s.pagesShared, s.pagesSharing]).toEqual([want.shared, want.sharing])
          for (const e of engine.core.table.entries()) expect(engine.core.table.mappers(e)).toBeLessThanOrEqual(m)
          checkCounters(engine)
        }),
        { numRuns: 40 },
      )
    })

    it("-N analogue: pages of two merge domains never merge with each other", () => {
      const engine = new Engine()
      const a = engine.createSpace({ size: 2 * PS, domain: "tenant-a" })
      const b = engine.createSpace({ size: 2 * PS, domain: "tenant-b" })
      for (const s of [a, b]) {
        s.fill(0, s.size, 0x2a)
        s.advise(0, s.size, "mergeable")
      }
      fullScans(engine.scanner(options))
      const s = engine.stats()
      expect([s.pagesShared, s.pagesSharing]).toEqual([2, 2])
      expect(a.pte[0]).not.toBe(b.pte[0])
      checkCounters(engine)
    })
  })

  describe(`ksm_functional_tests.c under the ${name} scanner`, () => {
    it("test_unmerge: MADV_UNMERGEABLE on 2 MiB of merged pages leaves no two pages on one frame", () => {
      const engine = new Engine()
      const a = filled(engine, 512, 0xcf)
      fullScans(engine.scanner({ ...options, pagesToScan: 1000 }))
      expect(a.ksmStat().ksmMergingPages).toBeGreaterThan(0)
      a.advise(0, a.size, "unmergeable")
      expect(mapsDuplicates([a])).toBe(false)
      expect(allBytes(a, 0xcf)).toBe(true)
      checkCounters(engine)
    })

    it("test_unmerge_zero_pages: 512 zero pages -> 512 ksm zero pages; unmerge half -> 256; write the rest -> 0", () => {
      const engine = new Engine({ useZeroPages: true })
      const a = filled(engine, 512, 0)
      fullScans(engine.scanner({ ...options, pagesToScan: 1000 }))
      expect(a.ksmStat().ksmZeroPages).toBe(512)
      a.advise(0, 256 * PS, "unmergeable")
      expect(a.ksmStat().ksmZeroPages).toBe(256)
      for (let p = 256; p < 512; p++) a.writeU32(p * PS, 1)
      expect(a.ksmStat().ksmZeroPages).toBe(0)
      expect(engine.stats().ksmZeroPages).toBe(0)
      expect(mapsDuplicates([a])).toBe(false)
      checkCounters(engine)
    })

    it("test_unmerge_discarded: discard half of a merged range, then unmerge the whole", () => {
      const engine = new Engine()
      const a = filled(engine, 512, 0xcf)
      const ksmd = engine.scanner({ ...options, pagesToScan: 1000 })
      fullScans(ksmd)
      a.discard(0, 256 * PS)
      a.advise(0, a.size, "unmergeable")
      expect(mapsDuplicates([a])).toBe(false)
      checkCounters(engine)
      // The scanner copes with the holes and the unmergeable range on its next passes.
      fullScans(ksmd, 2)
      expect(engine.stats().pagesSharing).toBe(0)
      checkScanCounters(engine, ksmd)
    })

    it("test_prot_none analogue: write distinct values into half of the merged pages, unmerge the other half", () => {
      const engine = new Engine()
      const a = filled(engine, 512, 0x11)
      fullScans(engine.scanner({ ...options, pagesToScan: 1000 }))
      expect(a.ksmStat().ksmMergingPages).toBe(512)
      for (let p = 0; p < 256; p++) a.writeU32(p * PS, p + 1)
      a.advise(256 * PS, 256 * PS, "unmergeable")
      expect(mapsDuplicates([a])).toBe(false)
      checkCounters(engine)
    })

    it("test_prctl: setMergeAny(true) -> mergeAny true; false -> false", () => {
      const engine = new Engine()
      const a = engine.createSpace({ size: PS })
      a.setMergeAny(true)
      expect(a.mergeAny).toBe(true)
      a.setMergeAny(false)
      expect(a.mergeAny).toBe(false)
    })

    it("test_prctl_fork: mergeAny is inherited by fork and the child merges without advise", () => {
      const engine = new Engine()
      const parent = engine.createSpace({ size: 4 * PS })
      parent.setMergeAny(true)
      const child = parent.fork()
      expect(child.mergeAny).toBe(true)
      child.fill(0, child.size, 0xcf)
      fullScans(engine.scanner(options))
      expect(child.ksmStat().ksmMergingPages).toBe(4)
      expect(engine.stats().pagesSharing).toBe(3)
      parent.setMergeAny(false)
      expect(parent.mergeAny).toBe(false)
      checkCounters(engine)
    })

    it("test_prctl_unmerge: merge through mergeAny, then setMergeAny(false) unmerges everything", () => {
      const engine = new Engine()
      const a = filled(engine, 512, 0xcf, false)
      a.setMergeAny(true)
      fullScans(engine.scanner({ ...options, pagesToScan: 1000 }))
      expect(a.ksmStat().ksmMergingPages).toBe(512)
      a.setMergeAny(false)
      expect(mapsDuplicates([a])).toBe(false)
      expect(a.ksmStat().ksmMergeable).toBe(false)
      checkCounters(engine)
    })

    it("test_fork_ksm_merging_page_count: a forked child's ksmMergingPages is 0, until the scanner joins it", () => {
      const engine = new Engine()
      const a = filled(engine, 16, 0xcf)
      const ksmd = engine.scanner(options)
      fullScans(ksmd)
      const child = a.fork()
      expect(child.ksmStat().ksmMergingPages).toBe(0)
      expect(a.ksmStat().ksmMergingPages).toBe(16)
      checkCounters(engine)
      // The child's pages map the KSM frame; the scanner makes them rmap entries (max_page_sharing_bypass).
      fullScans(ksmd)
      expect(child.ksmStat().ksmMergingPages).toBe(16)
      expect(engine.stats().pagesSharing).toBe(31)
      checkCounters(engine)
    })
  })
}

describe("test_unmerge_uffd_wp (ksm policy: the tracked policy owns uffd-wp itself)", () => {
  it("MADV_UNMERGEABLE on merged, write-protected pages unmerges them and keeps the protection", () => {
    const engine = new Engine()
    const a = filled(engine, 512, 0xcf)
    fullScans(engine.scanner({ pagesToScan: 1000 }))
    a.writeProtect(0, a.size, true)
    a.advise(0, a.size, "unmergeable")
    expect(mapsDuplicates([a])).toBe(false)
    expect(a.pflags[0]! & 8).toBe(8) // PAGE_UFFD_WP stays
    checkCounters(engine)
  })
})

describe("LTP ksm01 under both scanners (three spaces, small sizes)", () => {
  const pages = 32
  const T = 3 * pages
  for (const { name, options } of POLICIES) {
    it(`${name}: c/a/a, c/b/a, all d, all d but one e, run=2 -> the kernel's counters`, () => {
      const opts: EngineOptions = { maxPageSharing: T }
      const engine = new Engine(opts)
      const spaces = [filled(engine, pages, 0x63), filled(engine, pages, 0x61), filled(engine, pages, 0x61)]
      // LTP rewrites merged pages on purpose: no back-off for the tracked scanner here.
      const ksmd = engine.scanner({ ...options, pagesToScan: T, ...(name === "tracked" ? { thrashUnshares: 0xffff } : {}) })
      const counters = () => {
        const s = engine.stats()
        return [s.pagesShared, s.pagesSharing, s.pagesUnshared, s.pagesVolatile]
      }
      fullScans(ksmd)
      expect(counters()).toEqual([2, T - 2, 0, 0])
      expect(allBytes(spaces[0]!, 0x63) && allBytes(spaces[1]!, 0x61) && allBytes(spaces[2]!, 0x61)).toBe(true)

      spaces[1]!.fill(0, spaces[1]!.size, 0x62)
      fullScans(ksmd)
      expect(counters()).toEqual([3, T - 3, 0, 0])
      expect(allBytes(spaces[1]!, 0x62)).toBe(true)

      for (const s of spaces) s.fill(0, s.size, 0x64)
      fullScans(ksmd)
      expect(counters()).toEqual([1, T - 1, 0, 0])

      spaces[1]!.writeU8(0, 0x65)
      fullScans(ksmd)
      expect(counters()).toEqual([1, T - 2, 1, 0])
      expect(spaces[1]!.readU8(0)).toBe(0x65)
      checkCounters(engine)
      checkScanCounters(engine, ksmd)

      engine.unmergeAll()
      expect(counters()).toEqual([0, 0, 0, 0])
      expect(engine.stats().fullScans).toBe(0)
      expect(mapsDuplicates(spaces)).toBe(false)
      expect(spaces[1]!.readU8(0)).toBe(0x65)
      expect(spaces.every((s, i) => s.read(i === 1 ? 1 : 0, s.size - (i === 1 ? 1 : 0)).every((b) => b === 0x64))).toBe(true)
      checkCounters(engine)
    })
  }
})

describe("LTP ksm07: smart scan", () => {
  it("skips at least half as many pages as full scans on a page that never merges", () => {
    const engine = new Engine()
    filled(engine, 1, 0x61)
    const ksmd = engine.scanner({ pagesToScan: 100, sleepMillis: 0 })
    const before = engine.stats()
    fullScans(ksmd, 200)
    const after = engine.stats()
    const dSkipped = after.pagesSkipped - before.pagesSkipped
    const dScans = after.fullScans - before.fullScans
    expect(dScans).toBe(200)
    expect(dSkipped).toBeGreaterThanOrEqual(dScans * 0.5)
  })

  it("follows the kernel's exact skip sequence: visits 0-3 scanned, 4 skipped, 5, 6-7 skipped, 8, 9-12 skipped, then 1 in 9", () => {
    const engine = new Engine()
    filled(engine, 1, 0x61)
    const ksmd = engine.scanner({})
    const seq: string[] = []
    for (let v = 0; v < 31; v++) {
      const s0 = engine.stats()
      fullScans(ksmd, 1)
      const s1 = engine.stats()
      seq.push(s1.pagesSkipped > s0.pagesSkipped ? "s" : "S")
    }
    expect(seq.join("")).toBe("SSSSsSssSssssSssssssssSssssssss")
  })

  it("smartScan false never skips", () => {
    const engine = new Engine()
    filled(engine, 1, 0x61)
    const ksmd = engine.scanner({ smartScan: false })
    fullScans(ksmd, 50)
    expect(engine.stats().pagesSkipped).toBe(0)
    expect(engine.stats().pagesScanned).toBe(50)
  })

  it("a skipped page leaves the unstable index (pagesUnshared falls, pagesVolatile rises)", () => {
    const engine = new Engine()
    filled(engine, 1, 0x61)
    const ksmd = engine.scanner({})
    fullScans(ksmd, 4) // visits 0-3 scanned: inserted in the unstable index
    expect([engine.stats().pagesUnshared, engine.stats().pagesVolatile]).toEqual([1, 0])
    fullScans(ksmd, 1) // visit 4 skipped
    expect([engine.stats().pagesUnshared, engine.stats().pagesVolatile]).toEqual([0, 1])
  })
})
