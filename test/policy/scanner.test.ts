/**
 * The scanner base (src/policy/scanner.ts) as a ksmd: batches and passes, the start/stop loop,
 * one scanner per engine, lifetimes of spaces between batches, run=2, and the one merge core
 * it shares with merge().
 */
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { describe, expect, it } from "vitest"
import { ScannerDetached } from "../../src/errors.ts"
import type { AddressSpace } from "../helpers/internals.ts"
import { Engine } from "../helpers/internals.ts"
import { checkCounters } from "../helpers/recount.ts"
import { allBytes, checkScanCounters, filled, fullScans, POLICIES, PS } from "../helpers/scanner.ts"

describe("batches and passes", () => {
  it("a batch stops at the end of a pass; with the budget spent on the last page the pass ends in the next batch", () => {
    const engine = new Engine()
    filled(engine, 10, 0x2a)
    const ksmd = engine.scanner({ pagesToScan: 10 })
    let r = ksmd.tick()
    expect([r.scanned, r.fullScan]).toEqual([10, false])
    r = ksmd.tick()
    expect([r.scanned, r.fullScan, r.fullScans]).toEqual([0, true, 1])
    ksmd.set({ pagesToScan: 4 })
    const sizes: number[] = []
    for (let i = 0; i < 4; i++) sizes.push(ksmd.tick().scanned)
    expect(sizes).toEqual([4, 4, 2, 4]) // the third batch ends the pass early
    expect(ksmd.scanCounters().fullScans).toBe(2)
  })

  it("pagesToScan 0 does nothing; an engine without spaces never completes a pass", () => {
    const engine = new Engine()
    const ksmd = engine.scanner()
    for (let i = 0; i < 3; i++) expect(ksmd.tick().fullScan).toBe(false)
    expect(engine.stats().fullScans).toBe(0)
    filled(engine, 4, 1)
    ksmd.set({ pagesToScan: 0 })
    expect(ksmd.tick().scanned).toBe(0)
    expect(engine.stats().pagesScanned).toBe(0)
  })

  it("a space created mid-pass joins behind the cursor: scanned last in the cycle", () => {
    const engine = new Engine()
    const distinct = (seed: number) => {
      const s = filled(engine, 4, 0)
      for (let p = 0; p < 4; p++) s.writeU32(p * PS, seed * 16 + p + 1)
      return s
    }
    const a = distinct(1)
    const b = distinct(2)
    const ksmd = engine.scanner({ pagesToScan: 6, smartScan: false })
    ksmd.tick() // a (4) + b (2): cursor inside b
    const c = distinct(3)
    // Rest of b, pass ends; next pass: a, then c (inserted before b), then b.
    expect(ksmd.tick().scanned).toBe(2)
    expect(ksmd.tick().fullScan).toBe(false)
    expect(engine.stats().pagesScanned).toBe(6 + 2 + 6) // a (4) + c's first 2
    expect(ksmd.rmapItemsOf(c)).toBe(2)
    expect(ksmd.rmapItemsOf(b)).toBe(4)
    expect([a, b].every((s) => ksmd.rmapItemsOf(s) === 4)).toBe(true)
  })
})

describe("start / stop", () => {
  it("the loop runs batches in the background and stop() ends it", async () => {
    const engine = new Engine()
    const a = filled(engine, 20, 0x2a)
    const ksmd = engine.scanner({ pagesToScan: 100, sleepMillis: 1 })
    ksmd.start()
    ksmd.start() // idempotent
    expect(ksmd.running).toBe(true)
    const deadline = Date.now() + 10_000
    while (engine.stats().pagesSharing < 19 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
    await ksmd.stop()
    expect(ksmd.running).toBe(false)
    expect(engine.stats().pagesSharing).toBe(19)
    const scans = engine.stats().fullScans
    await new Promise((r) => setTimeout(r, 30))
    expect(engine.stats().fullScans).toBe(scans)
    expect(allBytes(a, 0x2a)).toBe(true)
  })

  it("a new sleepMillis wakes the loop at once", async () => {
    const engine = new Engine()
    filled(engine, 4, 1)
    const ksmd = engine.scanner({ sleepMillis: 60_000 })
    ksmd.start()
    await new Promise((r) => setTimeout(r, 20))
    const n = engine.stats().fullScans
    expect(n).toBe(1) // one batch, then a minute's sleep
    ksmd.set({ sleepMillis: 1 })
    const deadline = Date.now() + 10_000
    while (engine.stats().fullScans < n + 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
    await ksmd.stop()
    expect(engine.stats().fullScans).toBeGreaterThanOrEqual(n + 3)
  })
})

describe("one scanner per engine", () => {
  it("engine.scanner() again detaches the previous one: ScannerDetached, loop stopped, state dropped", async () => {
    const engine = new Engine()
    filled(engine, 8, 0x2a)
    const first = engine.scanner({ sleepMillis: 1 })
    fullScans(first, 1)
    first.start()
    const second = engine.scanner({ policy: "tracked" }) // stablePasses 2: merges in its third pass
    expect(first.detached).toBe(true)
    expect(first.running).toBe(false)
    expect(() => first.tick()).toThrow(ScannerDetached)
    expect(() => first.start()).toThrow(ScannerDetached)
    expect(() => first.set({ pagesToScan: 1 })).toThrow(ScannerDetached)
    await first.stop()
    expect(engine.core.scan).toBe(second)
    expect(engine.stats().fullScans).toBe(0) // the new scanner's counters
    expect(first.scanCounters().rmapItems).toBe(0)
    fullScans(second, 2)
    expect(engine.stats().pagesSharing).toBe(0)
    fullScans(second, 1)
    expect(engine.stats().pagesSharing).toBe(7)
  })

  it("merges of one scanner are stable hits for the next, and merge() and the scanner share one table", () => {
    const engine = new Engine()
    const a = filled(engine, 4, 0x77)
    a.merge() // synchronous: 1 shared, 3 sharing
    const b = filled(engine, 4, 0x77)
    const ksmd = engine.scanner()
    fullScans(ksmd)
    expect(engine.stats().pagesSharing).toBe(7)
    expect(b.frameAt(0)).toBe(a.frameAt(0))
    // And the other way round: merge() finds the scanner's stable frame.
    const c = filled(engine, 4, 0x99, true)
    const d = filled(engine, 4, 0x99, false)
    fullScans(ksmd)
    expect(d.merge().merged).toBe(4)
    expect(d.frameAt(0)).toBe(c.frameAt(0))
    expect(engine.stats().pagesUnique).toBe(0)
    checkCounters(engine)
    checkScanCounters(engine, ksmd)
  })

  it("merge() on pages the scanner tracks releases their items (no double count in ksmStat)", () => {
    for (const { options } of POLICIES) {
      const engine = new Engine()
      const a = filled(engine, 8, 0x31)
      for (let p = 0; p < 8; p++) a.writeU8(p * PS, p) // all distinct
      const ksmd = engine.scanner(options)
      fullScans(ksmd, 3)
      expect(ksmd.rmapItemsOf(a)).toBe(8)
      a.merge()
      expect(a.ksmStat().ksmRmapItems).toBe(8)
      expect(ksmd.rmapItemsOf(a)).toBe(0)
      checkScanCounters(engine, ksmd)
      fullScans(ksmd, 2)
      checkCounters(engine)
      checkScanCounters(engine, ksmd)
    }
  })
})

describe("spaces disposed, discarded or unmerged between batches (seed 001)", () => {
  for (const { name, options } of POLICIES) {
    it(`${name}: dispose between ticks drops the space's items at once and the next batch carries on`, () => {
      const engine = new Engine()
      const a = filled(engine, 8, 0x2a)
      const b = filled(engine, 8, 0x2a)
      const c = filled(engine, 8, 0x2a)
      const ksmd = engine.scanner({ ...options, pagesToScan: 10 })
      ksmd.tick() // a (8) + b (2): cursor inside b
      expect(ksmd.scanCounters().rmapItems).toBeGreaterThan(0)
      b.dispose() // the space under the cursor
      expect(ksmd.rmapItemsOf(b)).toBe(0)
      checkScanCounters(engine, ksmd)
      fullScans(ksmd, 3)
      expect(engine.stats().pagesSharing).toBe(15)
      a.dispose()
      fullScans(ksmd, 1)
      expect(engine.stats().pagesSharing).toBe(7)
      expect(allBytes(c, 0x2a)).toBe(true)
      checkCounters(engine)
      checkScanCounters(engine, ksmd)
    })

    it(`${name}: pages discarded, unmerged or made unmergeable between ticks are handled`, () => {
      const engine = new Engine()
      const a = filled(engine, 16, 0x44)
      const b = filled(engine, 16, 0x44)
      const ksmd = engine.scanner({ ...options, pagesToScan: 7 })
      for (let i = 0; i < 9; i++) {
        ksmd.tick()
        if (i === 2) a.discard(0, 4 * PS)
        if (i === 4) b.unmerge()
        if (i === 5) b.advise(8 * PS, 8 * PS, "unmergeable")
        if (i === 6) a.fill(4 * PS, 2 * PS, 0x45)
        checkCounters(engine)
        checkScanCounters(engine, ksmd)
      }
      fullScans(ksmd, 3)
      checkCounters(engine)
      checkScanCounters(engine, ksmd)
      expect(a.read(0, 4 * PS).every((x) => x === 0)).toBe(true)
      expect(a.read(4 * PS, 2 * PS).every((x) => x === 0x45)).toBe(true)
      expect(allBytes(b, 0x44)).toBe(true)
      // The unmergeable half of b never shares a frame again.
      for (let p = 8; p < 16; p++) expect(engine.pool.refcount[b.frameAt(p)]).toBe(1)
      expect(engine.stats().pagesSharing).toBeGreaterThan(0)
    })
  }

  it("never keeps a disposed space alive", async () => {
    v8.setFlagsFromString("--expose-gc")
    const gc = vm.runInNewContext("gc") as () => void
    const engine = new Engine()
    const keep = filled(engine, 4, 0x2a)
    const ksmd = engine.scanner({ pagesToScan: 6 })
    // In a plain function, so no suspended async frame holds the space.
    const makeAndDispose = (): WeakRef<AddressSpace> => {
      const doomed = filled(engine, 64, 0x2a)
      ksmd.tick()
      ksmd.tick()
      doomed.dispose()
      return new WeakRef(doomed)
    }
    const ref = makeAndDispose()
    for (let i = 0; i < 10 && ref.deref() !== undefined; i++) {
      await new Promise((r) => setTimeout(r, 0))
      gc()
    }
    expect(ref.deref()).toBeUndefined()
    fullScans(ksmd, 2)
    expect(allBytes(keep, 0x2a)).toBe(true)
  })
})

describe("run=2 (engine.unmergeAll)", () => {
  it("drops every rmap item and resets full_scans; scanning starts over", () => {
    const engine = new Engine()
    const a = filled(engine, 8, 0x2a)
    const ksmd = engine.scanner()
    fullScans(ksmd, 3)
    engine.unmergeAll()
    const s = engine.stats()
    expect([s.fullScans, s.pagesShared, s.pagesSharing, s.pagesUnshared, s.pagesVolatile]).toEqual([0, 0, 0, 0, 0])
    expect(ksmd.rmapItemsOf(a)).toBe(0)
    fullScans(ksmd, 1)
    expect(engine.stats().pagesSharing).toBe(0) // needs two visits again
    fullScans(ksmd, 1)
    expect(engine.stats().pagesSharing).toBe(7)
  })
})
