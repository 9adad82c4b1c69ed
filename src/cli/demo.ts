/**
 * `sksm demo` (npm start): a fleet of real QuickJS interpreters hibernated into sksm address
 * spaces, merged three ways on identical copies (synchronous merge(), the "ksm" scanner, the
 * "tracked" scanner), with a table, a chart of memory saved over time, and one instance resumed
 * from its merged space to show the interpreter carries on.
 */
import { mkdirSync, statSync, writeFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import type { AddressSpace } from "../index.ts"
import { Engine, type EngineStats } from "../index.ts"
import { intFlag, parse } from "./args.ts"
import { type Series, svgChart, terminalChart } from "./chart.ts"
import { fsError } from "./errors.ts"
import { boot, evalString, hibernate, type Instance, linearMemory, PROBE, resume, shutdown } from "./fleet.ts"
import { bytes, int, ms, pct, table } from "./format.ts"

const COMMAND = "demo"

/** What each merge mode produced. */
export interface ModeResult {
  readonly mode: string
  readonly stats: EngineStats
  readonly pages: number
  readonly framesBefore: number
  readonly framesAfter: number
  readonly wallMs: number
  readonly cpuMs: number
  /** (ms since start, bytes saved) samples. */
  readonly samples: (readonly [number, number])[]
  readonly note: string
}

function saved(engine: Engine): number {
  const s = engine.stats()
  return (s.pagesSharing + s.ksmZeroPages) * engine.pageSize
}

function cpuNow(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

const sleep = (t: number) => new Promise<void>((r) => setTimeout(r, t))

/** Mode 1: MADV_MERGE every space, once. */
function runMerge(engine: Engine, spaces: readonly AddressSpace[]): ModeResult {
  const framesBefore = engine.memory().framesInUse
  const samples: [number, number][] = [[0, 0]]
  const c0 = cpuNow()
  const t0 = performance.now()
  for (const s of spaces) {
    s.merge()
    samples.push([performance.now() - t0, saved(engine)])
  }
  const wallMs = performance.now() - t0
  return {
    mode: "merge()",
    stats: engine.stats(),
    pages: spaces.reduce((a, s) => a + s.pages, 0),
    framesBefore,
    framesAfter: engine.memory().framesInUse,
    wallMs,
    cpuMs: cpuNow() - c0,
    samples,
    note: "synchronous MADV_MERGE of each space",
  }
}

/**
 * Modes 2 and 3: the background scanner (promise API) until it saves what merge() saved, stops
 * improving for three full scans, or runs out of time.
 */
async function runScanner(engine: Engine, spaces: readonly AddressSpace[], policy: "ksm" | "tracked", target: number, tunables: { pagesToScan: number; sleepMillis: number }, limitMs: number): Promise<ModeResult> {
  const pages = spaces.reduce((a, s) => a + s.pages, 0)
  const framesBefore = engine.memory().framesInUse
  const mode = `scanner "${policy}"`
  for (const s of spaces) s.setMergeAny(true) // PR_SET_MEMORY_MERGE: the whole space is mergeable
  const scanner = engine.scanner({ policy, ...tunables })
  const samples: [number, number][] = [[0, 0]]
  const c0 = cpuNow()
  const t0 = performance.now()
  scanner.start()
  let reached = "time limit"
  let lastGain = { fullScans: 0, value: 0 }
  for (;;) {
    await sleep(10)
    const t = performance.now() - t0
    const v = saved(engine)
    if (v !== samples[samples.length - 1]![1]) samples.push([t, v])
    const full = engine.stats().fullScans
    if (v !== lastGain.value) lastGain = { fullScans: full, value: v }
    if (v >= target) {
      reached = "reached merge()'s saving"
      break
    }
    if (full - lastGain.fullScans >= 3) {
      reached = "no gain for 3 full scans"
      break
    }
    if (t > limitMs) break
  }
  const wallMs = performance.now() - t0
  await scanner.stop()
  const cpuMs = cpuNow() - c0
  const st = engine.stats()
  samples.push([wallMs, saved(engine)])
  return {
    mode,
    stats: st,
    pages,
    framesBefore,
    framesAfter: engine.memory().framesInUse,
    wallMs,
    cpuMs,
    samples,
    note: `pages_to_scan ${tunables.pagesToScan}, sleep ${tunables.sleepMillis} ms, ${st.fullScans} full scans; ${reached}`,
  }
}

/** Run `sksm demo` with the arguments after the command name. */
export async function demo(args: readonly string[]): Promise<void> {
  const { values } = parse(COMMAND, args, { small: { type: "boolean" }, instances: { type: "string" }, out: { type: "string" }, chart: { type: "boolean" } })
  const small = values.small === true || process.env["SKSM_DEMO_SMALL"] === "1"
  const n = intFlag(COMMAND, "instances", values.instances ?? process.env["SKSM_DEMO_INSTANCES"], small ? 3 : 8, 2, 32)
  // Files only where asked: a run leaves nothing behind otherwise (also when piped to head).
  let outDir: string | null = null
  if (values.out !== undefined) {
    try {
      outDir = resolve(values.out)
      makeDir(outDir)
    } catch (e) {
      throw fsError(e, `cannot create output directory ${values.out}`)
    }
  }
  const say = (s = "") => process.stdout.write(`${s}\n`)
  const tStart = performance.now()

  // 1. Boot the fleet.
  say(`sksm demo: a fleet of ${n} QuickJS interpreters (quickjs-emscripten, WebAssembly)`)
  say(`each loads the same framework script, then runs an app of its own (counter, router, store, math)`)
  say()
  const t0 = performance.now()
  const fleet: Instance[] = []
  for (let i = 0; i < n; i++) fleet.push(await boot(i))
  const memBytes = fleet.reduce((a, f) => a + linearMemory(f).byteLength, 0)
  say(`booted     ${n} instances in ${ms(performance.now() - t0)}: ${fleet.map((f) => `${f.app}-${f.index}`).join(" ")}`)

  // 2. Hibernate each instance's linear memory into a space, once per engine (identical copies).
  const modes = ["merge", "ksm", "tracked"] as const
  const engines = modes.map(() => new Engine())
  const spaces = engines.map((e) => fleet.map((inst) => hibernate(inst, e)))
  const keep = Math.min(1, n - 1) // the instance resumed at the end
  for (const inst of fleet) if (inst.index !== keep) shutdown(inst)
  const ps = engines[0]!.pageSize
  say(`hibernated ${n} linear memories (${bytes(memBytes)}, ${int(memBytes / ps)} pages of ${bytes(ps)}) into 3 engines: identical copies`)
  say()

  // 3. Merge three ways.
  const fast = small ? { pagesToScan: 1000, sleepMillis: 5 } : { pagesToScan: 2000, sleepMillis: 20 }
  const limitMs = small ? 8000 : 20000
  const results: ModeResult[] = []
  results.push(runMerge(engines[0]!, spaces[0]!))
  const target = saved(engines[0]!)
  results.push(await runScanner(engines[1]!, spaces[1]!, "ksm", target, fast, limitMs))
  results.push(await runScanner(engines[2]!, spaces[2]!, "tracked", target, fast, limitMs))

  say("merging the fleet three ways (each on its own copy)")
  say(
    table(
      [
        { header: "mode" },
        { header: "pages", right: true },
        { header: "zero pages", right: true },
        { header: "shared", right: true },
        { header: "sharing", right: true },
        { header: "profit", right: true },
        { header: "frames held", right: true },
        { header: "time", right: true },
        { header: "CPU", right: true },
      ],
      results.map((r) => [r.mode, int(r.pages), int(r.stats.ksmZeroPages), int(r.stats.pagesShared), int(r.stats.pagesSharing), bytes(r.stats.generalProfit), `${int(r.framesBefore)} -> ${int(r.framesAfter)}`, ms(r.wallMs), ms(r.cpuMs)]),
    ),
  )
  for (const r of results) say(`  ${r.mode.padEnd(18)} ${r.note}`)
  // The headline profit is mostly the interpreters' untouched zero pages: say how much is not.
  const m0 = results[0]!.stats
  const zeroBytes = m0.ksmZeroPages * ps
  const dupBytes = m0.pagesSharing * ps
  say(`  of merge()'s ${bytes(zeroBytes + dupBytes)} saved, ${bytes(zeroBytes)} are zero pages (${pct(zeroBytes, zeroBytes + dupBytes)}: memory the interpreters reserved but never wrote) and ${bytes(dupBytes)} are merged non-zero duplicates (${int(m0.pagesSharing)} pages: the shared framework)`)
  say()

  const chartSeries: Series[] = [
    { name: "merge()", mark: "m", color: "#1f77b4", points: results[0]!.samples },
    { name: 'scanner "ksm"', mark: "k", color: "#d62728", points: results[1]!.samples },
    { name: 'scanner "tracked"', mark: "t", color: "#2ca02c", points: results[2]!.samples },
  ].filter((s) => s.points.length > 0)
  const opts = {
    title: "memory saved over time (pages_sharing + zero pages)",
    xLabel: "time since merging started",
    yLabel: "memory saved",
    formatX: (x: number) => ms(x),
    formatY: (y: number) => bytes(y),
    yBytes: true,
  }
  if (values.chart !== false) {
    say(terminalChart(chartSeries, opts))
    say()
  }
  if (outDir !== null) {
    const svgPath = join(outDir, "demo-savings.svg")
    writeFileSync(svgPath, svgChart(chartSeries, opts))
    writeFileSync(join(outDir, "demo-results.json"), `${JSON.stringify({ instances: n, pageSize: ps, results }, null, 2)}\n`)
    say(`chart: ${svgPath}`)
  } else say("chart: add --out DIR to write it as demo-savings.svg (with demo-results.json)")
  say()

  // 4. Resume one instance from its merged space and check it carries on.
  const original = fleet[keep]!
  const space = spaces[0]![keep]!
  const st = space.ksmStat()
  say(`resuming ${original.app}-${original.index} from its merged space (${int(st.ksmMergingPages)} pages on shared frames, ${int(st.ksmZeroPages)} zero pages, ${int(space.pages - st.ksmMergingPages - st.ksmZeroPages)} private)`)
  const mem = linearMemory(original)
  const back = space.read(0, space.size)
  const exact = mem.byteLength === back.byteLength && Buffer.compare(Buffer.from(mem.buffer, mem.byteOffset, mem.byteLength), Buffer.from(back.buffer, back.byteOffset, back.byteLength)) === 0
  say(`  byte-exact: ${exact ? "yes" : "NO"}, the space reads back the ${bytes(mem.byteLength)} the instance had when hibernated`)
  const resumed = await resume(space, original.index, original.app)
  let ok = exact
  for (const code of [PROBE, `app.next() + app.next()`, `fw.fib(75) + ":" + fw.index.get("k42").name`]) {
    const a = evalString(original.context, code)
    const b = evalString(resumed.context, code)
    ok &&= a === b
    say(`  ${a === b ? "same" : "DIFF"}  ${shorten(code, 34).padEnd(34)} -> ${b}`)
  }
  shutdown(resumed)
  shutdown(original)
  say(ok ? "  the resumed interpreter carries on exactly where the hibernated one stopped" : "  MISMATCH: the resumed interpreter diverged")
  say()
  say(`done in ${ms(performance.now() - tStart)}`)
  if (!ok) process.exitCode = 1
  for (const e of engines) for (const s of e.spaces()) s.dispose()
}

/**
 * mkdir -p, bounded by the path's depth. (Node 20's recursive mkdirSync spins forever on a
 * path under /proc, where mkdir fails with ENOENT although the parent exists.)
 */
function makeDir(dir: string): void {
  try {
    if (statSync(dir).isDirectory()) return
  } catch {
    // Absent: create it below.
  }
  const parent = dirname(dir)
  if (parent !== dir) {
    let parentIsDir = false
    try {
      parentIsDir = statSync(parent).isDirectory()
    } catch {
      makeDir(parent)
      parentIsDir = true
    }
    if (!parentIsDir) throw Object.assign(new Error(`${parent} is not a directory`), { code: "ENOTDIR" })
  }
  mkdirSync(dir)
}

function shorten(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 3)}...`
}
