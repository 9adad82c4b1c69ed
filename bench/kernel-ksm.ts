/**
 * bench/kernel-ksm: the kernel's own ksmd on workload W, next to sksm's merge(W), in one run.
 *
 * When running as root on Linux with /sys/kernel/mm/ksm and a C compiler, it builds
 * kernel-ksm/ksm_w.c into a temporary directory, runs it (it maps W, MADV_NOHUGEPAGE,
 * MADV_MERGEABLE, and waits), sets ksmd to full speed (pages_to_scan=100000,
 * sleep_millisecs=0, max_page_sharing=256, use_zero_pages=0, run=1) and measures wall time
 * and ksmd CPU seconds (/proc/<ksmd>/stat utime+stime) until pages_sharing reaches what the
 * max_page_sharing rule predicts. A second run at the kernel defaults (100 / 20 ms) is
 * bounded in time. Afterwards it writes run=2 (unmerge) and restores every setting it
 * changed, also on error and on SIGINT/SIGTERM. Where any of that is impossible it says why
 * and skips. It refuses to touch a KSM that someone else is using (run != 0 or pages shared).
 *
 * `runKernelKsm` is the reusable entry point (the CLI and the scanner comparison use it).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync, writeSync } from "node:fs"
import { tmpdir } from "node:os"
import { basename, dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { type BenchModule, type BenchOptions, type BenchResult, type BenchRow, fmt, GB, MiB, PAGE } from "./lib.ts"
import { timeMerge } from "./merge.ts"
import { expectedCounts } from "./workload.ts"

/** Where the kernel exposes KSM. */
export const KSM_SYSFS = "/sys/kernel/mm/ksm"
/** Source of the C helper. */
export const HELPER_SOURCE = join(dirname(fileURLToPath(import.meta.url)), "kernel-ksm", "ksm_w.c")
const LOCK = join(tmpdir(), "sksm-kernel-ksm.lock")

// ------------------------------------------------------------------ probing

/** The pid of ksmd (found by /proc/<pid>/comm), or null. */
export function findKsmd(): number | null {
  let entries: string[]
  try {
    entries = readdirSync("/proc")
  } catch {
    return null
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue
    try {
      if (readFileSync(`/proc/${e}/comm`, "utf8").trim() === "ksmd") return Number(e)
    } catch {
      // the process went away
    }
  }
  return null
}

let clockTicks: number | null = null
function clkTck(): number {
  if (clockTicks === null) {
    const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" })
    const n = Number(r.stdout?.trim())
    clockTicks = r.status === 0 && Number.isInteger(n) && n > 0 ? n : 100
  }
  return clockTicks
}

/** CPU seconds a process used: utime+stime from /proc/<pid>/stat, and /proc/<pid>/schedstat's ns when present. */
export function processCpu(pid: number): { stat: number; sched: number | null } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  // Fields after the ")" that closes comm: state is field 3, utime 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  const ticks = Number(f[11]) + Number(f[12])
  let sched: number | null = null
  try {
    sched = Number(readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ")[0]) / 1e9
  } catch {
    // schedstat is optional (CONFIG_SCHED_INFO)
  }
  return { stat: ticks / clkTck(), sched }
}

/** Whether `cc` runs; the reason when it does not. */
export function ccMissing(): string | null {
  const r = spawnSync("cc", ["--version"], { encoding: "utf8" })
  if (r.error !== undefined) return `no C compiler: running cc failed (${(r.error as NodeJS.ErrnoException).code ?? r.error.message})`
  if (r.status !== 0) return `cc --version exited with status ${r.status}`
  return null
}

/** Why the kernel comparison cannot run here, or null when it can. */
export function kernelKsmUnavailable(): string | null {
  if (process.platform !== "linux") return `not Linux (platform ${process.platform})`
  if (!existsSync(join(KSM_SYSFS, "run"))) return `${KSM_SYSFS} is absent (kernel without CONFIG_KSM, or sysfs not mounted)`
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return "not root: the KSM sysfs settings are writable by root only"
  if (findKsmd() === null) return "no ksmd thread found in /proc"
  return ccMissing()
}

// ------------------------------------------------------------------ the C helper

/** Outcome of {@link buildHelper}. */
export type BuildResult = { readonly ok: true; readonly path: string; readonly dir: string } | { readonly ok: false; readonly reason: string }

/** Compile `source` (ksm_w.c by default) with cc into `dir` (a new temporary directory by default). */
export function buildHelper(dir: string = mkdtempSync(join(tmpdir(), "sksm-ksm-")), source: string = HELPER_SOURCE): BuildResult {
  const missing = ccMissing()
  if (missing !== null) return { ok: false, reason: missing }
  const out = join(dir, basename(source, ".c"))
  const r = spawnSync("cc", ["-O2", "-Wall", "-o", out, source], { encoding: "utf8" })
  if (r.error !== undefined || r.status !== 0) return { ok: false, reason: `cc failed to build ${source}: ${r.stderr || r.error?.message || `status ${r.status}`}` }
  return { ok: true, path: out, dir }
}

/** A running helper holding workload W. */
export interface Helper {
  readonly pid: number
  readonly pages: number
  readonly dupPages: number
  /** Close its stdin and wait for it to exit (SIGKILL after 10 s); resolves to its exit code (null if killed). */
  stop(): Promise<number | null>
}

/** Start the helper and wait for its READY line (it has mapped, filled and madvised W). */
export function startHelper(path: string, bytes: number, dup: number, contents: number, seed: number, timeoutMs = 120_000): Promise<Helper> {
  return startHelperWith(path, [String(bytes), String(dup), String(contents), String(seed)], timeoutMs)
}

/** Start a helper with `args` and wait for its "READY pages=N dup_pages=D" line. */
export function startHelperWith(path: string, args: readonly string[], timeoutMs = 120_000): Promise<Helper> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(path, args, { stdio: ["pipe", "pipe", "pipe"] })
    let out = ""
    let err = ""
    let done = false
    const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)))
    const stop = async (): Promise<number | null> => {
      child.stdin?.end()
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000)
      const code = await exited
      clearTimeout(timer)
      return code
    }
    const timer = setTimeout(() => fail(new Error(`helper not ready after ${timeoutMs} ms`)), timeoutMs)
    const fail = (e: Error): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      child.kill("SIGKILL")
      reject(e)
    }
    child.stderr?.on("data", (d: Buffer) => {
      err += d.toString()
    })
    child.on("error", (e) => fail(e))
    child.once("exit", (code, signal) => fail(new Error(`helper exited before READY (code ${code}, signal ${signal}): ${err.trim()}`)))
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString()
      const m = /READY pages=(\d+) dup_pages=(\d+)\n/.exec(out)
      if (m === null || done) return
      done = true
      clearTimeout(timer)
      resolve({ pid: child.pid!, pages: Number(m[1]), dupPages: Number(m[2]), stop })
    })
  })
}

// ------------------------------------------------------------------ sysfs settings

/** Read a KSM setting; advisor_mode's "[none] scan-time" reads as "none". */
export function readKsm(name: string): string {
  const v = readFileSync(join(KSM_SYSFS, name), "utf8").trim()
  const sel = /\[([^\]]+)\]/.exec(v)
  return sel !== null ? sel[1]! : v
}

export function writeKsm(name: string, value: string | number): void {
  writeFileSync(join(KSM_SYSFS, name), String(value))
}

/**
 * The settings this driver changes, saved before the first write and put back by
 * `restore()`, which is synchronous so it can also run from a signal handler.
 */
export class KsmSettings {
  readonly #saved = new Map<string, string>()
  #runTouched = false

  set(name: string, value: string | number): void {
    if (name === "run") this.#runTouched = true
    if (!this.#saved.has(name)) this.#saved.set(name, readKsm(name))
    writeKsm(name, value)
  }

  /** What was there before, for the report. */
  saved(): Record<string, string> {
    return Object.fromEntries(this.#saved)
  }

  /** run=2 (unmerge everything we merged), then every saved value, run last. Returns failures. */
  restore(): string[] {
    const failures: string[] = []
    const put = (name: string, value: string): void => {
      try {
        writeKsm(name, value)
        if (readKsm(name) !== value) failures.push(`${name}: wrote ${value}, reads ${readKsm(name)}`)
      } catch (e) {
        failures.push(`${name}=${value}: ${(e as Error).message}`)
      }
    }
    if (this.#runTouched) put("run", "2")
    for (const [name, value] of this.#saved) if (name !== "run") put(name, value)
    const run = this.#saved.get("run")
    if (run !== undefined) put("run", run)
    this.#saved.clear()
    this.#runTouched = false
    return failures
  }
}

/** A lock file so two drivers never drive ksmd at once. Returns a release function or a reason. */
export function lock(): (() => void) | string {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(LOCK, "wx")
      writeSync(fd, String(process.pid))
      closeSync(fd)
      return () => {
        try {
          unlinkSync(LOCK)
        } catch {
          // already gone
        }
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") return `cannot create ${LOCK}: ${(e as Error).message}`
      const pid = Number(readFileSync(LOCK, "utf8"))
      let alive = false
      try {
        if (Number.isInteger(pid) && pid > 0) {
          process.kill(pid, 0)
          alive = true
        }
      } catch {
        // stale lock
      }
      if (alive) return `another kernel-ksm run holds ${LOCK} (pid ${pid})`
      unlinkSync(LOCK)
    }
  }
  return `cannot take ${LOCK}`
}

/** What {@link withKernelKsm} gives its callback. */
export interface KsmControl {
  /** Write a setting (saved first, restored afterwards). */
  set(name: string, value: string | number): void
  /** Read a setting or counter. */
  read(name: string): number
}

/**
 * Drive the kernel's KSM for `fn` with the same guarantees as {@link runKernelKsm}: refuse when
 * not possible or when KSM is in use (run != 0 or pages shared), take the lock, and restore every
 * setting written through `ksm.set` (after run=2) at the end, on error, and on SIGINT/SIGTERM
 * (`onAbort` then runs first, synchronously, to stop processes `fn` started).
 */
/**
 * Put KSM back if the run is interrupted: on SIGINT or SIGTERM, `abort` runs first (kill helper
 * processes, remove build files), then every setting is restored, the lock released and the
 * process exits (130 / 143). Returns the call that uninstalls the handlers (the caller's
 * `finally`). The handlers stay installed and ignore repeats: Ctrl-C often arrives twice (the
 * terminal's and tsx's relay), and with no listener left Node would die mid-restore.
 */
export function restoreOnSignal(label: string, settings: KsmSettings, unlock: () => void, abort: () => void): () => void {
  let exiting = false
  const onSignal = (sig: NodeJS.Signals): void => {
    if (exiting) return
    exiting = true
    abort()
    const failures = settings.restore()
    if (failures.length > 0) process.stderr.write(`${label}: could not restore: ${failures.join("; ")}\n`)
    unlock()
    process.exit(sig === "SIGINT" ? 130 : 143)
  }
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
  return () => {
    process.removeListener("SIGINT", onSignal)
    process.removeListener("SIGTERM", onSignal)
  }
}

export async function withKernelKsm<T>(fn: (ksm: KsmControl) => Promise<T>, onAbort: () => void = () => {}): Promise<{ readonly status: "skipped"; readonly reason: string } | { readonly status: "ok"; readonly value: T; readonly settingsBefore: Record<string, string>; readonly restoreFailures: string[] }> {
  if (process.platform !== "linux") return { status: "skipped", reason: `not Linux (platform ${process.platform})` }
  if (!existsSync(join(KSM_SYSFS, "run"))) return { status: "skipped", reason: `${KSM_SYSFS} is absent (kernel without CONFIG_KSM, or sysfs not mounted)` }
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return { status: "skipped", reason: "not root: the KSM sysfs settings are writable by root only" }
  const run0 = readKsm("run")
  const shared0 = num("pages_shared")
  const sharing0 = num("pages_sharing")
  if (run0 !== "0" || shared0 !== 0 || sharing0 !== 0) return { status: "skipped", reason: `KSM is in use on this machine (run=${run0}, pages_shared=${shared0}, pages_sharing=${sharing0}); not disturbing it` }
  const unlock = lock()
  if (typeof unlock === "string") return { status: "skipped", reason: unlock }
  const settings = new KsmSettings()
  const uninstall = restoreOnSignal("kernel-ksm", settings, unlock, onAbort)
  try {
    if (existsSync(join(KSM_SYSFS, "advisor_mode")) && readKsm("advisor_mode") !== "none") settings.set("advisor_mode", "none")
    const value = await fn({ set: (name, v) => settings.set(name, v), read: num })
    const settingsBefore = settings.saved()
    return { status: "ok", value, settingsBefore, restoreFailures: settings.restore() }
  } finally {
    settings.restore()
    uninstall()
    unlock()
  }
}

// ------------------------------------------------------------------ measuring

/** One ksmd run from run=1 until pages_sharing reaches the prediction (or the time bound). */
export interface KsmdRun {
  readonly pagesToScan: number
  readonly sleepMillisecs: number
  /** pages_sharing reached the predicted value within the time bound. */
  readonly reached: boolean
  readonly wallSeconds: number
  /** ksmd utime+stime (clock-tick resolution). */
  readonly ksmdCpuSeconds: number
  /** ksmd on-CPU time from schedstat (ns resolution), when available. */
  readonly ksmdSchedSeconds: number | null
  readonly pagesShared: number
  readonly pagesSharing: number
  readonly fullScans: number
  /** pages_sharing / predicted. */
  readonly progress: number
  /** Bytes of region per ksmd CPU-second (decimal GB/s), from the precise CPU figure when available. */
  readonly gbPerCpuSecond: number
}

/** Options of {@link runKernelKsm}. */
export interface KernelKsmOptions {
  /** Region size in bytes. @default 256 MiB */
  readonly sizeBytes?: number
  /** Duplicate fraction. @default 0.5 */
  readonly dup?: number
  /** Distinct duplicate contents. @default 16 */
  readonly contents?: number
  /** max_page_sharing for both sides. @default 256 */
  readonly maxPageSharing?: number
  /** Bound of the full-speed run. @default 60 s */
  readonly fullSpeedTimeoutMs?: number
  /** Also run at the kernel defaults (100 pages / 20 ms). @default true */
  readonly runDefaults?: boolean
  /** Bound of the defaults run. @default 60 s */
  readonly defaultsTimeoutMs?: number
  /** Time sksm's merge(W) in the same run. @default true */
  readonly runSksm?: boolean
  /** merge(W) repetitions (median). @default 5 */
  readonly sksmIterations?: number
  readonly log?: (line: string) => void
  /**
   * Called at every poll of pages_sharing while ksmd runs (about every 1 ms at full speed,
   * 50 ms at the defaults), for a curve of memory saved over time. Keep it cheap: it runs
   * inside the timed loop.
   */
  readonly onSample?: (sample: KsmdSample) => void
}

/** One poll of pages_sharing during a ksmd run (see {@link KernelKsmOptions.onSample}). */
export interface KsmdSample {
  /** Tunables of the run the sample belongs to. */
  readonly pagesToScan: number
  readonly sleepMillisecs: number
  /** Seconds since run=1. */
  readonly seconds: number
  readonly pagesSharing: number
}

/** What {@link runKernelKsm} found. */
export type KernelKsmResult =
  | { readonly status: "skipped"; readonly reason: string }
  | {
      readonly status: "ok"
      readonly sizeBytes: number
      readonly pages: number
      readonly dupPages: number
      readonly expected: { readonly shared: number; readonly sharing: number }
      readonly fullSpeed: KsmdRun
      readonly defaults: KsmdRun | null
      /** sksm's merge(W) on the same workload shape: median and best seconds. */
      readonly sksm: { readonly seconds: number; readonly bestSeconds: number; readonly gbPerSecond: number; readonly pagesShared: number; readonly pagesSharing: number } | null
      /** sksm GB/s over ksmd's GB per CPU-second at full speed. */
      readonly ratio: number | null
      /** Settings as they were before (and are again after) the run. */
      readonly settingsBefore: Record<string, string>
      readonly smartScan: string | null
      /** Settings that could not be restored (empty when all were). */
      readonly restoreFailures: string[]
    }

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const num = (name: string): number => Number(readKsm(name))

async function ksmdRun(settings: KsmSettings, ksmd: number, target: number, pagesToScan: number, sleepMs: number, timeoutMs: number, pollMs: number, onSample?: (s: KsmdSample) => void): Promise<KsmdRun> {
  settings.set("pages_to_scan", pagesToScan)
  settings.set("sleep_millisecs", sleepMs)
  const scans0 = num("full_scans")
  const cpu0 = processCpu(ksmd)
  const t0 = performance.now()
  settings.set("run", 1)
  let reached = false
  let sharing = 0
  for (;;) {
    sharing = num("pages_sharing")
    onSample?.({ pagesToScan, sleepMillisecs: sleepMs, seconds: (performance.now() - t0) / 1e3, pagesSharing: sharing })
    if (sharing >= target) {
      reached = true
      break
    }
    if (performance.now() - t0 > timeoutMs) break
    await sleep(pollMs)
  }
  const wall = (performance.now() - t0) / 1e3
  const cpu1 = processCpu(ksmd)
  writeKsm("run", 0) // stop ksmd burning a core; merged pages stay merged
  const cpu = cpu1.stat - cpu0.stat
  const sched = cpu1.sched !== null && cpu0.sched !== null ? cpu1.sched - cpu0.sched : null
  return {
    pagesToScan,
    sleepMillisecs: sleepMs,
    reached,
    wallSeconds: wall,
    ksmdCpuSeconds: cpu,
    ksmdSchedSeconds: sched,
    pagesShared: num("pages_shared"),
    pagesSharing: sharing,
    fullScans: num("full_scans") - scans0,
    progress: target === 0 ? 1 : sharing / target,
    gbPerCpuSecond: 0, // filled by the caller, which knows the region size
  }
}

/**
 * Run ksmd on workload W at full speed (and at the defaults), and sksm's merge(W), in one
 * run. Never throws for an environment that cannot do it: returns `{ status: "skipped", reason }`.
 * Restores every KSM setting it changed, also on error and on SIGINT/SIGTERM.
 */
export async function runKernelKsm(opts: KernelKsmOptions = {}): Promise<KernelKsmResult> {
  const log = opts.log ?? (() => {})
  const sizeBytes = opts.sizeBytes ?? 256 * MiB
  const dup = opts.dup ?? 0.5
  const contents = opts.contents ?? 16
  const mps = opts.maxPageSharing ?? 256
  const pages = sizeBytes / PAGE
  const expected = expectedCounts(pages, dup, contents, mps)

  const why = kernelKsmUnavailable()
  if (why !== null) return { status: "skipped", reason: why }
  const run0 = readKsm("run")
  const shared0 = num("pages_shared")
  const sharing0 = num("pages_sharing")
  if (run0 !== "0" || shared0 !== 0 || sharing0 !== 0) {
    return { status: "skipped", reason: `KSM is in use on this machine (run=${run0}, pages_shared=${shared0}, pages_sharing=${sharing0}); not disturbing it` }
  }
  const unlock = lock()
  if (typeof unlock === "string") return { status: "skipped", reason: unlock }
  const ksmd = findKsmd()!
  const build = buildHelper()
  if (!build.ok) {
    unlock()
    return { status: "skipped", reason: build.reason }
  }

  const settings = new KsmSettings()
  let helper: Helper | null = null
  // Synchronous on a signal: the helper dies with its stdin pipe; KSM goes back as it was.
  const uninstall = restoreOnSignal("kernel-ksm", settings, unlock, () => {
    if (helper !== null) process.kill(helper.pid, "SIGKILL")
    rmSync(build.dir, { recursive: true, force: true })
  })
  let restoreFailures: string[] = []
  let settingsBefore: Record<string, string> = {}
  try {
    const smartScan = existsSync(join(KSM_SYSFS, "smart_scan")) ? readKsm("smart_scan") : null
    // The advisor would override pages_to_scan; per-node trees would change the prediction.
    if (existsSync(join(KSM_SYSFS, "advisor_mode")) && readKsm("advisor_mode") !== "none") settings.set("advisor_mode", "none")
    const nodes = existsSync("/sys/devices/system/node") ? readdirSync("/sys/devices/system/node").filter((d) => /^node\d+$/.test(d)).length : 1
    if (nodes > 1 && readKsm("merge_across_nodes") === "0") settings.set("merge_across_nodes", 1)
    settings.set("max_page_sharing", mps)
    settings.set("use_zero_pages", 0)

    const runOne = async (pagesToScan: number, sleepMs: number, timeoutMs: number, pollMs: number, seed: number): Promise<KsmdRun> => {
      log(`kernel-ksm: mapping W (${sizeBytes / MiB} MiB) in the helper`)
      helper = await startHelper(build.path, sizeBytes, dup, contents, seed)
      try {
        log(`kernel-ksm: ksmd at pages_to_scan=${pagesToScan} sleep_millisecs=${sleepMs}, until pages_sharing=${expected.sharing} (bound ${timeoutMs / 1e3} s)`)
        const r = await ksmdRun(settings, ksmd, expected.sharing, pagesToScan, sleepMs, timeoutMs, pollMs, opts.onSample)
        const cpu = r.ksmdSchedSeconds ?? r.ksmdCpuSeconds
        return { ...r, gbPerCpuSecond: r.reached && cpu > 0 ? sizeBytes / GB / cpu : 0 }
      } finally {
        await helper.stop()
        helper = null
        settings.set("run", 2) // unmerge whatever is left before the next run
      }
    }

    const fullSpeed = await runOne(100000, 0, opts.fullSpeedTimeoutMs ?? 60_000, 1, 1)
    const defaults = (opts.runDefaults ?? true) ? await runOne(100, 20, opts.defaultsTimeoutMs ?? 60_000, 50, 2) : null
    settingsBefore = settings.saved()
    restoreFailures = settings.restore()

    let sksm: (KernelKsmResult & { status: "ok" })["sksm"] = null
    if (opts.runSksm ?? true) {
      log(`kernel-ksm: sksm merge(W), ${sizeBytes / MiB} MiB`)
      const t = await timeMerge({ kind: "W", sizeBytes, dup, contents }, opts.sksmIterations ?? 5)
      sksm = { seconds: t.seconds, bestSeconds: t.bestSeconds, gbPerSecond: t.gbPerSecond, pagesShared: t.pagesShared, pagesSharing: t.pagesSharing }
    }
    const ratio = sksm !== null && fullSpeed.gbPerCpuSecond > 0 ? sksm.gbPerSecond / fullSpeed.gbPerCpuSecond : null
    return { status: "ok", sizeBytes, pages, dupPages: Math.round(pages * dup), expected, fullSpeed, defaults, sksm, ratio, settingsBefore, smartScan, restoreFailures }
  } finally {
    // Restore is idempotent: after the normal path above it has nothing left to do.
    const late = settings.restore()
    if (late.length > 0) restoreFailures.push(...late)
    uninstall()
    unlock()
    rmSync(build.dir, { recursive: true, force: true })
  }
}

// ------------------------------------------------------------------ the bench module

function runCells(r: KsmdRun | null): string[] {
  if (r === null) return ["not run", "", "", "", ""]
  const cpu = r.ksmdSchedSeconds !== null ? `${fmt(r.ksmdSchedSeconds)} s (stat ${fmt(r.ksmdCpuSeconds)} s)` : `${fmt(r.ksmdCpuSeconds)} s`
  return [
    r.reached ? `${fmt(r.wallSeconds)} s` : `not reached in ${fmt(r.wallSeconds)} s (${fmt(r.progress * 100)}% of pages_sharing)`,
    cpu,
    r.reached ? `${fmt(r.gbPerCpuSecond)} GB/s` : "",
    `${r.pagesShared} / ${r.pagesSharing}`,
    String(r.fullScans),
  ]
}

export const kernelKsm: BenchModule = {
  name: "kernel-ksm",
  description: "issue 3: the kernel's ksmd on workload W next to sksm's merge(W), same run",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const sizeBytes = opts.quick ? 64 * MiB : 256 * MiB
    const r = await runKernelKsm({
      sizeBytes,
      defaultsTimeoutMs: opts.quick ? 30_000 : 60_000,
      sksmIterations: opts.quick ? 3 : 5,
      log: opts.log,
    })
    if (r.status === "skipped") return { rows: [], notes: [`Skipped: ${r.reason}.`] }
    const mb = sizeBytes / MiB
    const f = r.fullSpeed
    const rows: BenchRow[] = [
      { name: `ksmd full speed (100000/0), ${mb} MiB W: wall to full merge`, value: f.wallSeconds, unit: "s", detail: f.reached ? `pages_sharing ${f.pagesSharing}` : `not reached: ${fmt(f.progress * 100)}%` },
      { name: "ksmd full speed: ksmd CPU", value: f.ksmdSchedSeconds ?? f.ksmdCpuSeconds, unit: "s", detail: `utime+stime ${fmt(f.ksmdCpuSeconds)} s` },
      { name: "ksmd full speed: region merged per ksmd CPU-second", value: f.gbPerCpuSecond, unit: "GB/s" },
    ]
    if (r.defaults !== null) {
      const d = r.defaults
      rows.push({
        name: `ksmd defaults (100/20): wall ${d.reached ? "to full merge" : "until the time bound"}`,
        value: d.wallSeconds,
        unit: "s",
        detail: `${d.reached ? "reached" : `reached ${fmt(d.progress * 100)}% of pages_sharing`}; ksmd CPU ${fmt(d.ksmdSchedSeconds ?? d.ksmdCpuSeconds)} s; ${d.fullScans} full scans`,
      })
    }
    if (r.sksm !== null) {
      rows.push({ name: `sksm merge(W), ${mb} MiB, one core`, value: r.sksm.gbPerSecond, unit: "GB/s", detail: `${fmt(r.sksm.seconds * 1e3)} ms (median; best ${fmt(sizeBytes / GB / r.sksm.bestSeconds)} GB/s); pagesShared ${r.sksm.pagesShared}, pagesSharing ${r.sksm.pagesSharing}` })
    }
    if (r.ratio !== null) {
      rows.push({ name: "sksm merge(W) / ksmd, per CPU-second", value: r.ratio, unit: "x", goal: { op: ">=", target: 2 }, detail: "issue 3: twice the kernel's ksmd throughput" })
    }
    const header = "| | ksmd 100000 pages / 0 ms | ksmd defaults 100 / 20 ms | sksm merge(W) |"
    const s = r.sksm
    const cells = [runCells(r.fullSpeed), runCells(r.defaults)]
    const line = (label: string, i: number, sk: string): string => `| ${label} | ${cells[0]![i]} | ${cells[1]![i]} | ${sk} |`
    const table = [
      header,
      "|---|---|---|---|",
      line("wall to full merge", 0, s !== null ? `${fmt(s.seconds)} s` : ""),
      line("CPU", 1, s !== null ? `${fmt(s.seconds)} s (wall; merge() is single-threaded)` : ""),
      line("region merged per CPU-second", 2, s !== null ? `${fmt(s.gbPerSecond)} GB/s` : ""),
      line("pages_shared / pages_sharing", 3, s !== null ? `${s.pagesShared} / ${s.pagesSharing}` : ""),
      line("full scans", 4, "1 call"),
    ].join("\n")
    const notes = [
      `Workload W: ${mb} MiB anonymous private (MADV_NOHUGEPAGE), first half ${16} distinct contents repeated, second half random unique; ` +
        `max_page_sharing 256, use_zero_pages 0, smart_scan ${r.smartScan ?? "n/a"}. Target pages_shared ${r.expected.shared}, pages_sharing ${r.expected.sharing} (the max_page_sharing rule).`,
      table,
      `KSM settings before the run (restored afterwards, after run=2): ${Object.entries(r.settingsBefore).map(([k, v]) => `${k}=${v}`).join(", ")}.` +
        (r.restoreFailures.length > 0 ? ` **Could not restore: ${r.restoreFailures.join("; ")}**` : " All restored."),
    ]
    return { rows, notes }
  },
}
