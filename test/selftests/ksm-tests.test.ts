/**
 * tools/testing/selftests/mm/ksm_tests.c, ported: each test runs under every way of merging
 * (test/selftests/drivers.ts: merge(), the ksm scanner, the tracked scanner) with the kernel's
 * expected counters; what only one way has (merge()'s report, the scanners' passes) is checked
 * where it applies.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Engine } from "../helpers/internals.ts"
import { allBytes, filled, fullScans, mapsDuplicates, PS } from "../helpers/scanner.ts"
import { DRIVERS, expectedCounts, SCANNERS } from "./drivers.ts"

for (const d of DRIVERS) {
  describe(`ksm_tests.c by ${d.name}`, () => {
    it("-M -p 10: 10 pages of '*' give 1 shared / 9 sharing", () => {
      const engine = new Engine()
      const a = filled(engine, 10, 0x2a)
      const m = d.attach(engine, { pagesToScan: 10 })
      m.start()
      if (m.reports !== null) expect(m.reports[0]).toMatchObject({ scanned: 10, merged: 9, inserted: 1, zeroMapped: 0 })
      const s = engine.stats()
      expect([s.pagesShared, s.pagesSharing, s.pagesUnique]).toEqual([1, 9, 0])
      expect(a.ksmStat().ksmMergingPages).toBe(10)
      expect(engine.memory().framesInUse).toBe(1)
      expect(allBytes(a, 0x2a)).toBe(true)
      m.check()
    })

    it("-U: writing to both merged pages unshares them: 0 shared / 0 sharing, at once and after a pass", () => {
      const engine = new Engine()
      const a = filled(engine, 2, 0x2a)
      const m = d.attach(engine)
      m.start()
      expect(engine.stats().pagesSharing).toBe(1)
      a.writeU8(0, 0x2d)
      a.writeU8(PS, 0x2b)
      expect([engine.stats().pagesShared, engine.stats().pagesSharing]).toEqual([0, 0])
      m.pass()
      expect([engine.stats().pagesShared, engine.stats().pagesSharing]).toEqual([0, 0])
      expect([a.readU8(0), a.readU8(1), a.readU8(PS), a.readU8(PS + 1)]).toEqual([0x2d, 0x2a, 0x2b, 0x2a])
      m.check()
    })

    it("-Z -z 0: 10 zero pages without useZeroPages merge as content: 1 / 9", () => {
      const engine = new Engine({ useZeroPages: false })
      filled(engine, 10, 0)
      const m = d.attach(engine)
      m.start()
      const s = engine.stats()
      expect([s.pagesShared, s.pagesSharing, s.ksmZeroPages]).toEqual([1, 9, 0])
      m.check()
    })

    it("-Z -z 1: 10 zero pages with useZeroPages map the zero page: 0 / 0, 10 ksm zero pages", () => {
      const engine = new Engine({ useZeroPages: true })
      const a = filled(engine, 10, 0)
      const m = d.attach(engine)
      m.start()
      if (m.reports !== null) expect(m.reports[0]!.zeroMapped).toBe(10)
      const s = engine.stats()
      expect([s.pagesShared, s.pagesSharing, s.ksmZeroPages]).toEqual([0, 0, 10])
      expect(a.ksmStat().ksmZeroPages).toBe(10)
      expect(engine.memory().framesInUse).toBe(0)
      expect(allBytes(a, 0)).toBe(true)
      m.check()
    })

    it("max_page_sharing: the kernel's rule for N identical pages and M", () => {
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 2, max: 40 }), (n, mps) => {
          const engine = new Engine({ pageSize: 512, maxPageSharing: mps })
          const a = engine.createSpace({ size: n * 512 })
          a.fill(0, a.size, 7)
          a.advise(0, a.size, "mergeable")
          const m = d.attach(engine, { pagesToScan: 1000 })
          m.start()
          const s = engine.stats()
          const want = expectedCounts(n, mps)
          expect([s.pagesShared, s.pagesSharing]).toEqual([want.shared, want.sharing])
          // No frame is mapped through merging by more than M pages.
          for (const e of engine.core.table.entries()) expect(engine.core.table.mappers(e)).toBeLessThanOrEqual(mps)
          // Chains: one content with two or more stable frames.
          expect(s.stableNodeChains).toBe(want.shared >= 2 ? 1 : 0)
          expect(s.stableNodeDups).toBe(want.shared >= 2 ? want.shared : 0)
          m.check()
        }),
        { numRuns: d.lonely === "pagesUnique" ? 150 : 40 },
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
      const m = d.attach(engine)
      m.start()
      const s = engine.stats()
      expect([s.pagesShared, s.pagesSharing]).toEqual([2, 2])
      expect(a.frameAt(0)).not.toBe(b.frameAt(0))
      m.check()
    })
  })
}

for (const d of SCANNERS) {
  describe(`ksm_tests.c, what only the ${d.name} does`, () => {
    it("-M -p 10: nothing merges after one full scan; everything after the second", () => {
      const engine = new Engine()
      filled(engine, 10, 0x2a)
      const m = d.attach(engine, { pagesToScan: 10 })
      m.pass()
      expect([engine.stats().pagesShared, engine.stats().pagesSharing]).toEqual([0, 0])
      m.pass()
      expect([engine.stats().pagesShared, engine.stats().pagesSharing]).toEqual([1, 9])
    })

    it("volatile pages never merge: pages rewritten between every pass stay private", () => {
      const engine = new Engine()
      const a = filled(engine, 8, 0x41)
      const m = d.attach(engine)
      for (let round = 0; round < 6; round++) {
        m.pass()
        // Every page changes before each pass (but all stay identical to each other).
        for (let p = 0; p < 8; p++) a.writeU32(p * PS, round + 1)
      }
      const s = engine.stats()
      expect([s.pagesShared, s.pagesSharing, s.pagesUnique]).toEqual([0, 0, 0])
      expect(s.pagesVolatile).toBe(8)
      expect(s.pagesUnshared).toBe(0)
      expect(mapsDuplicates([a])).toBe(false)
      m.check()
    })

    it("pages outside MADV_MERGEABLE ranges are never touched", () => {
      const engine = new Engine()
      const a = filled(engine, 8, 0x33, false)
      a.advise(0, 4 * PS, "mergeable")
      const m = d.attach(engine)
      fullScans(m.ksmd!, 3)
      expect(engine.stats().pagesSharing).toBe(3)
      for (let p = 4; p < 8; p++) expect(a.pflags[p]! & 2).toBe(0) // PAGE_MERGED
      expect(new Set([4, 5, 6, 7].map((p) => a.frameAt(p))).size).toBe(4)
      m.check()
    })
  })
}
