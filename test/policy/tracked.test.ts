/**
 * Policy "tracked": the SKSM thread's userspace scanner (uffd-wp async + PAGEMAP_SCAN),
 * with the candidate stage and the back-off of thrashing ranges.
 */
import { describe, expect, it } from "vitest"
import { Engine } from "../helpers/internals.ts"
import { PAGE_MERGED, PAGE_UFFD_REG, PAGE_UFFD_WP } from "../../src/memory/flags.ts"
import { PageCategory } from "../../src/memory/pagemap.ts"
import { checkCounters } from "../helpers/recount.ts"
import { allBytes, checkScanCounters, filled, fullScans, PS } from "../helpers/scanner.ts"

/** A space of `pages` pages, page p holding the u32 `value(p)` at offset 0 and 0x11 elsewhere. */
function pagesOf(engine: Engine, pages: number, value: (p: number) => number) {
  const s = filled(engine, pages, 0x11)
  for (let p = 0; p < pages; p++) s.writeU32(p * PS, value(p))
  return s
}

describe("tracked: unique pages never pay copy-on-write", () => {
  it("unique pages are never merged or put in the table; writing them later copies nothing", () => {
    const engine = new Engine()
    engine.pool.reuseSoleKsm = false // as the kernel: a KSM page is never reused in place
    const a = pagesOf(engine, 16, (p) => p + 1)
    const ksmd = engine.scanner({ policy: "tracked", stablePasses: 1 })
    fullScans(ksmd, 6)
    const s = engine.stats()
    expect([s.pagesShared, s.pagesSharing, s.pagesUnique]).toEqual([0, 0, 0])
    expect(engine.core.table.size).toBe(0)
    expect(s.pagesUnshared).toBe(16) // remembered as candidates, nothing more
    for (let p = 0; p < 16; p++) expect(a.pflags[p]! & PAGE_MERGED).toBe(0)
    const cow = engine.stats().cowFaults
    for (let p = 0; p < 16; p++) a.writeU32(p * PS + 8, 7)
    expect(engine.stats().cowFaults).toBe(cow)
    checkCounters(engine)
    checkScanCounters(engine, ksmd)
  })

  it("compare: merge() (SKSM's MADV_MERGE) inserts the same unique pages write-protected, and each later write copies", () => {
    const engine = new Engine()
    engine.pool.reuseSoleKsm = false
    const a = pagesOf(engine, 16, (p) => p + 1)
    a.merge()
    expect(engine.stats().pagesUnique).toBe(16)
    const cow = engine.stats().cowFaults
    for (let p = 0; p < 16; p++) a.writeU32(p * PS + 8, 7)
    expect(engine.stats().cowFaults - cow).toBe(16)
  })

  it("ksm policy: unique pages stay writable (never protected) however many passes run", () => {
    const engine = new Engine()
    const a = pagesOf(engine, 16, (p) => p + 1)
    fullScans(engine.scanner({ policy: "ksm" }), 8)
    for (let p = 0; p < 16; p++) expect(a.isWritable(p)).toBe(true)
    expect(engine.core.table.size).toBe(0)
  })
})

describe("tracked: write tracking", () => {
  it("registers and protects mergeable pages only, and reads writes back through pagemapScan", () => {
    const engine = new Engine()
    const a = pagesOf(engine, 8, (p) => p + 1)
    a.advise(4 * PS, 4 * PS, "unmergeable")
    const ksmd = engine.scanner({ policy: "tracked" })
    fullScans(ksmd, 1)
    for (let p = 0; p < 4; p++) expect(a.pflags[p]! & (PAGE_UFFD_WP | PAGE_UFFD_REG)).toBe(PAGE_UFFD_WP | PAGE_UFFD_REG)
    for (let p = 4; p < 8; p++) expect(a.pflags[p]! & (PAGE_UFFD_WP | PAGE_UFFD_REG)).toBe(0)
    a.writeU8(PS + 3, 9) // a write clears the protection (async uffd-wp): WRITTEN
    const seen = a.pagemapScan({ start: 0, end: 4 * PS, categoryMask: PageCategory.WRITTEN, returnMask: PageCategory.WRITTEN })
    expect(seen.regions).toEqual([{ start: PS, end: 2 * PS, categories: PageCategory.WRITTEN }])
    const r = ksmd.tick()
    expect(r.volatile).toBe(1) // the scanner saw exactly that write...
    expect(a.pflags[1]! & PAGE_UFFD_WP).toBe(PAGE_UFFD_WP) // ...and re-protected it in the same walk
  })

  it("pages made unmergeable stop being tracked and get their protection back", () => {
    const engine = new Engine()
    const a = pagesOf(engine, 8, (p) => p + 1)
    const ksmd = engine.scanner({ policy: "tracked" })
    fullScans(ksmd, 2)
    expect(ksmd.rmapItemsOf(a)).toBe(8)
    a.advise(0, 4 * PS, "unmergeable")
    fullScans(ksmd, 1)
    expect(ksmd.rmapItemsOf(a)).toBe(4)
    for (let p = 0; p < 4; p++) expect(a.pflags[p]! & PAGE_UFFD_WP).toBe(0)
    checkScanCounters(engine, ksmd)
  })
})

describe("tracked: invariant duplicates merge after stablePasses", () => {
  for (const stablePasses of [1, 2, 4]) {
    it(`stablePasses ${stablePasses}: merged after ${stablePasses + 1} full scans, not one earlier`, () => {
      const engine = new Engine()
      const a = filled(engine, 8, 0x2a)
      const ksmd = engine.scanner({ policy: "tracked", stablePasses })
      fullScans(ksmd, stablePasses)
      expect(engine.stats().pagesSharing).toBe(0)
      fullScans(ksmd, 1)
      expect([engine.stats().pagesShared, engine.stats().pagesSharing]).toEqual([1, 7])
      expect(allBytes(a, 0x2a)).toBe(true)
      checkCounters(engine)
      checkScanCounters(engine, ksmd)
    })
  }

  it("a write restarts the count: the written page needs stablePasses quiet passes again", () => {
    const engine = new Engine()
    const a = filled(engine, 2, 0x2a)
    const ksmd = engine.scanner({ policy: "tracked", stablePasses: 3 })
    fullScans(ksmd, 3) // quiet 2 after this
    a.writeU8(10, 0x2a) // same value: still a write
    fullScans(ksmd, 1)
    expect(engine.stats().pagesSharing).toBe(0) // page 0 was written: quiet 0
    fullScans(ksmd, 2)
    expect(engine.stats().pagesSharing).toBe(0)
    fullScans(ksmd, 1)
    expect(engine.stats().pagesSharing).toBe(1)
  })

  it("pages written before every pass never merge", () => {
    const engine = new Engine()
    const a = filled(engine, 6, 0x2a)
    const ksmd = engine.scanner({ policy: "tracked", stablePasses: 1 })
    for (let i = 0; i < 10; i++) {
      for (let p = 0; p < 6; p++) a.writeU8(p * PS, 0x2a)
      fullScans(ksmd, 1)
    }
    expect(engine.stats().pagesSharing).toBe(0)
    expect(engine.stats().pagesVolatile).toBe(6)
  })

  it("duplicates across spaces pair in the candidate index; a stable frame from merge() is hit at once", () => {
    const engine = new Engine()
    const a = filled(engine, 3, 0x5c)
    const b = filled(engine, 3, 0x5c)
    const ksmd = engine.scanner({ policy: "tracked", stablePasses: 1 })
    fullScans(ksmd, 2)
    expect(engine.stats().pagesSharing).toBe(5)
    expect(b.frameAt(2)).toBe(a.frameAt(0))
    const c = filled(engine, 2, 0x7e, false)
    c.merge() // stable frame of 0x7e
    const d = filled(engine, 2, 0x7e)
    fullScans(ksmd, 2)
    expect(d.frameAt(0)).toBe(c.frameAt(0))
    expect(engine.stats().pagesUnique).toBe(0)
    checkCounters(engine)
  })
})

describe("bounded work per page", () => {
  for (const policy of ["ksm", "tracked"] as const) {
    it(`${policy}: pages whose table keys all collide cost O(1) compares each (the candidate index uses the full checksum)`, () => {
      const engine = new Engine({ checksum: () => 0 }) // every sampled table key equal
      const n = 1500
      const a = pagesOf(engine, n, (p) => p + 1)
      let compares = 0
      const compare = engine.pool.compare.bind(engine.pool)
      engine.pool.compare = (x: number, y: number) => {
        compares++
        return compare(x, y)
      }
      const ksmd = engine.scanner({ policy, stablePasses: policy === "tracked" ? 1 : undefined, pagesToScan: 100_000 } as never)
      fullScans(ksmd, 3)
      expect(engine.stats().pagesUnshared).toBe(n)
      expect(compares).toBeLessThan(n * 3 * 40)
      expect(a.pflags[0]! & PAGE_MERGED).toBe(0)
    })
  }
})

describe("tracked: ranges that keep getting unshared back off", () => {
  /**
   * Two ranges of 4 identical pages. After every pass that leaves range 0 merged, the host
   * writes all of it (copy-on-write). Returns, per pass, whether range 0 was skipped.
   */
  function thrash(passes: number, opts: { maxBackoffPasses?: number; thrashUnshares?: number }) {
    const engine = new Engine()
    const a = filled(engine, 8, 0x2a)
    const ksmd = engine.scanner({ policy: "tracked", stablePasses: 1, rangePages: 4, pagesToScan: 1000, ...opts })
    const skipped: boolean[] = []
    for (let i = 0; i < passes; i++) {
      const r = ksmd.tick()
      expect(r.fullScan).toBe(true)
      skipped.push(r.skipped === 4)
      if ((a.pflags[0]! & PAGE_MERGED) !== 0) for (let p = 0; p < 4; p++) a.writeU8(p * PS, 0x2a)
      // Range 1 is never written: once merged it stays merged.
      if (i >= 1) for (let p = 4; p < 8; p++) expect(a.pflags[p]! & PAGE_MERGED).toBe(PAGE_MERGED)
      checkCounters(engine)
      checkScanCounters(engine, ksmd)
    }
    return { skipped, engine }
  }

  /** Lengths of the runs of skipped passes. */
  function runs(skipped: boolean[]): number[] {
    const out: number[] = []
    let n = 0
    for (const s of skipped) {
      if (s) n++
      else if (n > 0) {
        out.push(n)
        n = 0
      }
    }
    return out
  }

  it("backs off exponentially: 1, 2, 4, 8 passes", () => {
    const { skipped } = thrash(40, {})
    expect(runs(skipped).slice(0, 4)).toEqual([1, 2, 4, 8])
  })

  it("caps the back-off at maxBackoffPasses", () => {
    const { skipped } = thrash(30, { maxBackoffPasses: 3 })
    expect(runs(skipped).slice(0, 5)).toEqual([1, 2, 3, 3, 3])
  })

  it("backing off saves copy-on-write faults compared with merging every time", () => {
    const withBackoff = thrash(40, {}).engine.stats().cowFaults
    const without = thrash(40, { thrashUnshares: 0xffff }).engine.stats().cowFaults
    expect(without).toBeGreaterThan(2 * withBackoff)
  })

  it("a range that stops thrashing merges again and stays merged", () => {
    const engine = new Engine()
    const a = filled(engine, 8, 0x2a)
    const ksmd = engine.scanner({ policy: "tracked", stablePasses: 1, rangePages: 4, pagesToScan: 1000 })
    for (let i = 0; i < 12; i++) {
      ksmd.tick()
      if (i < 6 && (a.pflags[0]! & PAGE_MERGED) !== 0) for (let p = 0; p < 4; p++) a.writeU8(p * PS, 0x2a)
    }
    fullScans(ksmd, 40)
    expect(engine.stats().pagesSharing).toBe(7)
    expect(engine.stats().pagesSkipped).toBeGreaterThan(0)
  })
})
