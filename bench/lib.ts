/**
 * Shared pieces of the benchmark suite: the row type every bench returns, goal checks,
 * timing helpers on top of tinybench 6, and formatting. Cold code: clarity over speed.
 */
import { readFileSync } from "node:fs"
import { loadavg, release } from "node:os"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { Bench, type FnOptions, type Task } from "tinybench"

/** A speed or size goal from the issues: `value op target` must hold. */
export interface Goal {
  readonly op: "<=" | ">="
  readonly target: number
}

/** One measured figure. A row without a goal is informative only. */
export interface BenchRow {
  /** Short figure name, e.g. "random readU32: sksm / DataView". */
  readonly name: string
  readonly value: number
  /** Unit of `value` and of the goal: "x", "GB/s", "ns/page", "B/page", "µs", "s", ... */
  readonly unit: string
  readonly goal?: Goal
  /** What the figure is made of (the two sides of a ratio, sizes, sample counts). */
  readonly detail?: string
}

/** What one bench module returns. */
export interface BenchResult {
  readonly rows: BenchRow[]
  /** Extra markdown paragraphs for RESULTS.md (side-by-side tables, skip reasons). */
  readonly notes: string[]
}

/** Options every bench module receives. */
export interface BenchOptions {
  /** Smaller sizes and shorter time budgets (the whole suite under about a minute). */
  readonly quick: boolean
  /** Progress lines (stderr by default, so stdout stays the tables). */
  readonly log: (line: string) => void
}

/** A bench module: a name and an async function returning its figures. */
export interface BenchModule {
  readonly name: string
  readonly description: string
  run(opts: BenchOptions): Promise<BenchResult>
}

/** Decimal gigabyte, as the kernel anchors use (256 MiB in 0.13 s = ~2.0 GB/s). */
export const GB = 1e9
export const MiB = 1 << 20
export const PAGE = 4096

/** True when `row` has a goal and meets it; undefined without a goal. */
export function passes(row: BenchRow): boolean | undefined {
  if (row.goal === undefined) return undefined
  return row.goal.op === "<=" ? row.value <= row.goal.target : row.value >= row.goal.target
}

/** Format a number with about 3 significant digits (no exponent for usual ranges). */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x)
  const a = Math.abs(x)
  if (a === 0) return "0"
  if (a >= 1000) return Math.round(x).toLocaleString("en-US")
  if (a >= 100) return x.toFixed(0)
  if (a >= 10) return x.toFixed(1)
  if (a >= 1) return x.toFixed(2)
  return x.toPrecision(3)
}

/** Median of a non-empty list. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** Sink for benchmark results, so the JIT cannot drop the measured loop. */
export let sink = 0
export function consume(x: number): void {
  sink = (sink + x) | 0
}

/** Options of {@link measure}. */
export interface MeasureOptions extends FnOptions {
  /** Time budget in ms (tinybench `time`). */
  readonly time: number
  /** Minimum iterations (tinybench `iterations`). */
  readonly iterations: number
  readonly warmupIterations?: number
  readonly warmupTime?: number
}

/** Latency of one measured task, in ms. */
export interface Timing {
  /** Median latency: the figure compared with goals. */
  readonly median: number
  /** Fastest sample: what the code does when the shared machine leaves it alone. */
  readonly min: number
  readonly samples: number
}

/**
 * Run `fn` under tinybench and return its latency in ms. Setup that must stay outside the
 * timed part goes in `beforeEach`/`afterEach` (tinybench runs hooks untimed).
 */
export async function measure(name: string, fn: () => unknown, opts: MeasureOptions): Promise<Timing> {
  const { time, iterations, warmupIterations = 2, warmupTime = 0, ...hooks } = opts
  const bench = new Bench({ name, time, iterations, warmupIterations, warmupTime, throws: true })
  bench.add(name, fn, hooks)
  await bench.run()
  const r = bench.tasks[0]!.result
  if (r.state !== "completed") throw new Error(`bench task ${name} ended in state ${r.state}`)
  return { median: r.latency.p50, min: r.latency.min, samples: r.latency.samplesCount }
}

/** Median latency (ms) of a completed tinybench task. */
export function p50(task: Task): number {
  const r = task.result
  if (r.state !== "completed") throw new Error(`bench task ${task.name} ended in state ${r.state}`)
  return r.latency.p50
}

/** Machine facts for RESULTS.md. */
export interface MachineInfo {
  readonly date: string
  readonly cpu: string
  readonly cores: number
  readonly node: string
  readonly kernel: string
  /** 1-minute load average when taken (run start): how much else the shared machine was doing. */
  readonly load: number
}

/** Date, CPU model (/proc/cpuinfo), core count, Node and kernel versions, load average. */
export function machineInfo(): MachineInfo {
  let cpu = "unknown"
  let cores = 0
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8")
    const m = /^model name\s*:\s*(.+)$/m.exec(info)
    if (m) cpu = m[1]!.trim()
    cores = (info.match(/^processor\s*:/gm) ?? []).length
    const flags = /^flags\s*:\s*(.+)$/m.exec(info)?.[1]?.split(" ") ?? []
    if (flags.includes("avx512f")) cpu += " (AVX-512)"
  } catch {
    // not Linux: leave "unknown"
  }
  return { date: new Date().toISOString(), cpu, cores, node: process.version, kernel: `${process.platform} ${release()}`, load: loadavg()[0]! }
}

let gcFn: (() => void) | null = null

/**
 * Node flags for a child process that runs a `.ts` file of this repo like this process does:
 * this process's flags, the tsx loader when it came another way, and `--expose-gc` (the
 * memory benches force full GCs) unless `exposeGc` is false.
 */
export function childNodeArgs(exposeGc = true): string[] {
  // Under `tsx` the loader is in execArgv; a host that registered tsx another way gets it added.
  const loader = process.execArgv.some((a) => a.includes("tsx")) ? [] : ["--import", import.meta.resolve("tsx")]
  const gc = exposeGc && !process.execArgv.includes("--expose-gc") ? ["--expose-gc"] : []
  return [...process.execArgv, ...gc, ...loader]
}

/**
 * A full garbage collection now, so the slabs of the previous run's disposed engines are
 * not collected (on the main thread) during the next timed run. Enables --expose-gc at
 * run time, on first use (importing this module changes nothing); a no-op where that fails.
 */
export function collectGarbage(): void {
  if (gcFn === null) {
    gcFn = () => {}
    try {
      setFlagsFromString("--expose-gc")
      const gc: unknown = runInNewContext("gc")
      if (typeof gc === "function") gcFn = gc as () => void
    } catch {
      // keep the no-op
    }
  }
  gcFn()
}
