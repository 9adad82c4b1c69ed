/**
 * The scanner as a ksmd: tunables and their kernel validation, the scan-time advisor, the
 * start/stop loop, one scanner per engine, lifetimes of spaces between batches, run=2, and
 * the one merge core it shares with merge().
 */
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { describe, expect, it } from "vitest"
import type { AddressSpace } from "../helpers/internals.ts"
import { Engine } from "../helpers/internals.ts"
import { InvalidArgument, ScannerDetached } from "../../src/errors.ts"
import { type AdvisorContext, newAdvisorContext, scanTimeAdvisor } from "../../src/policy/advisor.ts"
import type { ScanClock } from "../../src/policy/options.ts"
import { checkCounters } from "../helpers/recount.ts"
import { allBytes, checkScanCounters, filled, fullScans, mapsDuplicates, POLICIES, PS } from "../helpers/scanner.ts"

describe("tunables: kernel defaults and validation", () => {
  it("defaults are the kernel's", () => {
    const ksmd = new Engine().scanner()
    expect(ksmd.policy).toBe("ksm")
    expect(ksmd.tunables).toMatchObject({
      pagesToScan: 100,
      sleepMillis: 20,
      smartScan: true,
      advisorMode: "none",
      advisorMaxCpu: 70,
      advisorMinPagesToScan: 500,
      advisorMaxPagesToScan: 30000,
      advisorTargetScanTime: 200,
    })
    expect(new Engine().scanner({ policy: "tracked" }).tunables).toMatchObject({ stablePasses: 2, thrashUnshares: 2, maxBackoffPasses: 64 })
  })

  it("pagesToScan is rejected while the advisor runs; switching the advisor resets it as the kernel does", () => {
    const ksmd = new Engine().scanner({ pagesToScan: 1234 })
    ksmd.set({ advisorMode: "scan-time" })
    expect(ksmd.tunables.pagesToScan).toBe(500) // advisor_min_pages_to_scan
    expect(() => ksmd.set({ pagesToScan: 10 })).toThrow(InvalidArgument)
    expect(ksmd.tunables.pagesToScan).toBe(500)
    ksmd.set({ advisorMode: "scan-time" }) // no change: no reset
    expect(ksmd.tunables.pagesToScan).toBe(500)
    ksmd.set({ advisorMode: "none" })
    expect(ksmd.tunables.pagesToScan).toBe(100) // DEFAULT_PAGES_TO_SCAN
    ksmd.set({ pagesToScan: 10 })
    expect(ksmd.tunables.pagesToScan).toBe(10)
    // Switching the advisor off and setting pagesToScan in one call works (mode first).
    ksmd.set({ advisorMode: "scan-time", advisorMinPagesToScan: 700 })
    expect(ksmd.tunables.pagesToScan).toBe(700)
    ksmd.set({ advisorMode: "none", pagesToScan: 42 })
    expect(ksmd.tunables.pagesToScan).toBe(42)
    expect(() => new Engine().scanner({ advisorMode: "scan-time", pagesToScan: 5 })).toThrow(InvalidArgument)
  })

  it("rejects out-of-domain values and changes nothing", () => {
    const ksmd = new Engine().scanner()
    const before = ksmd.tunables
    const bad: Record<string, unknown>[] = [
      { advisorTargetScanTime: 0 },
      { advisorMode: "fast" },
      { pagesToScan: -1 },
      { pagesToScan: 2 ** 32 },
      { pagesToScan: 1.5 },
      { sleepMillis: "20" },
      { smartScan: 1 },
      { advisorMaxCpu: -1 },
      { pageToScan: 10 },
      { policy: "tracked" },
      { stablePasses: 3 }, // tracked only
      { sleepMillis: 5, advisorTargetScanTime: 0 }, // all-or-nothing
    ]
    for (const t of bad) expect(() => ksmd.set(t as never), JSON.stringify(t)).toThrow(InvalidArgument)
    expect(ksmd.tunables).toEqual(before)
    expect(() => new Engine().scanner({ policy: "nope" as never })).toThrow(InvalidArgument)
    expect(() => new Engine().scanner({ rangePages: 8 })).toThrow(InvalidArgument)
    const tracked = new Engine().scanner({ policy: "tracked" })
    expect(() => tracked.set({ stablePasses: 0 })).toThrow(InvalidArgument)
    expect(() => tracked.set({ rangePages: 8 } as never)).toThrow(InvalidArgument)
    tracked.set({ stablePasses: 3, advisorTargetScanTime: 1, advisorMaxCpu: 500 })
    expect(tracked.tunables).toMatchObject({ stablePasses: 3, advisorTargetScanTime: 1, advisorMaxCpu: 500 })
  })

  it("an invalid engine.scanner() call leaves the previous scanner attached", () => {
    const engine = new Engine()
    const ksmd = engine.scanner()
    expect(() => engine.scanner({ pagesToScan: -5 })).toThrow(InvalidArgument)
    expect(ksmd.detached).toBe(false)
    expect(() => ksmd.tick()).not.toThrow()
  })
})

describe("scan-time advisor (scan_time_advisor)", () => {
  it("computes the kernel's integer formula for given scan times and CPU", () => {
    const ctx: AdvisorContext = newAdvisorContext()
    const base = { pagesToScan: 500, advisorMaxCpu: 70, advisorMaxPagesToScan: 30000, advisorTargetScanTime: 200 }
    // Pass 1: 10 s, 5000 ms CPU (50%). factor 2000, change ewma(0,100)=30, pages 500*100/2000*30/100 = 7,
    // per_page_cost 500/50 = 10: max(7, 10*10) = 100.
    ctx.startScanMillis = 1000
    let r = scanTimeAdvisor(ctx, { ...base, nowMillis: 11_000, cpuMicros: 5_000_000 })
    expect(r).toEqual({ pages: 100, scanTime: 10, cpuPercent: 50 })
    expect(ctx).toMatchObject({ change: 30, scanTime: 10, cpuMicros: 5_000_000 })
    // Pass 2: 400 s at 1% CPU with 1000 pages and a settled ewma of 100: factor 50 -> 2000 pages,
    // per_page_cost 1000: min(2000, 70000) = 2000, max(2000, 10000) = 10000.
    const settled: AdvisorContext = { startScanMillis: 0, cpuMicros: 0, change: 100, scanTime: 400 }
    r = scanTimeAdvisor(settled, { ...base, pagesToScan: 1000, nowMillis: 400_000, cpuMicros: 4_000_000 })
    expect(r).toEqual({ pages: 10000, scanTime: 400, cpuPercent: 1 })
    // Too much CPU: 90% over 100 s with 20000 pages; target 200 s wants 10000 pages * change;
    // per_page_cost 20000/90 = 222 -> cap 222*70 = 15540; floor 2220.
    const busy: AdvisorContext = { startScanMillis: 0, cpuMicros: 0, change: 100, scanTime: 100 }
    r = scanTimeAdvisor(busy, { ...base, pagesToScan: 20000, nowMillis: 100_000, cpuMicros: 90_000_000 })
    expect(r).toEqual({ pages: 10000, scanTime: 100, cpuPercent: 90 })
    // advisor_max_pages_to_scan caps everything; a sub-second pass counts as 1 s.
    const fast: AdvisorContext = { startScanMillis: 0, cpuMicros: 0, change: 100, scanTime: 1 }
    r = scanTimeAdvisor(fast, { ...base, pagesToScan: 30000, nowMillis: 300, cpuMicros: 100 })
    expect(r.scanTime).toBe(1)
    expect(r.pages).toBe(30000)
  })

  /** The formula of ksm-semantics.md B.9, transcribed independently. */
  function reference(ctx: { change: number; scanTime: number; cpu: number }, elapsedMs: number, cpuNowMs: number, ptc: number, maxCpu: number, maxPages: number, target: number): number {
    const scanTime = Math.max(1, Math.floor(elapsedMs / 1000))
    const cpuMs = cpuNowMs - ctx.cpu
    const cpuPct = Math.max(1, Math.floor((cpuMs * 100) / (scanTime * 1000)))
    const last = ctx.scanTime ? ctx.scanTime : scanTime
    const factor = Math.max(1, Math.floor((target * 100) / scanTime))
    let change = Math.max(1, Math.floor((scanTime * 100) / last))
    change = Math.floor((70 * ctx.change + 30 * change) / 100)
    let pages = Math.floor((ptc * 100) / factor)
    pages = Math.floor((pages * change) / 100)
    const ppc = Math.max(1, Math.floor(ptc / cpuPct))
    pages = Math.min(pages, ppc * maxCpu)
    pages = Math.max(pages, ppc * 10)
    pages = Math.min(pages, maxPages)
    ctx.change = change
    ctx.scanTime = scanTime
    ctx.cpu = cpuNowMs
    return pages
  }

  /** A clock the test drives: in each tick the first reading is the "before", later ones the "after". */
  function scriptedClock() {
    let wall0 = 0
    let wall1 = 0
    let cpu0 = 0
    let cpu1 = 0
    let wallCalls = 0
    let cpuCalls = 0
    const clock: ScanClock = {
      wallMillis: () => (wallCalls++ === 0 ? wall0 : wall1),
      cpuMicros: () => (cpuCalls++ === 0 ? cpu0 : cpu1),
    }
    return {
      clock,
      /** The next tick starts at `wallStart`, ends at `wallEnd` and costs `cpuMs` of CPU. */
      next(wallStart: number, wallEnd: number, cpuStartMs: number, cpuMs: number) {
        wall0 = wallStart
        wall1 = wallEnd
        cpu0 = cpuStartMs * 1000
        cpu1 = (cpuStartMs + cpuMs) * 1000
        wallCalls = cpuCalls = 0
      },
    }
  }

  it("moves pagesToScan at the end of every pass as the formula says, for injected scan times and CPU", () => {
    const engine = new Engine()
    filled(engine, 8, 0x5a) // the advisor never goes below 10 pages: one tick is one full pass
    const { clock, next } = scriptedClock()
    const ksmd = engine.scanner({ advisorMode: "scan-time", advisorTargetScanTime: 20, clock })
    const ctx = { change: 0, scanTime: 0, cpu: 0 }
    // [pass seconds, CPU ms of the pass]
    const passes: [number, number][] = [[5, 500], [5, 4000], [30, 300], [30, 300], [2, 1900], [1, 900], [60, 60], [60, 60]]
    let wall = 1000
    let cpu = 0
    const seen: number[] = []
    for (const [secs, cpuMs] of passes) {
      const ptc = ksmd.tunables.pagesToScan
      next(wall, wall + secs * 1000, cpu, cpuMs)
      const r = ksmd.tick()
      expect(r.fullScan).toBe(true)
      expect(r.cpuMicros).toBe(cpuMs * 1000)
      cpu += cpuMs
      wall += secs * 1000 + 5
      const want = reference(ctx, secs * 1000, cpu, ptc, 70, 30000, 20)
      expect(ksmd.tunables.pagesToScan).toBe(want)
      expect(ksmd.lastAdvice?.scanTime).toBe(secs)
      seen.push(want)
    }
    // It did move, both ways.
    expect(seen.some((v, i) => i > 0 && v > seen[i - 1]!)).toBe(true)
    expect(seen.some((v, i) => i > 0 && v < seen[i - 1]!)).toBe(true)
  })

  it("raises pagesToScan when passes are far slower than the target and CPU is cheap, up to advisorMaxPagesToScan", () => {
    const engine = new Engine()
    filled(engine, 16, 0x5a)
    const { clock, next } = scriptedClock()
    const ksmd = engine.scanner({ advisorMode: "scan-time", advisorTargetScanTime: 1, advisorMaxPagesToScan: 5000, clock })
    const seen: number[] = []
    let cpu = 0
    for (let i = 0; i < 12; i++) {
      next(i * 100_000, i * 100_000 + 50_000, cpu, 10) // 50 s passes at ~0% CPU
      cpu += 10
      ksmd.tick()
      seen.push(ksmd.tunables.pagesToScan)
    }
    expect(Math.max(...seen)).toBe(5000)
    expect(seen.at(-1)).toBe(5000)
  })

  it("with the real clock, measures CPU with process.cpuUsage and keeps pagesToScan within its bounds", () => {
    const engine = new Engine()
    filled(engine, 256, 0x11)
    const ksmd = engine.scanner({ advisorMode: "scan-time", advisorMaxPagesToScan: 2000 })
    let cpu = 0
    for (let i = 0; i < 6; i++) {
      const r = ksmd.tick()
      expect(r.cpuMicros).toBeGreaterThanOrEqual(0)
      cpu += r.cpuMicros
    }
    expect(ksmd.lastAdvice).not.toBeNull()
    expect(ksmd.lastAdvice!.cpuPercent).toBeGreaterThanOrEqual(1)
    expect(ksmd.tunables.pagesToScan).toBeLessThanOrEqual(2000)
    expect(ksmd.tunables.pagesToScan).toBeGreaterThanOrEqual(1)
    expect(cpu).toBeGreaterThanOrEqual(0)
  })
})

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
    expect(b.pte[0]).toBe(a.pte[0])
    // And the other way round: merge() finds the scanner's stable frame.
    const c = filled(engine, 4, 0x99, true)
    const d = filled(engine, 4, 0x99, false)
    fullScans(ksmd)
    expect(d.merge().merged).toBe(4)
    expect(d.pte[0]).toBe(c.pte[0])
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
      for (let p = 8; p < 16; p++) expect(engine.pool.refcount[b.pte[p]!]).toBe(1)
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
