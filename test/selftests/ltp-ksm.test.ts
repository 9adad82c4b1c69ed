/**
 * LTP's ksm01 (three spaces of changing contents, run=2) under every way of merging
 * (test/selftests/drivers.ts), and ksm07 (smart scan) under the ksm scanner.
 */
import { describe, expect, it } from "vitest"
import { Engine } from "../helpers/internals.ts"
import { allBytes, filled, fullScans, mapsDuplicates, PS } from "../helpers/scanner.ts"
import { DRIVERS } from "./drivers.ts"

const pages = 64
const T = 3 * pages

for (const d of DRIVERS) {
  describe(`LTP ksm01 by ${d.name} (three spaces)`, () => {
    /** A fresh engine of three spaces of the given contents, merged. */
    function ksm01(contents: [number, number, number]): Engine {
      const engine = new Engine({ maxPageSharing: T })
      for (const c of contents) filled(engine, pages, c)
      d.attach(engine, { pagesToScan: T }).start()
      return engine
    }
    const counts = (engine: Engine) => [engine.stats().pagesShared, engine.stats().pagesSharing]

    it("from scratch: c/a/a -> shared 2, sharing T-2; c/b/a -> 3, T-3; all d -> 1, T-1", () => {
      expect(counts(ksm01([0x63, 0x61, 0x61]))).toEqual([2, T - 2])
      expect(counts(ksm01([0x63, 0x62, 0x61]))).toEqual([3, T - 3])
      expect(counts(ksm01([0x64, 0x64, 0x64]))).toEqual([1, T - 1])
    })

    it("c/a/a, c/b/a, all d, all d but one e, run=2 -> the kernel's counters", () => {
      const engine = new Engine({ maxPageSharing: T })
      const spaces = [filled(engine, pages, 0x63), filled(engine, pages, 0x61), filled(engine, pages, 0x61)]
      // LTP rewrites merged pages on purpose: no back-off (tracked), no smart scan (ksm), see drivers.ts.
      const m = d.attach(engine, { pagesToScan: T, rewritesOnPurpose: true })
      const counters = () => {
        const s = engine.stats()
        return [s.pagesShared, s.pagesSharing, s[d.lonely], s.pagesVolatile]
      }
      m.start()
      expect(counters()).toEqual([2, T - 2, 0, 0])
      expect(allBytes(spaces[0]!, 0x63) && allBytes(spaces[1]!, 0x61) && allBytes(spaces[2]!, 0x61)).toBe(true)

      spaces[1]!.fill(0, spaces[1]!.size, 0x62)
      m.start()
      expect(counters()).toEqual([3, T - 3, 0, 0])
      expect(allBytes(spaces[1]!, 0x62)).toBe(true)

      for (const s of spaces) s.fill(0, s.size, 0x64)
      m.start()
      expect(counters()).toEqual([1, T - 1, 0, 0])

      spaces[1]!.writeU8(0, 0x65)
      m.start()
      // The one page with no partner: in the table for merge(), unstable for the scanners.
      expect(counters()).toEqual([1, T - 2, 1, 0])
      expect(spaces[1]!.readU8(0)).toBe(0x65)
      m.check()

      engine.unmergeAll()
      const s = engine.stats()
      expect([s.pagesShared, s.pagesSharing, s.pagesUnique, s.pagesUnshared, s.pagesVolatile, s.ksmZeroPages, s.fullScans]).toEqual([0, 0, 0, 0, 0, 0, 0])
      expect(mapsDuplicates(spaces)).toBe(false)
      expect(spaces[1]!.readU8(0)).toBe(0x65)
      expect(spaces.every((s, i) => s.read(i === 1 ? 1 : 0, s.size - (i === 1 ? 1 : 0)).every((b) => b === 0x64))).toBe(true)
      for (const sp of spaces) expect(sp.read(PS, PS).every((b) => b === 0x64)).toBe(true)
      m.check()
    })
  })
}

describe("LTP ksm07: smart scan (ksm scanner)", () => {
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
