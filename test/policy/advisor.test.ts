/**
 * The scan-time advisor (src/policy/advisor.ts, the kernel's scan_time_advisor): its integer
 * formula, and how it moves pagesToScan pass by pass for injected and real scan times and CPU.
 */
import { describe, expect, it } from "vitest"
import { type AdvisorContext, newAdvisorContext, scanTimeAdvisor } from "../../src/policy/advisor.ts"
import type { ScanClock } from "../../src/policy/options.ts"
import { Engine } from "../helpers/internals.ts"
import { filled } from "../helpers/scanner.ts"

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
