/**
 * Issue 16's benchmarks: the worker scanner (`sksm/worker`: hashing on a worker thread over a
 * shared frame store) next to the in-thread scanner, on the same engine kind
 * (`sharedMemory: true` for both, same seed, so only the scanner differs).
 *
 * 1. Host-thread CPU per merged page, worker vs in-thread, policy "ksm", on W and on real memory
 *    (v86-booted 4 x 128 MiB, QuickJS 4 x 16 MiB), at full speed (pagesToScan 10000, sleep 0) and
 *    at the kernel defaults (100 / 20 ms) on scaled-down sets (W 16 MiB, and every 32nd page of
 *    each v86 guest / every 4th page of each QuickJS heap: 16 MiB each), each run until converged
 *    (pagesSharing + ksmZeroPages unchanged over two full scans), then 400 ms more for the store's
 *    background shrink. Host CPU = the main thread's
 *    own on-CPU time (/proc/self/task/<pid>/schedstat), not the process's (which includes the
 *    hashing thread and V8's helpers); the worker's = the threads that appeared when it started.
 *    Goal: worker-mode host CPU per merged page ≤ 20% of the in-thread figure.
 * 2. The host's latency while scanning: a host loop of random readU32/writeU32 over a space of
 *    the same engine, yielding to the event loop (setImmediate) after every batch, as a
 *    cooperating host does; p50 / p99 / max of one iteration (batch + yield), with no scanner,
 *    the in-thread scanner and the worker scanner at full speed on W.
 * 3. Wall time to converge: both modes and the kernel's ksmd (bench/kernel-real.ts, full speed
 *    100000 / 0, use_zero_pages 1, max_page_sharing 256) on the same W bytes and v86 images.
 * 4. Equality: the final engine.stats() of the two modes on the same contents must be equal.
 *
 * Each mode's converge runs happen in processes of its own (bench/worker-scanner-host.ts: a host
 * runs one mode, and one process running both slowed the worker mode through V8's shared code
 * paths), two per mode in the order in-thread, worker, worker, in-thread, each a long-lived loop
 * over every subject; medians are reported. The latency runs (2) share this process. The machine has few cores: the hashing thread
 * and the host share them (the notes say how many and the load).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync } from "node:fs"
import { cpus, loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { cachedWorkloads, loadImages, type Manifest, workloadDir } from "../scripts/workloads/cache.ts"
import { startWorkerScanner, type WorkerScanner } from "../src/worker/index.ts"
import type { ScanReport } from "../src/policy/options.ts"
import { Engine, type Scanner } from "../test/helpers/internals.ts"
import { kernelOnImages, type KsmdConvergence } from "./kernel-real.ts"
import { type BenchModule, type BenchOptions, type BenchResult, type BenchRow, childNodeArgs, collectGarbage, fmt, median, MiB, PAGE } from "./lib.ts"
import type { HostJob, HostReply } from "./worker-scanner-host.ts"
import { imageW } from "./workload.ts"
import { xorshift32 } from "./xorshift.ts"

const FULL = { pagesToScan: 10000, sleepMillis: 0 } as const
const DEFAULTS = { pagesToScan: 100, sleepMillis: 20 } as const
export type Tunables = { readonly pagesToScan: number; readonly sleepMillis: number }
export type Mode = "in-thread" | "worker"
const MODES: readonly Mode[] = ["in-thread", "worker"]
const SEED = 0x5eed
/** Quiet time after convergence, counted in the CPU figures: the background shrink (and its prefault wait) completes. */
const SHRINK_SETTLE_MS = 400
const ENGINE = { sharedMemory: true, maxPageSharing: 256, useZeroPages: true, seed: SEED } as const

/** Memory to merge: images, one space each. */
interface Subject {
  readonly name: string
  readonly images: readonly Uint8Array[]
  readonly files?: readonly string[]
  /** How a mode's own process (bench/worker-scanner-host.ts) builds the same subject. */
  readonly spec: SubjectSpec
}

/** A subject as plain data: W of a size, a cached real workload, or every `stride`-th page of one. */
export type SubjectSpec = { readonly kind: "W"; readonly bytes: number } | { readonly kind: "real"; readonly name: string; readonly stride?: number; readonly label?: string }

/** Build the subject `spec` describes (a mode's process builds its own copy of the parent's). */
export function subjectFrom(spec: SubjectSpec): Subject {
  if (spec.kind === "W") return subjectW(spec.bytes)
  const m = cachedWorkloads().find((x) => x.name === spec.name)
  if (m === undefined) throw new Error(`${spec.name} is not cached`)
  const s = subjectOf(m)
  return spec.stride === undefined ? s : strided(s, spec.stride, spec.label ?? s.name)
}

const HOST = new URL("./worker-scanner-host.ts", import.meta.url).pathname

/**
 * Run `jobs` in a fresh process of `mode` (bench/worker-scanner-host.ts): its measured runs, per
 * job. The process runs them in one loop and exits.
 */
function runModeProcess(mode: Mode, jobs: readonly HostJob[]): Promise<ConvergeRun[][]> {
  const child = spawn(process.execPath, [...childNodeArgs(), HOST, mode], { stdio: ["ignore", "inherit", "inherit", "ipc"], env: { ...process.env, SKSM_WS_JOBS: JSON.stringify(jobs) } })
  // However this module ends (a failed run throws): no process left behind.
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  }
  process.once("exit", kill)
  return new Promise((resolve, reject) => {
    let answered = false
    child.on("message", (r: HostReply) => {
      answered = true
      if (r.ok) resolve(r.runs!)
      else reject(new Error(`the ${mode} process: ${r.error}`))
    })
    child.on("exit", (code, sig) => {
      process.off("exit", kill)
      if (!answered) reject(new Error(`the ${mode} process exited (${sig ?? code}) without its runs`))
    })
  })
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const turn = (): Promise<void> => new Promise((r) => setImmediate(r))
const PID = process.pid

/** On-CPU seconds of thread `tid` of this process (schedstat), NaN once it is gone. */
function threadCpu(tid: number): number {
  try {
    return Number(readFileSync(`/proc/self/task/${tid}/schedstat`, "utf8").split(" ")[0]) / 1e9
  } catch {
    return Number.NaN
  }
}
const statBuf = Buffer.alloc(64)
let mainFd = -1
/**
 * On-CPU seconds of the main thread: its schedstat read through one open descriptor (pread at
 * 0, ~1 µs; readFileSync costs ~8 µs), cheap enough to read around every batch.
 */
function mainCpu(): number {
  if (mainFd < 0) mainFd = openSync(`/proc/self/task/${PID}/schedstat`, "r")
  const n = readSync(mainFd, statBuf, 0, statBuf.length, 0)
  let x = 0
  for (let i = 0; i < n; i++) {
    const c = statBuf[i]!
    if (c < 48 || c > 57) break
    x = x * 10 + (c - 48)
  }
  return x / 1e9
}
const tids = (): number[] => readdirSync("/proc/self/task").map(Number)
const processCpu = (): number => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

/** A full GC (the previous run's engine and its hundreds of MiB), then a quiet moment. */
async function quiesce(): Promise<void> {
  collectGarbage()
  await sleep(150)
}

/** A fresh engine with the subject written into mergeable spaces (untimed). */
function prepare(s: Subject): Engine {
  const engine = new Engine(ENGINE)
  for (const img of s.images) {
    const sp = engine.createSpace({ size: img.length })
    sp.write(0, img)
    sp.advise(0, img.length, "mergeable")
  }
  return engine
}

interface Started {
  readonly scanner: Scanner | WorkerScanner
  /** Threads that appeared when the scanner started (the hashing thread's). */
  readonly threads: number[]
}

/**
 * Make the scanner of `mode`, not started. `warm`: wait until the hashing thread has loaded its
 * modules and gone idle (its CPU time unchanged for 100 ms, at most 3 s): startWorkerScanner
 * resolves before the thread can hash, and batches in between wait for it (see the notes).
 * Callers collect garbage before, not after: collecting it here (lib.ts's collectGarbage, whose
 * first call makes a new vm context) between starting the worker scanner and its run doubled the
 * worker's host CPU per merged page on QuickJS heaps for every later run of the process
 * (1,000-1,250 vs 430-540 ns; the mechanism is not pinned; a host does not do that there).
 */
async function makeScanner(engine: Engine, mode: Mode, t: Tunables, warm = true): Promise<Started> {
  const before = new Set(tids())
  const scanner = mode === "worker" ? await startWorkerScanner(engine, { policy: "ksm", ...t, fallback: false }) : engine.scanner({ policy: "ksm", ...t })
  const threads = (): number[] => tids().filter((x) => !before.has(x))
  if (!warm) return { scanner, threads: threads() }
  if (mode === "worker") {
    const cpuOf = (): number => threads().reduce((a, x) => a + (threadCpu(x) || 0), 0)
    let last = cpuOf()
    for (let waited = 0; waited < 3000; waited += 100) {
      await sleep(100)
      const now = cpuOf()
      if (now === last && threads().length > 0) break
      last = now
    }
    if ((scanner as WorkerScanner).threadError !== undefined) throw new Error(`the hashing thread died: ${String((scanner as WorkerScanner).threadError)}`)
  }
  return { scanner, threads: threads() }
}

/** Close a scanner; for the worker, check its threads are gone (a leak is reported, not hidden). */
async function closeScanner(st: Started): Promise<string[]> {
  if ("close" in st.scanner) await st.scanner.close()
  else await st.scanner.stop()
  await sleep(50)
  const alive = new Set(tids())
  return st.threads.filter((t) => alive.has(t)).map(String)
}

/** One run to convergence (or the bound). */
export interface ConvergeRun {
  readonly mode: Mode
  readonly converged: boolean
  /** Seconds from start() until merged (pagesSharing + ksmZeroPages) last changed. */
  readonly wallToConverge: number
  /** Seconds from start() until convergence was seen (two unchanged full scans), or the bound. */
  readonly wall: number
  readonly mainCpu: number
  /** Main-thread CPU inside the loop's batches (tick()); the rest is the event loop between them. */
  readonly batchCpu: number
  readonly processCpu: number
  readonly workerCpu: number
  readonly merged: number
  readonly batches: number
  readonly waited: number
  readonly hostHashes: number
  readonly stats: Counters
  readonly leaked: string[]
}

type Counters = { pagesShared: number; pagesSharing: number; ksmZeroPages: number; pagesUnshared: number; pagesVolatile: number; fullScans: number }
const COUNTER_KEYS = ["pagesShared", "pagesSharing", "ksmZeroPages", "pagesUnshared", "pagesVolatile", "fullScans"] as const

/**
 * Scan `s` with `mode` until merged stayed put for two full scans (checked at every pass end,
 * inside the loop's own tick, so the run stops at a pass boundary) or `capMs` passes.
 */
export async function converge(s: Subject, mode: Mode, t: Tunables, capMs: number, warm = true): Promise<ConvergeRun> {
  const engine = prepare(s)
  await quiesce()
  const st = await makeScanner(engine, mode, t, warm)
  // The engine's scanner object: start()'s loop calls its tick(), so an own property observes every batch.
  const inner = engine.core.scan as unknown as Scanner & { hostHashes?: number }
  const tick = inner.tick.bind(inner)
  const core = engine.core
  const pool = engine.pool
  const atPassEnd: number[] = []
  let last = -1
  let lastChange = 0
  let batches = 0
  let waited = 0
  let batchCpu = 0
  let t0 = 0
  let end: { wall: number; main: number; proc: number; worker: number[]; converged: boolean } | null = null
  let finish: () => void = () => {}
  const done = new Promise<void>((r) => (finish = r))
  const w0: number[] = []
  let m0 = 0
  let p0 = 0
  const settle = (converged: boolean): void => {
    if (end !== null) return
    end = { wall: (performance.now() - t0) / 1e3, main: mainCpu() - m0, proc: processCpu() - p0, worker: st.threads.map(threadCpu), converged }
    void inner.stop()
    finish()
  }
  inner.tick = (): ScanReport => {
    const c0 = mainCpu()
    const r = tick()
    batchCpu += mainCpu() - c0
    batches++
    if (r.waited) waited++
    const v = core.pagesSharing + pool.ksmZeroPages
    if (v !== last) {
      last = v
      lastChange = performance.now()
    }
    if (r.fullScan) {
      atPassEnd.push(v)
      const n = atPassEnd.length
      if (n >= 3 && atPassEnd[n - 1] === atPassEnd[n - 2] && atPassEnd[n - 2] === atPassEnd[n - 3]) settle(true)
    }
    return r
  }
  for (const th of st.threads) w0.push(threadCpu(th))
  m0 = mainCpu()
  p0 = processCpu()
  t0 = lastChange = performance.now()
  st.scanner.start()
  const cap = setTimeout(() => settle(false), capMs)
  await done
  clearTimeout(cap)
  // The store's shrink after merging runs in the background (with the worker once its thread has
  // prefaulted the smaller store, up to 250 ms): let it finish inside the measured CPU, in both modes.
  await sleep(SHRINK_SETTLE_MS)
  const settled = { main: mainCpu() - m0, proc: processCpu() - p0, worker: st.threads.map(threadCpu) }
  const e = { ...end!, ...settled }
  await st.scanner.stop() // rethrows a loop error
  const leaked = await closeScanner(st)
  const stats = engine.stats()
  const counters = Object.fromEntries(COUNTER_KEYS.map((k) => [k, stats[k]])) as Counters
  for (const sp of engine.spaces()) sp.dispose()
  return {
    mode,
    converged: e.converged,
    wallToConverge: (lastChange - t0) / 1e3,
    wall: e.wall,
    mainCpu: e.main,
    batchCpu,
    processCpu: e.proc,
    workerCpu: e.worker.reduce((a, x, i) => a + (Number.isNaN(x) ? 0 : x - w0[i]!), 0),
    merged: stats.pagesSharing + stats.ksmZeroPages,
    batches,
    waited,
    hostHashes: inner.hostHashes ?? 0,
    stats: counters,
    leaked,
  }
}

/** Every `stride`-th page of each image: a smaller set with the same mix of zero, shared and unique pages. */
function strided(s: Subject, stride: number, name: string): Subject {
  return {
    name,
    spec: { kind: "real", name: s.spec.kind === "real" ? s.spec.name : s.name, stride, label: name },
    images: s.images.map((img) => {
      const pages = Math.floor(img.length / PAGE / stride)
      const out = new Uint8Array(pages * PAGE)
      for (let p = 0; p < pages; p++) out.set(img.subarray(p * stride * PAGE, (p * stride + 1) * PAGE), p * PAGE)
      return out
    }),
  }
}

/** Workload W (first half 16 contents repeated, second half random) as one image. */
function subjectW(sizeBytes: number): Subject {
  return { name: `W ${sizeBytes / MiB} MiB`, images: [imageW(sizeBytes)], spec: { kind: "W", bytes: sizeBytes } }
}

function subjectOf(m: Manifest): Subject {
  return { name: m.name, images: loadImages(m), files: m.instances.map((i) => join(workloadDir(m.name), i.file)), spec: { kind: "real", name: m.name } }
}

const mibOf = (s: Subject): number => s.images.reduce((a, b) => a + b.length, 0) / MiB
const counterText = (c: Counters): string => COUNTER_KEYS.map((k) => `${k} ${c[k]}`).join(", ")
const sameCounters = (a: Counters, b: Counters): boolean => COUNTER_KEYS.every((k) => a[k] === b[k])

/** Latency of the host's own loop: iteration times (ms) over `ms`, with the given scanner running. */
async function hostLoop(s: Subject, scanner: Mode | "none", ms: number, accesses: number): Promise<{ times: number[]; converged: boolean; mainCpu: number; leaked: string[]; longestBatch: number; batches: number; hostHashes: number }> {
  const engine = prepare(s)
  const hostBytes = 16 * MiB
  const host = engine.createSpace({ size: hostBytes, name: "host" })
  host.fill(0, hostBytes, 1)
  await quiesce()
  const st = scanner === "none" ? null : await makeScanner(engine, scanner, FULL)
  let longestBatch = 0
  let batches = 0
  if (st !== null) {
    const inner = engine.core.scan as unknown as Scanner
    const tick = inner.tick.bind(inner)
    inner.tick = (): ScanReport => {
      const t = performance.now()
      const r = tick()
      longestBatch = Math.max(longestBatch, performance.now() - t)
      batches++
      return r
    }
  }
  const rnd = xorshift32(12345)
  const words = hostBytes >>> 2
  const times: number[] = []
  let x = 0
  // Warm the loop up (JIT) before timing.
  for (let i = 0; i < 200; i++) for (let k = 0; k < accesses; k++) x ^= host.readU32(((rnd() >>> 0) % words) << 2)
  const m0 = mainCpu()
  st?.scanner.start()
  const t0 = performance.now()
  let prev = t0
  while (prev - t0 < ms) {
    for (let k = 0; k < accesses; k++) {
      const a = ((rnd() >>> 0) % words) << 2
      if ((k & 1) === 0) x ^= host.readU32(a)
      else host.writeU32(a, x + k)
    }
    await turn()
    const now = performance.now()
    times.push(now - prev)
    prev = now
  }
  const cpu = mainCpu() - m0
  const target = engine.stats()
  const hostHashes = st === null ? 0 : ((engine.core.scan as unknown as { hostHashes?: number } | null)?.hostHashes ?? 0)
  const leaked = st === null ? [] : await closeScanner(st)
  if (x === 0x7fffffff) process.stderr.write("") // keep x alive
  for (const sp of engine.spaces()) sp.dispose()
  return { times, converged: target.pagesSharing > 0, mainCpu: cpu, leaked, longestBatch, batches, hostHashes }
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}

export const workerScanner: BenchModule = {
  name: "worker-scanner",
  description: "issue 16: the worker scanner (hashing on a worker thread) vs the in-thread scanner: host-thread CPU per merged page, host latency while scanning, time to converge (and ksmd's), equal counters",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const q = opts.quick
    const rows: BenchRow[] = []
    const notes: string[] = []
    const problems: string[] = []
    const rounds = q ? 1 : 3
    const capMs = q ? 20_000 : 30_000
    notes.push(`Machine: ${cpus().length} logical CPU(s), load average ${loadavg().map((x) => fmt(x)).join(" / ")} (1/5/15 min) when the bench started; the hashing thread and the host's main thread compete for these CPUs (with V8's helpers and anything else running).`)

    // ---- subjects
    const manifests = cachedWorkloads()
    const byName = (n: string): Manifest | undefined => manifests.find((m) => m.name === n)
    const wFull = subjectW(q ? 32 * MiB : 256 * MiB)
    const real: Subject[] = []
    for (const n of q ? ["quickjs"] : ["v86-booted", "quickjs"]) {
      const m = byName(n)
      if (m === undefined) notes.push(`${n} is not cached (SKSM_WORKLOADS_DIR or \`npx tsx scripts/workloads.ts\`): not measured.`)
      else real.push(subjectOf(m))
    }
    const wSmall = subjectW(q ? 4 * MiB : 16 * MiB)
    const smallReal = real.map((s) => (s.name === "v86-booted" ? strided(s, q ? 128 : 32, `v86-booted, 1 page in ${q ? 128 : 32}`) : strided(s, q ? 16 : 4, `${s.name}, 1 page in ${q ? 16 : 4}`)))

    // ---- 3 (kernel part first: it needs the images on disk and a quiet KSM)
    let kernel: Map<string, KsmdConvergence> = new Map()
    if (q) notes.push("Quick mode: the kernel's ksmd is not run.")
    else {
      const tmp = mkdtempSync(join(tmpdir(), "sksm-ws-"))
      try {
        const wFile = join(tmp, "W.bin")
        writeFileSync(wFile, wFull.images[0]!)
        const sets = [{ label: wFull.name, files: [wFile] }, ...real.filter((s) => s.name === "v86-booted").map((s) => ({ label: s.name, files: s.files! }))]
        opts.log(`worker-scanner: the kernel's ksmd on ${sets.map((x) => x.label).join(", ")} (kernel-real harness, full speed)`)
        const k = await kernelOnImages(sets, { log: opts.log, timeoutMs: 60_000 })
        if (k.status === "skipped") notes.push(`The kernel's ksmd was not run: ${k.reason}.`)
        else {
          kernel = new Map(k.runs.map((r) => [r.label, r]))
          if (k.restoreFailures.length > 0) problems.push(`KSM settings not restored: ${k.restoreFailures.join("; ")}`)
        }
      } finally {
        rmSync(tmp, { recursive: true, force: true })
      }
    }

    // ---- 1, 3, 4: converge runs, each mode in processes of its own (worker-scanner-host.ts), alternating
    const cpuTable = ["| workload | speed | mode | host (main thread) CPU (in batches) | per merged page | worker thread CPU | process CPU | wall to converge (seen) | merged | batches (waited) | host hashes | final counters |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    const converges = new Map<string, ConvergeRun[]>()
    const plan: { s: Subject; t: Tunables; speed: string; rounds: number }[] = [
      { s: wFull, t: FULL, speed: "full", rounds },
      ...real.map((s) => ({ s, t: FULL, speed: "full", rounds })),
      { s: wSmall, t: DEFAULTS, speed: "defaults", rounds: q ? 1 : 2 },
      ...smallReal.map((s) => ({ s, t: DEFAULTS, speed: "defaults", rounds: q ? 1 : 2 })),
    ]
    const keyOf = (p: (typeof plan)[number]): string => `${p.s.name} (${fmt(mibOf(p.s))} MiB) @ ${p.speed} ${p.t.pagesToScan}/${p.t.sleepMillis}`
    // Two processes per mode, in the order in-thread, worker, worker, in-thread (quick: one each);
    // each runs half the rounds, after one unmeasured run of each full-speed subject (its JIT warm-up).
    const order: Mode[] = q ? ["in-thread", "worker"] : ["in-thread", "worker", "worker", "in-thread"]
    const share = q ? 1 : 2
    const coldRuns = q ? 1 : 2
    const jobs: HostJob[] = [
      ...plan.map((p) => ({ spec: p.s.spec, t: p.t, capMs, warm: true, warmup: p.speed === "full" ? 1 : 0, runs: Math.max(1, Math.ceil(p.rounds / share)) })),
      // Cold start: start() right after startWorkerScanner resolves (what its doc example does).
      { spec: wFull.spec, t: FULL, capMs, warm: false, warmup: 0, runs: Math.ceil(coldRuns / share), modes: ["worker"] as Mode[] },
    ]
    const cold: ConvergeRun[] = []
    for (const [i, mode] of order.entries()) {
      opts.log(`worker-scanner: ${mode} process ${i + 1}/${order.length}: ${plan.map(keyOf).join("; ")}`)
      const out = await runModeProcess(mode, jobs)
      plan.forEach((p, j) => {
        const key = keyOf(p)
        const list = converges.get(`${key}|${mode}`) ?? []
        for (const run of out[j]!) {
          list.push(run)
          cpuTable.push(
            `| ${p.s.name} (${fmt(mibOf(p.s))} MiB) | ${p.speed} | ${mode} | ${fmt(run.mainCpu * 1e3)} ms (${fmt(run.batchCpu * 1e3)} ms) | ${fmt((run.mainCpu * 1e9) / Math.max(1, run.merged))} ns | ${mode === "worker" ? `${fmt(run.workerCpu * 1e3)} ms` : "-"} | ${fmt(run.processCpu * 1e3)} ms | ${fmt(run.wallToConverge)} s (${fmt(run.wall)} s)${run.converged ? "" : " **bound**"} | ${run.merged} | ${run.batches} (${run.waited}) | ${run.hostHashes} | ${counterText(run.stats)} |`,
          )
          if (run.leaked.length > 0) problems.push(`${key}, ${mode}: threads still alive after close(): ${run.leaked.join(", ")}`)
        }
        converges.set(`${key}|${mode}`, list)
      })
      cold.push(...out[plan.length]!)
    }
    for (const p of plan) {
      const key = keyOf(p)
      const ins = converges.get(`${key}|in-thread`)!
      const wks = converges.get(`${key}|worker`)!
      const perPage = (xs: ConvergeRun[]): number => median(xs.map((x) => (x.mainCpu * 1e9) / Math.max(1, x.merged)))
      const a = perPage(ins)
      const b = perPage(wks)
      const inBatches = (xs: ConvergeRun[]): number => median(xs.map((x) => (x.batchCpu * 1e9) / Math.max(1, x.merged)))
      rows.push({
        name: `host CPU per merged page, worker / in-thread: ${key}`,
        value: b / a,
        unit: "x",
        goal: { op: "<=", target: 0.2 },
        detail: `worker ${fmt(b)} ns, in-thread ${fmt(a)} ns (main thread schedstat, medians of ${wks.length} and ${ins.length} runs); inside batches only: worker ${fmt(inBatches(wks))} ns, in-thread ${fmt(inBatches(ins))} ns (${fmt(inBatches(wks) / inBatches(ins))} x); worker thread ${fmt(median(wks.map((x) => (x.workerCpu * 1e9) / Math.max(1, x.merged))))} ns per merged page`,
      })
      rows.push({
        name: `wall to converge, worker / in-thread: ${key}`,
        value: median(wks.map((x) => x.wallToConverge)) / median(ins.map((x) => x.wallToConverge)),
        unit: "x",
        detail: `worker ${fmt(median(wks.map((x) => x.wallToConverge)))} s, in-thread ${fmt(median(ins.map((x) => x.wallToConverge)))} s (until merged last changed; medians)`,
      })
      // 4: equality, round by round
      let unequal = 0
      const diffs: string[] = []
      for (let r = 0; r < Math.min(ins.length, wks.length); r++) {
        if (!sameCounters(ins[r]!.stats, wks[r]!.stats)) {
          unequal++
          diffs.push(`round ${r + 1}: in-thread ${counterText(ins[r]!.stats)}; worker ${counterText(wks[r]!.stats)}`)
        }
      }
      rows.push({
        name: `final counters differ, worker vs in-thread: ${key}`,
        value: unequal,
        unit: "rounds",
        goal: { op: "<=", target: 0 },
        detail: unequal === 0 ? `equal in every round: ${counterText(ins[0]!.stats)}` : `**DIFFERENT**: ${diffs.join(" | ")}`,
      })
      if (unequal > 0) problems.push(`counters differ on ${key}: ${diffs.join(" | ")}`)
      const k = p.speed === "full" ? kernel.get(p.s.name) : undefined
      if (k !== undefined) {
        rows.push({
          name: `wall to converge, worker / ksmd: ${key}`,
          value: median(wks.map((x) => x.wallToConverge)) / k.wallToConverge,
          unit: "x",
          detail: `ksmd ${fmt(k.wallToConverge)} s (pages_to_scan 100000, sleep 0; CPU ${fmt(k.cpuToConverge)} s; ${k.fullScans} scans; ${k.converged ? "converged" : "DID NOT CONVERGE"}; counters ${k.pagesShared} / ${k.pagesSharing} / ${k.ksmZeroPages}); worker ${fmt(median(wks.map((x) => x.wallToConverge)))} s, in-thread ${fmt(median(ins.map((x) => x.wallToConverge)))} s`,
        })
        const kd = Math.abs(k.pagesShared - wks[0]!.stats.pagesShared) + Math.abs(k.pagesSharing - wks[0]!.stats.pagesSharing) + Math.abs(k.ksmZeroPages - wks[0]!.stats.ksmZeroPages)
        rows.push({ name: `counters vs the kernel's: ${key}, worker`, value: kd, unit: "pages off", goal: { op: "<=", target: 0 }, detail: `kernel ${k.pagesShared} / ${k.pagesSharing} / ${k.ksmZeroPages}; worker ${wks[0]!.stats.pagesShared} / ${wks[0]!.stats.pagesSharing} / ${wks[0]!.stats.ksmZeroPages}` })
      }
    }
    const coldMedian = median(cold.map((x) => x.hostHashes))
    rows.push({
      name: `cold start (start() as soon as startWorkerScanner resolves): pages hashed on the host, ${wFull.name} @ full ${FULL.pagesToScan}/${FULL.sleepMillis}`,
      value: coldMedian,
      unit: "pages",
      detail: `per run: ${cold.map((x) => `${x.hostHashes} pages hashed on the host, host CPU ${fmt(x.mainCpu * 1e3)} ms (${fmt((x.mainCpu * 1e9) / Math.max(1, x.merged))} ns per merged page), wall to converge ${fmt(x.wallToConverge)} s`).join("; ")}. The warm runs above wait until the thread has loaded and gone idle first; 0 there`,
    })
    notes.push(
      `Every run: policy ksm, engine { sharedMemory: true, maxPageSharing: 256, useZeroPages: true, seed ${SEED} }, one space per image, the real start() loop, ` +
        `stopped at the first pass end where pagesSharing + ksmZeroPages ("merged") had not changed over two full scans. Host CPU = the main thread's schedstat from start() to that moment plus ${SHRINK_SETTLE_MS} ms ` +
        `after it (the loop's batches, its event-loop turns and the store's background shrink after merging, which with the worker waits for the thread to fill the smaller store; nothing else runs on the main thread meanwhile); worker thread CPU = schedstat of the threads that appeared when startWorkerScanner ran; ` +
        `process CPU = process.cpuUsage() (all threads, V8's GC and compiler helpers included). "Wall to converge" = until merged last changed; in parentheses until convergence was seen. ` +
        `Each mode runs in processes of its own (bench/worker-scanner-host.ts: a host runs one mode, and a process running both slowed the worker mode through V8's shared code paths), ` +
        `${order.length} processes in the order ${order.join(", ")}, each a long-lived loop over every subject (one unmeasured run of each full-speed subject first, its JIT warm-up, then its share of the runs). ` +
        `Full speed = ${FULL.pagesToScan} pages / ${FULL.sleepMillis} ms, ${rounds} round(s) per process pair; kernel defaults = ${DEFAULTS.pagesToScan} / ${DEFAULTS.sleepMillis} ms on scaled-down sets ` +
        `(a full pass of 512 MiB at 5000 pages/s takes 26 s and merging needs several). Every measured run, in the order they ran:`,
    )
    notes.push(cpuTable.join("\n"))

    // ---- 2: host latency
    const latMs = q ? 1_000 : 2_500
    const accesses = 4096
    const latRounds = q ? 1 : 2
    const lat = new Map<string, number[][]>()
    const latCpu = new Map<string, number[]>()
    const latBatch = new Map<string, { longest: number; batches: number; hostHashes: number }[]>()
    for (let r = 0; r < latRounds; r++) {
      for (const c of ["none", "in-thread", "worker"] as const) {
        opts.log(`worker-scanner: host latency, scanner ${c}, round ${r + 1}/${latRounds}`)
        const h = await hostLoop(wFull, c, latMs, accesses)
        lat.set(c, [...(lat.get(c) ?? []), h.times])
        latCpu.set(c, [...(latCpu.get(c) ?? []), h.mainCpu])
        latBatch.set(c, [...(latBatch.get(c) ?? []), { longest: h.longestBatch, batches: h.batches, hostHashes: h.hostHashes }])
        if (h.leaked.length > 0) problems.push(`host latency, ${c}: threads still alive after close(): ${h.leaked.join(", ")}`)
      }
    }
    const latTable = ["| scanner | iterations | p50 | p99 | max | main thread CPU over the window | per round: scanner batches, longest batch (wall), pages the host hashed |", "|---|---|---|---|---|---|---|"]
    const p99s = new Map<string, number>()
    for (const [c, runs] of lat) {
      const all = runs.flat().sort((a, b) => a - b)
      const p99 = median(runs.map((t) => percentile([...t].sort((a, b) => a - b), 0.99)))
      p99s.set(c, p99)
      latTable.push(`| ${c} | ${all.length} | ${fmt(percentile(all, 0.5) * 1e3)} µs | ${fmt(p99 * 1e3)} µs | ${fmt(all.at(-1)! * 1e3)} µs | ${fmt(median(latCpu.get(c)!))} s of ${fmt(latMs / 1e3)} s | ${c === "none" ? "-" : latBatch.get(c)!.map((b) => `${b.batches}, ${fmt(b.longest * 1e3)} µs, ${b.hostHashes}`).join("; ")} |`)
      rows.push({ name: `host loop iteration p99, scanner ${c}`, value: p99 * 1e3, unit: "µs", detail: `p50 ${fmt(percentile(all, 0.5) * 1e3)} µs, max ${fmt(all.at(-1)! * 1e3)} µs over ${all.length} iterations (p99: median of ${runs.length} rounds)` })
    }
    notes.push(
      `Host latency: ${wFull.name} in one engine (sharedMemory: true) plus a 16 MiB host space (not mergeable); the host loop does ${accesses} random readU32/writeU32 (alternating) on the host space, then awaits setImmediate ` +
        `(a cooperating host: the scanner's loop gets its turns there); an iteration = batch + yield. ${fmt(latMs / 1e3)} s windows from start(), ${latRounds} round(s) of none / in-thread / worker at full speed (${FULL.pagesToScan} / ${FULL.sleepMillis} ms); ` +
        `p50 and max over all iterations, p99 the median of the rounds' p99s.\n\n${latTable.join("\n")}`,
    )
    notes.push(
      "Caveats. (1) Until 2026-11-30 the engine's page hashes were per-engine closures, and in-thread hashing ran ~1.8x slower in every engine of a process but the first (W 256 MiB: ~320 vs ~175 ms of host CPU), " +
        "which inflated the in-thread rows of earlier runs (and flattered the worker's ratios); the hashes are module functions now, so every in-thread row here is the fast case. " +
        "(2) The worker's threads include, when the sources run through tsx, Node's module-loader thread of the worker (0 ms after start-up). (3) At the defaults, most of the host's CPU outside batches is the setTimeout(20) loop's wake-ups, the same in both modes. " +
        "(4) startWorkerScanner resolves before the thread has loaded its modules; batches meanwhile end at once, and once one has waited 100 ms (OFFLOAD_STUCK_MILLIS) the host hashes pages itself until the thread shows progress (the cold-start row); " +
        "the warm runs wait for the thread first. The same 100 ms can pass mid-run when the 2 CPUs are contended: the host-hashes column counts it.",
    )
    if (problems.length > 0) notes.push(`**Problems found:**\n\n${problems.map((p) => `- ${p}`).join("\n")}`)
    if (q) notes.push(`Quick mode: W ${mibOf(wFull)} MiB, QuickJS only, 1 round, ${latMs / 1e3} s latency windows, no ksmd.`)
    return { rows, notes }
  },
}
