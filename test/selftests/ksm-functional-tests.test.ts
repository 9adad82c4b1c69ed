/**
 * tools/testing/selftests/mm/ksm_functional_tests.c, ported: each test runs under every way of
 * merging it applies to (test/selftests/drivers.ts). MADV_UNMERGEABLE is unmerge() for merge()
 * and advise(..., "unmergeable") for the scanners; either way it must leave no two pages on
 * one frame and every byte as it was.
 */
import { describe, expect, it } from "vitest"
import { PAGE_UFFD_WP } from "../../src/memory/flags.ts"
import { Engine } from "../helpers/internals.ts"
import { allBytes, filled, mapsDuplicates, PS } from "../helpers/scanner.ts"
import { DRIVERS } from "./drivers.ts"

for (const d of DRIVERS) {
  describe(`ksm_functional_tests.c by ${d.name}`, () => {
    it("test_unmerge: unmerging 2 MiB of merged pages leaves no two pages on one frame", () => {
      const engine = new Engine()
      const a = filled(engine, 512, 0xcf)
      const m = d.attach(engine, { pagesToScan: 1000 })
      m.start()
      expect(a.ksmStat().ksmMergingPages).toBeGreaterThan(0)
      expect(m.unmerge(a)).toBe(512)
      expect(mapsDuplicates([a])).toBe(false)
      expect(allBytes(a, 0xcf)).toBe(true)
      m.check()
    })

    it("test_unmerge_zero_pages: 512 zero pages -> 512 ksm zero pages; unmerge half -> 256; write the rest -> 0", () => {
      const engine = new Engine({ useZeroPages: true })
      const a = filled(engine, 512, 0)
      const m = d.attach(engine, { pagesToScan: 1000 })
      m.start()
      expect(a.ksmStat().ksmZeroPages).toBe(512)
      expect(engine.stats().ksmZeroPages).toBe(512)
      m.unmerge(a, 0, 256 * PS)
      expect(a.ksmStat().ksmZeroPages).toBe(256)
      for (let p = 256; p < 512; p++) a.writeU32(p * PS, 1)
      expect(a.ksmStat().ksmZeroPages).toBe(0)
      expect(engine.stats().ksmZeroPages).toBe(0)
      expect(mapsDuplicates([a])).toBe(false)
      m.check()
    })

    it("test_unmerge_discarded: discard half of a merged range, then unmerge the whole", () => {
      const engine = new Engine()
      const a = filled(engine, 512, 0xcf)
      const m = d.attach(engine, { pagesToScan: 1000 })
      m.start()
      a.discard(0, 256 * PS)
      m.unmerge(a)
      expect(mapsDuplicates([a])).toBe(false)
      m.check()
      if (m.ksmd === null) return
      // The scanner copes with the holes and the unmergeable range on its next passes.
      m.start()
      expect(engine.stats().pagesSharing).toBe(0)
      m.check()
    })

    it("test_prot_none analogue: write distinct values into half of the merged pages, unmerge the other half", () => {
      const engine = new Engine()
      const a = filled(engine, 512, 0x11)
      const m = d.attach(engine, { pagesToScan: 1000 })
      m.start()
      expect(a.ksmStat().ksmMergingPages).toBe(512)
      for (let p = 0; p < 256; p++) a.writeU32(p * PS, p + 1)
      m.unmerge(a, 256 * PS, 256 * PS)
      expect(mapsDuplicates([a])).toBe(false)
      m.check()
    })

    it("test_prctl_fork: mergeAny is inherited by fork and the child merges without advise", () => {
      const engine = new Engine()
      const parent = engine.createSpace({ size: 4 * PS })
      parent.setMergeAny(true)
      const child = parent.fork()
      expect(child.mergeAny).toBe(true)
      child.fill(0, child.size, 0xcf)
      const m = d.attach(engine)
      m.start()
      expect(child.ksmStat().ksmMergingPages).toBe(4)
      expect(engine.stats().pagesSharing).toBe(3)
      parent.setMergeAny(false)
      expect(parent.mergeAny).toBe(false)
      m.check()
    })

    it("test_prctl_unmerge: merge through mergeAny, then setMergeAny(false) unmerges everything", () => {
      const engine = new Engine()
      const a = filled(engine, 512, 0xcf, false)
      a.setMergeAny(true)
      const m = d.attach(engine, { pagesToScan: 1000 })
      m.start()
      expect(a.ksmStat().ksmMergingPages).toBe(512)
      a.setMergeAny(false)
      expect(mapsDuplicates([a])).toBe(false)
      expect(a.ksmStat().ksmMergeable).toBe(false)
      m.check()
    })

    it("test_fork_ksm_merging_page_count: a forked child's ksmMergingPages is 0, until its pages are merged (max_page_sharing_bypass)", () => {
      const engine = new Engine()
      const a = filled(engine, 16, 0xcf)
      const m = d.attach(engine)
      m.start()
      const child = a.fork()
      expect(child.ksmStat().ksmMergingPages).toBe(0)
      expect(a.ksmStat().ksmMergingPages).toBe(16)
      expect([engine.stats().pagesShared, engine.stats().pagesSharing]).toEqual([1, 15])
      m.check()
      // The child's pages still map the shared frame; merging them joins it.
      m.start()
      if (m.reports !== null) expect(m.reports[1]!.merged).toBe(16)
      expect(child.ksmStat().ksmMergingPages).toBe(16)
      expect(engine.stats().pagesSharing).toBe(31)
      m.check()
    })
  })
}

for (const d of DRIVERS.filter((d) => d.userUffdWp)) {
  describe(`test_unmerge_uffd_wp by ${d.name} (the tracked policy owns uffd-wp itself)`, () => {
    it("unmerging merged, write-protected pages unmerges them and keeps the protection", () => {
      const engine = new Engine()
      const a = filled(engine, 512, 0xcf)
      const m = d.attach(engine, { pagesToScan: 1000 })
      m.start()
      a.writeProtect(0, a.size, true)
      expect(m.unmerge(a)).toBe(512)
      expect(mapsDuplicates([a])).toBe(false)
      expect(a.pflags[0]! & PAGE_UFFD_WP).toBe(PAGE_UFFD_WP)
      m.check()
    })
  })
}

describe("test_prctl", () => {
  it("setMergeAny(true) -> mergeAny true; false -> false", () => {
    const engine = new Engine()
    const a = engine.createSpace({ size: PS })
    a.setMergeAny(true)
    expect(a.mergeAny).toBe(true)
    a.setMergeAny(false)
    expect(a.mergeAny).toBe(false)
  })
})
