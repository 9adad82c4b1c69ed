/**
 * Issue 4's scanner benchmarks.
 *
 * 1. Time to merge workload W, and CPU spent: merge() vs the background scanner with policy
 *    "ksm" vs policy "tracked" vs the kernel's ksmd, at the kernel's default tunables
 *    (pagesToScan 100, sleepMillis 20) and at full speed (100000 / 0), in one run. The sksm
 *    scanners run their real start()/stop() loop with real sleeps, so wall time is honest;
 *    every run (each sksm policy, the kernel) runs alone, so its CPU figure is its own. The
 *    defaults dominate the time (about 20-26 s each at 256 MiB; bounded by a cap, progress
 *    reported when it hits).
 *    "Merged" = pagesSharing reaches the max_page_sharing prediction (expectedCounts).
 * 2. A curve of memory saved over time ((pagesSharing + ksmZeroPages) * pageSize) for each
 *    mode, written as bench/scanner-curve.svg (two panels: defaults, full speed).
 * 3. Scanner CPU per scanned page in a steady-state pass over merged W; the cost of scanning
 *    a range with nothing to merge (all unique), smart scan on vs off, the tracked policy;
 *    and how the scan-time advisor moves pagesToScan there.
 *
 * CPU of an sksm scanner = process.cpuUsage() (user + system) deltas around each of its
 * batches (tick(), compaction after a pass included); idle event-loop time is not counted,
 * as ksmd's sleeping is not. ksmd's CPU comes from /proc/<ksmd>/schedstat.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import type { AddressSpace } from "../test/helpers/internals.ts"
import { type Series, svgChart, terminalChart } from "../src/cli/chart.ts"
import { Engine } from "../test/helpers/internals.ts"
import type { ScannerOptions } from "../src/policy/registry.ts"
import type { ScanReport } from "../src/policy/options.ts"
import type { Scanner } from "../test/helpers/internals.ts"
import { type KsmdSample, runKernelKsm } from "./kernel-ksm.ts"
import { type BenchModule, type BenchOptions, type BenchResult, type BenchRow, collectGarbage, fmt, median, MiB, PAGE } from "./lib.ts"
import { expectedCounts, makeWorkload, populate, type Workload } from "./workload.ts"

/** Kernel defaults and "full speed", as the kernel-ksm bench uses them. */
const DEFAULTS = { pagesToScan: 100, sleepMillis: 20 } as const
const FULL = { pagesToScan: 100000, sleepMillis: 0 } as const
const MAX_PAGE_SHARING = 256

type Point = [number, number]

/** One way of merging W: how long it took, what it cost, the curve of memory saved. */
export interface MergeRun {
  readonly label: string
  /** Reached the predicted pagesSharing within the bound. */
  readonly reached: boolean
  /** Seconds to full merge, or until the bound. */
  readonly wallSeconds: number
  /** CPU seconds spent (see the module comment for what is counted). */
  readonly cpuSeconds: number
  /** pagesSharing / predicted. */
  readonly progress: number
  readonly fullScans: number
  /** (seconds, bytes saved) samples. */
  readonly curve: Point[]
  /** Why it did not run, when it did not. */
  readonly skipped?: string
  readonly extra?: string
}

const cpuMicros = (): number => {
  const u = process.cpuUsage()
  return u.user + u.system
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/**
 * On-CPU seconds of the calling thread alone (/proc/thread-self/schedstat, ns), or null where
 * unavailable. process.cpuUsage() also counts V8's helper threads (concurrent GC, compiler);
 * this cross-checks it at run boundaries (a read costs ~15 µs, too much per batch).
 */
function threadCpu(): number | null {
  try {
    return Number(readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]) / 1e9
  } catch {
    return null
  }
}
const threadDelta = (a: number | null, b: number | null): string => (a === null || b === null ? "" : `; main thread alone ${fmt(b - a)} s`)

/** Let background work of the setup (V8's concurrent GC after writing hundreds of MiB) finish before a timed run. */
const SETTLE_MS = 200


/** Collect garbage and let helper threads go quiet: call before every timed run. */
async function quiesce(): Promise<void> {
  collectGarbage()
  await sleep(SETTLE_MS)
}

/** A fresh engine with W written into one space, advised MADV_MERGEABLE. */
function prepare(w: Workload, name: string): { engine: Engine; space: AddressSpace } {
  const engine = new Engine({ maxPageSharing: MAX_PAGE_SHARING })
  const space = engine.createSpace({ size: w.pages * PAGE, name })
  populate(space, w)
  space.advise(0, w.pages * PAGE, "mergeable")
  return { engine, space }
}

const savedBytes = (engine: Engine): number => {
  const st = engine.stats()
  return (st.pagesSharing + st.ksmZeroPages) * engine.pageSize
}

/** merge() of the whole space, `reps` times on fresh copies; the median run. */
function runMergeCall(w: Workload, reps: number): MergeRun {
  const target = expectedCounts(w.pages, w.spec.dup, w.spec.contents, MAX_PAGE_SHARING).sharing
  const runs: { wall: number; cpu: number; thread: string; saved: number; sharing: number }[] = []
  const engine = new Engine({ maxPageSharing: MAX_PAGE_SHARING })
  for (let i = 0; i < reps + 1; i++) {
    collectGarbage()
    const space = engine.createSpace({ size: w.pages * PAGE, name: "W" })
    populate(space, w)
    const th0 = threadCpu()
    const c0 = cpuMicros()
    const t0 = performance.now()
    space.merge()
    const wall = (performance.now() - t0) / 1e3
    const cpu = (cpuMicros() - c0) / 1e6
    const th1 = threadCpu()
    const st = engine.stats()
    // The first run warms the JIT up; it is not counted.
    if (i > 0) runs.push({ wall, cpu, thread: threadDelta(th0, th1), saved: (st.pagesSharing + st.ksmZeroPages) * engine.pageSize, sharing: st.pagesSharing })
    space.dispose()
  }
  runs.sort((a, b) => a.wall - b.wall)
  const m = runs[runs.length >> 1]!
  return {
    label: "merge()",
    reached: m.sharing >= target,
    wallSeconds: m.wall,
    cpuSeconds: m.cpu,
    progress: m.sharing / target,
    fullScans: 0,
    curve: [[0, 0], [m.wall, m.saved]],
    extra: `median of ${reps} calls on fresh copies${m.thread}`,
  }
}

/** A scanner under observation: its engine, CPU and samples. */
interface Watched {
  readonly label: string
  readonly engine: Engine
  readonly space: AddressSpace
  readonly scanner: Scanner
  cpu: number
  t0: number
  lastSample: number
  done: boolean
  reached: boolean
  wall: number
  curve: Point[]
  reports: number
}

/**
 * Run the given scanner configurations at once, each in its own engine holding W, with the
 * real start() loop, until each reaches the predicted pagesSharing or `capMs` passes.
 * `sampleMs` spaces the curve's samples (0: after every batch). Leaves the engines alive
 * (scanners stopped) for the caller, who must dispose them.
 */
async function runScanners(w: Workload, configs: readonly { label: string; options: ScannerOptions }[], capMs: number, sampleMs: number): Promise<{ runs: Watched[]; processCpu: number; thread: string }> {
  const target = expectedCounts(w.pages, w.spec.dup, w.spec.contents, MAX_PAGE_SHARING).sharing
  const runs: Watched[] = configs.map(({ label, options }) => {
    const { engine, space } = prepare(w, label)
    const scanner = engine.scanner(options)
    return { label, engine, space, scanner, cpu: 0, t0: 0, lastSample: 0, done: false, reached: false, wall: 0, curve: [], reports: 0 }
  })
  let finish: () => void = () => {}
  const allDone = new Promise<void>((r) => {
    finish = r
  })
  const settle = (x: Watched, now: number, reached: boolean): void => {
    if (x.done) return
    x.done = true
    x.reached = reached
    x.wall = (now - x.t0) / 1e3
    x.curve.push([x.wall, savedBytes(x.engine)])
    void x.scanner.stop()
    if (runs.every((r) => r.done)) finish()
  }
  for (const x of runs) {
    // Observe every batch of start()'s loop: the loop calls this.tick(), so an own property
    // wraps it without touching the scanner. CPU is measured around the real tick only.
    const tick = x.scanner.tick.bind(x.scanner)
    x.scanner.tick = (): ScanReport => {
      const c0 = cpuMicros()
      const r = tick()
      x.cpu += cpuMicros() - c0
      x.reports++
      const now = performance.now()
      // The core's counter directly: engine.stats() per batch would add its own cost.
      if (x.engine.core.pagesSharing >= target) settle(x, now, true)
      else if (now - x.lastSample >= sampleMs) {
        x.lastSample = now
        x.curve.push([(now - x.t0) / 1e3, savedBytes(x.engine)])
      }
      return r
    }
  }
  await quiesce()
  const th0 = threadCpu()
  const pc0 = cpuMicros()
  for (const x of runs) {
    x.t0 = x.lastSample = performance.now()
    x.curve.push([0, 0])
    x.scanner.start()
  }
  const cap = setTimeout(() => {
    const now = performance.now()
    for (const x of runs) settle(x, now, false)
  }, capMs)
  await allDone
  clearTimeout(cap)
  const processCpu = (cpuMicros() - pc0) / 1e6
  const thread = threadDelta(th0, threadCpu())
  for (const x of runs) await x.scanner.stop() // rethrows a loop error
  return { runs, processCpu, thread }
}

function toMergeRun(x: Watched, target: number, extra?: string): MergeRun {
  const st = x.engine.stats()
  return {
    label: x.label,
    reached: x.reached,
    wallSeconds: x.wall,
    cpuSeconds: x.cpu / 1e6,
    progress: st.pagesSharing / target,
    fullScans: st.fullScans,
    curve: x.curve,
    extra: `${x.reports} batches${extra === undefined ? "" : `; ${extra}`}`,
  }
}

/**
 * CPU of an idle setTimeout(sleepMillis) loop doing nothing, per wakeup: the event-loop cost
 * start()'s loop pays between batches, which the per-batch CPU figures leave out.
 */
async function wakeupCost(wakeups: number, sleepMillis: number): Promise<{ processMicros: number; threadMicros: number | null }> {
  await quiesce()
  const th0 = threadCpu()
  const c0 = cpuMicros()
  await new Promise<void>((resolve) => {
    let n = 0
    const loop = (): void => {
      if (++n >= wakeups) resolve()
      else setTimeout(loop, sleepMillis)
    }
    setTimeout(loop, sleepMillis)
  })
  const c1 = cpuMicros()
  const th1 = threadCpu()
  return { processMicros: (c1 - c0) / wakeups, threadMicros: th0 === null || th1 === null ? null : ((th1 - th0) * 1e6) / wakeups }
}

/** Steady-state cost per scanned page: align to a pass boundary, then `passes` full passes with tick(). */
function steadyState(x: Watched, passes: number): { nsPerScanned: number; nsPerPage: number; cpuPerPassMs: number; scanned: number; skipped: number } {
  x.scanner.set({ pagesToScan: 1 << 30, sleepMillis: 0 })
  while (!x.scanner.tick().fullScan) {
    // finish the pass in progress
  }
  let scanned = 0
  let skipped = 0
  collectGarbage()
  const c0 = cpuMicros()
  for (let i = 0; i < passes; i++) {
    const r = x.scanner.tick()
    scanned += r.scanned
    skipped += r.skipped
    if (!r.fullScan) throw new Error("a batch larger than the space did not complete a pass")
  }
  const cpu = (cpuMicros() - c0) * 1e3 // ns
  return { nsPerScanned: cpu / Math.max(1, scanned), nsPerPage: cpu / (passes * x.space.pages), cpuPerPassMs: cpu / 1e6 / passes, scanned: scanned / passes, skipped: skipped / passes }
}

/** CPU per full pass over an all-unique range, pass by pass. */
function uniquePasses(w: Workload, options: ScannerOptions, passes: number): { perPassMs: number[]; scanned: number[]; skipped: number[] } {
  const { engine, space } = prepare(w, "unique")
  const scanner = engine.scanner({ ...options, pagesToScan: 1 << 30, sleepMillis: 0 })
  const perPassMs: number[] = []
  const scanned: number[] = []
  const skipped: number[] = []
  collectGarbage()
  for (let i = 0; i < passes; i++) {
    const c0 = cpuMicros()
    const r = scanner.tick()
    perPassMs.push((cpuMicros() - c0) / 1e3)
    scanned.push(r.scanned)
    skipped.push(r.skipped)
    if (!r.fullScan) throw new Error("a batch larger than the space did not complete a pass")
  }
  const st = engine.stats()
  if (st.pagesSharing !== 0) throw new Error(`an all-unique range merged ${st.pagesSharing} pages`)
  space.dispose()
  return { perPassMs, scanned, skipped }
}

/** One advisor decision, at the end of a pass. */
interface AdvisorStep {
  readonly pass: number
  readonly seconds: number
  readonly pagesToScan: number
  readonly next: number
  readonly scanTime: number
  readonly cpuPercent: number
}

/**
 * Run the scan-time advisor's loop over an all-unique range for `ms`, each policy in turn
 * (not side by side: another scanner's batches would lengthen the pass times it measures).
 */
async function advisorRuns(w: Workload, policies: readonly ("ksm" | "tracked")[], ms: number): Promise<Map<string, AdvisorStep[]>> {
  const out = new Map<string, AdvisorStep[]>()
  for (const policy of policies) {
    const { engine, space } = prepare(w, `advisor-${policy}`)
    const scanner = engine.scanner({ policy, advisorMode: "scan-time" })
    const steps: AdvisorStep[] = []
    out.set(policy, steps)
    const tick = scanner.tick.bind(scanner)
    let t0 = 0
    scanner.tick = (): ScanReport => {
      const r = tick()
      const a = scanner.lastAdvice
      if (r.fullScan && a !== null) steps.push({ pass: r.fullScans, seconds: (performance.now() - t0) / 1e3, pagesToScan: r.pagesToScan, next: a.pages, scanTime: a.scanTime, cpuPercent: a.cpuPercent })
      return r
    }
    await quiesce()
    t0 = performance.now()
    scanner.start()
    await sleep(ms)
    await scanner.stop()
    space.dispose()
  }
  return out
}

function advisorTable(steps: readonly AdvisorStep[], maxRows: number): string {
  const lines = ["| pass | at (s) | pagesToScan during the pass | pass time (s, as the advisor counts) | CPU % of one core | pagesToScan next |", "|---|---|---|---|---|---|"]
  // The first passes and the last: where it moves, and where it settled.
  const pick = steps.length <= maxRows ? steps : [...steps.slice(0, maxRows - 2), steps[steps.length - 1]!]
  for (const s of pick) {
    if (steps.length > maxRows && s === pick[pick.length - 1]) lines.push("| ... | | | | | |")
    lines.push(`| ${s.pass} | ${fmt(s.seconds)} | ${s.pagesToScan} | ${s.scanTime} | ${s.cpuPercent} | ${s.next} |`)
  }
  return lines.join("\n")
}

/** "500 -> 5000 -> 30000 (x85)": a sequence with repeats folded. */
function runLength(xs: readonly number[]): string {
  const parts: string[] = []
  for (let i = 0; i < xs.length; ) {
    let j = i
    while (j < xs.length && xs[j] === xs[i]) j++
    parts.push(j - i > 1 ? `${xs[i]} (x${j - i})` : String(xs[i]))
    i = j
  }
  return parts.length > 24 ? `${parts.slice(0, 20).join(" -> ")} -> ... -> ${parts.slice(-3).join(" -> ")}` : parts.join(" -> ")
}

const mib = (b: number): string => `${fmt(b / MiB)} MiB`
const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)

/** Kernel samples downsampled to at most one per `stepS` seconds (keeping the last). */
function kernelCurve(samples: readonly KsmdSample[], pagesToScan: number, stepS: number): Point[] {
  const pts: Point[] = []
  let last = -Infinity
  const mine = samples.filter((s) => s.pagesToScan === pagesToScan)
  mine.forEach((s, i) => {
    if (s.seconds - last >= stepS || i === mine.length - 1) {
      pts.push([s.seconds, s.pagesSharing * PAGE])
      last = s.seconds
    }
  })
  return pts
}

const COLORS: Record<string, { mark: string; color: string }> = {
  "merge()": { mark: "m", color: "#888888" },
  "sksm ksm": { mark: "k", color: "#1f77b4" },
  "sksm tracked": { mark: "t", color: "#2ca02c" },
  "kernel ksmd": { mark: "K", color: "#d62728" },
}

function seriesOf(runs: readonly MergeRun[]): Series[] {
  return runs.filter((r) => r.skipped === undefined && r.curve.length > 0).map((r) => ({ name: r.label, points: r.curve, ...(COLORS[r.label] ?? { mark: "?", color: "black" }) }))
}

/** Two charts stacked in one SVG document. */
function stackSvg(top: string, bottom: string, width: number, height: number): string {
  const inner = (svg: string, y: number): string => svg.trim().replace("<svg ", `<svg x="0" y="${y}" `)
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${2 * height}" viewBox="0 0 ${width} ${2 * height}">\n${inner(top, 0)}\n${inner(bottom, height)}\n</svg>\n`
}

function runLine(r: MergeRun): string {
  if (r.skipped !== undefined) return `| ${r.label} | skipped: ${r.skipped} | | | |`
  const wall = r.reached ? `${fmt(r.wallSeconds)} s` : `not reached in ${fmt(r.wallSeconds)} s (${fmt(r.progress * 100)}%)`
  return `| ${r.label} | ${wall} | ${fmt(r.cpuSeconds)} s | ${r.label === "merge()" ? "1 call" : String(r.fullScans)} | ${r.extra ?? ""} |`
}

export const scanner: BenchModule = {
  name: "scanner",
  description: "issue 4: time and CPU to merge W by merge(), the ksm and tracked scanners and the kernel's ksmd; memory saved over time; scanning cost",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const q = opts.quick
    const wSize = q ? 16 * MiB : 256 * MiB
    const uSize = q ? 16 * MiB : 64 * MiB
    const capMs = q ? 15_000 : 60_000
    const mb = wSize / MiB
    const rows: BenchRow[] = []
    const notes: string[] = []
    const w = makeWorkload({ kind: "W", sizeBytes: wSize, dup: 0.5, contents: 16 })
    const target = expectedCounts(w.pages, 0.5, 16, MAX_PAGE_SHARING)

    // ---- 1. merge()
    opts.log(`scanner: merge() of W (${mb} MiB)`)
    const mergeRun = runMergeCall(w, q ? 3 : 5)

    // ---- full speed, one scanner at a time (they would share the one thread), then steady state.
    const full: MergeRun[] = [mergeRun]
    const steady = new Map<string, ReturnType<typeof steadyState>>()
    for (const policy of ["ksm", "tracked"] as const) {
      const label = `sksm ${policy}`
      opts.log(`scanner: ${label} at full speed (${FULL.pagesToScan} / ${FULL.sleepMillis} ms) on W`)
      const { runs, thread } = await runScanners(w, [{ label, options: { policy, ...FULL } }], capMs, 0)
      const x = runs[0]!
      full.push(toMergeRun(x, target.sharing, thread === "" ? undefined : `whole run${thread}`))
      if (x.reached) steady.set(policy, steadyState(x, q ? 4 : 10))
      x.space.dispose()
    }

    // ---- defaults, real sleeps, one policy at a time: side by side in one process they would
    // evict each other's caches between batches (that raised ksm's CPU by about a quarter in a trial).
    const defaults: MergeRun[] = [{ ...mergeRun }]
    for (const policy of ["ksm", "tracked"] as const) {
      const label = `sksm ${policy}`
      opts.log(`scanner: ${label} at the defaults (${DEFAULTS.pagesToScan} / ${DEFAULTS.sleepMillis} ms) on W, bound ${capMs / 1e3} s`)
      const d = await runScanners(w, [{ label, options: { policy, ...DEFAULTS } }], capMs, q ? 50 : 200)
      const x = d.runs[0]!
      defaults.push(toMergeRun(x, target.sharing, `process CPU over the whole run, idle loop included, ${fmt(d.processCpu)} s${d.thread}`))
      x.space.dispose()
    }

    const wake = await wakeupCost(q ? 25 : 100, DEFAULTS.sleepMillis)
    const wakeRow: BenchRow = {
      name: `idle setTimeout(${DEFAULTS.sleepMillis}) loop, no work: CPU per wakeup`,
      value: wake.processMicros,
      unit: "µs",
      detail: `${wake.threadMicros === null ? "" : `main thread alone ${fmt(wake.threadMicros)} µs; `}the event-loop cost of start()'s loop between batches, left out of the per-batch CPU above (in the whole-run figures)`,
    }

    // ---- the kernel, alone.
    opts.log(`scanner: the kernel's ksmd on W (${mb} MiB), full speed then defaults`)
    const samples: KsmdSample[] = []
    const k = await runKernelKsm({ sizeBytes: wSize, defaultsTimeoutMs: capMs, fullSpeedTimeoutMs: capMs, runSksm: false, maxPageSharing: MAX_PAGE_SHARING, log: opts.log, onSample: (s) => samples.push(s) })
    if (k.status === "skipped") {
      const skipped: MergeRun = { label: "kernel ksmd", reached: false, wallSeconds: 0, cpuSeconds: 0, progress: 0, fullScans: 0, curve: [], skipped: k.reason }
      full.push(skipped)
      defaults.push(skipped)
      notes.push(`The kernel's ksmd was not run: ${k.reason}.`)
    } else {
      for (const [run, list, step] of [[k.fullSpeed, full, 0.005], [k.defaults, defaults, q ? 0.05 : 0.2]] as const) {
        if (run === null) continue
        list.push({
          label: "kernel ksmd",
          reached: run.reached,
          wallSeconds: run.wallSeconds,
          cpuSeconds: run.ksmdSchedSeconds ?? run.ksmdCpuSeconds,
          progress: run.progress,
          fullScans: run.fullScans,
          curve: kernelCurve(samples, run.pagesToScan, step),
          extra: `ksmd's schedstat CPU${run.ksmdSchedSeconds === null ? " (unavailable: utime+stime)" : ""}; use_zero_pages 0, smart_scan ${k.smartScan ?? "n/a"}${k.restoreFailures.length > 0 ? `; **could not restore ${k.restoreFailures.join("; ")}**` : ""}`,
        })
      }
    }

    for (const [set, name] of [[defaults, `defaults ${DEFAULTS.pagesToScan}/${DEFAULTS.sleepMillis}`], [full, `full speed ${FULL.pagesToScan}/${FULL.sleepMillis}`]] as const) {
      for (const r of set) {
        if (r.skipped !== undefined) continue
        if (r.label === "merge()" && set === defaults) continue // one row for merge(): it has no tunables
        const where = r.label === "merge()" ? "" : `, ${name}`
        rows.push({
          name: `merge W (${mb} MiB)${where}: ${r.label}, wall`,
          value: r.wallSeconds,
          unit: "s",
          detail: r.reached ? `reached pagesSharing ${target.sharing}; ${r.label === "merge()" ? "one call" : `${r.fullScans} full scans`}` : `bound reached at ${fmt(r.progress * 100)}% of pagesSharing ${target.sharing}`,
        })
        rows.push({ name: `merge W (${mb} MiB)${where}: ${r.label}, CPU`, value: r.cpuSeconds, unit: "s", detail: r.extra ?? "" })
      }
    }
    rows.push(wakeRow)
    notes.push(
      `Workload W: ${mb} MiB, first half 16 distinct contents repeated, second half random unique; maxPageSharing 256. ` +
        `"Merged" = pagesSharing reaches ${target.sharing} (pagesShared ${target.shared}), the max_page_sharing prediction. ` +
        `sksm scanners: the real start()/stop() loop (setTimeout sleeps), one at a time; CPU = process.cpuUsage() (all of the process's threads) around each batch; ` +
        `"main thread alone" is /proc/thread-self/schedstat over the whole run. ksmd's CPU is its schedstat. The kernel ran alone too. ` +
        `An sksm batch is synchronous, so at full speed its curve has one point per batch (a batch of 100000 pages is one whole pass of W). ` +
        `The tracked policy finishes every 64-page range it starts, so its batches at pagesToScan 100 are 128 pages.`,
    )
    notes.push(
      [`Kernel defaults (${DEFAULTS.pagesToScan} pages / ${DEFAULTS.sleepMillis} ms):`, "", "| | wall to merged | CPU | full scans | notes |", "|---|---|---|---|---|", ...defaults.map(runLine)].join("\n"),
    )
    notes.push([`Full speed (${FULL.pagesToScan} pages / ${FULL.sleepMillis} ms):`, "", "| | wall to merged | CPU | full scans | notes |", "|---|---|---|---|---|", ...full.map(runLine)].join("\n"))

    // ---- 2. the curves
    const chart = (title: string) => ({ title, xLabel: "seconds", yLabel: "memory saved", formatX: (x: number) => `${fmt(x)} s`, formatY: (y: number) => mib(y) })
    const dTitle = `W ${mb} MiB, defaults (100 pages / 20 ms): memory saved over time`
    const fTitle = `W ${mb} MiB, full speed (100000 pages / 0 ms): memory saved over time`
    const svg = stackSvg(svgChart(seriesOf(defaults), chart(dTitle)), svgChart(seriesOf(full), chart(fTitle)), 720, 400)
    const here = dirname(fileURLToPath(import.meta.url))
    // A quick run never overwrites the committed chart.
    const svgPath = q ? join(tmpdir(), "sksm-scanner-curve.quick.svg") : join(here, "scanner-curve.svg")
    writeFileSync(svgPath, svg)
    opts.log(`scanner: wrote ${svgPath}`)
    opts.log(terminalChart(seriesOf(defaults), chart(dTitle)))
    opts.log(terminalChart(seriesOf(full), chart(fTitle)))
    notes.push(
      q
        ? `Quick mode: W is ${mb} MiB; the chart went to ${svgPath} (the committed bench/scanner-curve.svg comes from a full run).`
        : `Memory saved ((pagesSharing + ksmZeroPages) * 4 KiB; the kernel's pages_sharing polled every 1 ms at full speed, 50 ms at the defaults) over time: ![memory saved over time](scanner-curve.svg) (top: defaults; bottom: full speed).`,
    )

    // ---- 3. scanning cost
    for (const policy of ["ksm", "tracked"] as const) {
      const s = steady.get(policy)
      if (s === undefined) {
        notes.push(`No steady-state figure for ${policy}: it did not merge W at full speed within the bound.`)
        continue
      }
      rows.push({
        name: `steady-state pass over merged W, ${policy}: CPU per scanned page`,
        value: s.nsPerScanned,
        unit: "ns/page",
        detail: `${fmt(s.cpuPerPassMs)} ms CPU per pass of ${w.pages} pages (${fmt(s.nsPerPage)} ns per page of the range); per pass ${fmt(s.scanned)} scanned, ${fmt(s.skipped)} skipped; mean of ${q ? 4 : 10} passes`,
      })
    }
    const u = makeWorkload({ kind: "unique", sizeBytes: uSize, dup: 0, contents: 0 })
    const passes = q ? 20 : 40
    const tail = 9 // smart scan's longest cycle: scanned once every 9 passes
    const ub = uSize / MiB
    opts.log(`scanner: ${passes} passes over ${ub} MiB of unique pages: ksm smart scan off / on, tracked`)
    const uniq: [string, ScannerOptions][] = [
      ["ksm, smartScan off", { policy: "ksm", smartScan: false }],
      ["ksm, smartScan on", { policy: "ksm", smartScan: true }],
      ["tracked", { policy: "tracked" }],
    ]
    const costs = new Map<string, { all: number; last: number }>()
    for (const [name, o] of uniq) {
      const r = uniquePasses(u, o, passes)
      // Pass 0 allocates the per-page arrays and sees every page first: leave it out of the mean.
      const all = mean(r.perPassMs.slice(1))
      const last = mean(r.perPassMs.slice(-tail))
      costs.set(name, { all, last })
      const scannedLast = mean(r.scanned.slice(-tail))
      rows.push({
        name: `${ub} MiB all unique, ${name}: CPU per full pass`,
        value: all,
        unit: "ms",
        detail: `mean of passes 2-${passes} (last ${tail}: ${fmt(last)} ms, ${fmt(scannedLast)} of ${u.pages} pages scanned per pass, ${fmt((last * 1e6) / u.pages)} ns per page of the range); first pass ${fmt(r.perPassMs[0]!)} ms; median ${fmt(median(r.perPassMs.slice(1)))} ms`,
      })
    }
    const off = costs.get("ksm, smartScan off")!
    const on = costs.get("ksm, smartScan on")!
    rows.push({ name: `smart scan on a range with nothing to merge: pass cost off / on`, value: off.all / on.all, unit: "x", detail: `over passes 2-${passes}; over the last ${tail} passes ${fmt(off.last / on.last)} x` })

    // The advisor on a range as large as W: passes long enough (> 1 s at its start) for its
    // whole-second scan times to mean something.
    const advMs = q ? 2_500 : 12_000
    const ab = wSize / MiB
    opts.log(`scanner: the scan-time advisor on ${ab} MiB of unique pages, ksm then tracked, ${advMs / 1e3} s each`)
    const au = uSize === wSize ? u : makeWorkload({ kind: "unique", sizeBytes: wSize, dup: 0, contents: 0 })
    const adv = await advisorRuns(au, ["ksm", "tracked"], advMs)
    for (const [policy, steps] of adv) {
      const lastStep = steps[steps.length - 1]
      rows.push({
        name: `advisor (scan-time) on ${ab} MiB unique, ${policy}: pagesToScan after ${fmt(advMs / 1e3)} s`,
        value: lastStep?.next ?? 500,
        unit: "pages",
        detail: steps.length === 0 ? "no pass completed" : `${steps.length} passes; pagesToScan from pass to pass: ${runLength([500, ...steps.map((s) => s.next)])}`,
      })
      notes.push(`Scan-time advisor, ${policy} policy, ${ab} MiB of unique pages, real 20 ms sleeps, kernel defaults (starts at advisorMinPagesToScan 500; advisorMaxCpu 70, advisorTargetScanTime 200 s, advisorMaxPagesToScan 30000):\n\n${advisorTable(steps, 12)}`)
    }
    if (q) notes.push(`Quick mode: W ${mb} MiB, unique range ${ub} MiB, ${passes} passes, advisor ${advMs / 1e3} s, time bound ${capMs / 1e3} s.`)
    return { rows, notes }
  },
}
