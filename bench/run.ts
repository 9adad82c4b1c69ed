/**
 * `npm run bench` (= `tsx bench/run.ts`): run the benchmark modules in sequence, print a
 * markdown table per module, and write the figures next to their goals to a results file.
 *
 *   tsx bench/run.ts                      every bench, full sizes; writes bench/RESULTS.md
 *   tsx bench/run.ts --quick              smaller sizes and budgets (about a minute); prints only
 *   tsx bench/run.ts merge kernel-ksm     only the named benches; prints only
 *   tsx bench/run.ts --out FILE           also write the results to FILE
 *   tsx bench/run.ts --no-write           never write a file
 *   tsx bench/run.ts --in-process         run the benches in this process (default: one child process each)
 *
 * A quick or partial run does not overwrite bench/RESULTS.md unless --out names it, so the
 * committed results always come from a full run. `runBenches` is the reusable entry point
 * (the CLI's `sksm bench` calls it).
 */
import { spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { kernelKsm } from "./kernel-ksm.ts"
import { type BenchModule, type BenchResult, type BenchRow, childNodeArgs, fmt, type MachineInfo, machineInfo, passes } from "./lib.ts"
import { memoryReturnBench } from "./memory-return.ts"
import { merge } from "./merge.ts"
import { realMemory } from "./real-memory.ts"
import { snapshotBench } from "./snapshot.ts"
import { snapshotFleet } from "./snapshot-fleet.ts"
import { snapshotStores } from "./snapshot-stores.ts"
import { scanner } from "./scanner.ts"
import { security } from "./security.ts"
import { wordAccess } from "./word-access.ts"
import { workerScanner } from "./worker-scanner.ts"

/** Every bench, in the order a full run takes them. */
export const BENCHES: readonly BenchModule[] = [wordAccess, memoryReturnBench, merge, kernelKsm, scanner, security, realMemory, workerScanner, snapshotBench, snapshotStores, snapshotFleet]

/** Options of {@link runBenches}. */
export interface RunOptions {
  readonly quick?: boolean
  /** Bench names to run (all when empty or absent). Unknown names throw. */
  readonly only?: readonly string[]
  readonly log?: (line: string) => void
  /**
   * Run each bench in its own Node process (default), so one bench's garbage and heap
   * growth (hundreds of MiB of slabs) cannot slow the next. `false` runs them in-process.
   */
  readonly isolate?: boolean
}

/** Figures of one bench module. */
export interface ModuleResult {
  readonly name: string
  readonly description: string
  readonly rows: BenchRow[]
  readonly notes: string[]
  readonly seconds: number
  /** Set when the module threw; its rows are then empty. */
  readonly error?: string
}

/** A whole run: machine facts and every module's figures. */
export interface RunResult {
  readonly machine: MachineInfo
  readonly quick: boolean
  readonly modules: ModuleResult[]
  readonly seconds: number
}

/** Run the selected benches in sequence. A bench that throws is reported, not fatal. */
export async function runBenches(options: RunOptions = {}): Promise<RunResult> {
  const quick = options.quick ?? false
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`))
  const only = options.only ?? []
  for (const n of only) if (!BENCHES.some((b) => b.name === n)) throw new Error(`unknown bench "${n}"; known: ${BENCHES.map((b) => b.name).join(", ")}`)
  const selected = only.length === 0 ? BENCHES : BENCHES.filter((b) => only.includes(b.name))
  const machine = machineInfo() // before any bench: the load is then the rest of the machine's
  const t0 = performance.now()
  const modules: ModuleResult[] = []
  for (const b of selected) {
    const s0 = performance.now()
    try {
      const r = (options.isolate ?? true) ? await runChild(b.name, quick, log) : await b.run({ quick, log })
      modules.push({ name: b.name, description: b.description, rows: r.rows, notes: r.notes, seconds: (performance.now() - s0) / 1e3 })
    } catch (cause) {
      const error = cause instanceof Error ? (cause.stack ?? cause.message) : String(cause)
      log(`${b.name}: FAILED: ${error}`)
      modules.push({ name: b.name, description: b.description, rows: [], notes: [], seconds: (performance.now() - s0) / 1e3, error })
    }
  }
  return { machine, quick, modules, seconds: (performance.now() - t0) / 1e3 }
}

const HERE = fileURLToPath(import.meta.url)
const RESULT_TAG = "SKSM-BENCH-RESULT "

/**
 * Run one bench in a child Node process (`run.ts --child NAME`): same loader flags as this
 * process (tsx), its stderr lines passed to `log`, the result as one tagged JSON line on its stdout.
 */
function runChild(name: string, quick: boolean, log: (line: string) => void): Promise<BenchResult> {
  // --expose-gc (childNodeArgs): the memory-return bench forces full GCs before reading RssAnon.
  const args = [...childNodeArgs(), HERE, "--child", name, ...(quick ? ["--quick"] : [])]
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] })
    // Ctrl-C / SIGTERM go to the child (kernel-ksm restores KSM settings on them); once it
    // has exited, stop the whole run rather than go on to the next bench.
    let interrupted: NodeJS.Signals | null = null
    const forward = (sig: NodeJS.Signals): void => {
      interrupted = sig
      child.kill(sig)
    }
    process.on("SIGINT", forward)
    process.on("SIGTERM", forward)
    let out = ""
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString()
    })
    let err = ""
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString()
      let nl = err.indexOf("\n")
      for (; nl >= 0; nl = err.indexOf("\n")) {
        log(err.slice(0, nl))
        err = err.slice(nl + 1)
      }
    })
    child.on("error", reject)
    // "close", not "exit": both pipes are drained by then.
    child.on("close", (code, signal) => {
      if (err !== "") log(err)
      process.removeListener("SIGINT", forward)
      process.removeListener("SIGTERM", forward)
      if (interrupted !== null) process.exit(interrupted === "SIGINT" ? 130 : 143)
      const line = out.split("\n").find((l) => l.startsWith(RESULT_TAG))
      if (line !== undefined && code === 0) resolve(JSON.parse(line.slice(RESULT_TAG.length)) as BenchResult)
      else reject(new Error(`bench ${name} exited with ${signal ?? `code ${code}`}${out.trim() === "" ? "" : `: ${out.trim()}`}`))
    })
  })
}

/** Child mode: run one bench in this process and print its result for the parent. */
async function child(name: string, quick: boolean): Promise<void> {
  const b = BENCHES.find((x) => x.name === name)
  if (b === undefined) throw new Error(`unknown bench "${name}"`)
  const r = await b.run({ quick, log: (line) => process.stderr.write(`${line}\n`) })
  process.stdout.write(`${RESULT_TAG}${JSON.stringify(r)}\n`)
}

/** One module's figures as a markdown table. */
export function moduleTable(m: ModuleResult): string {
  const lines = ["| figure | value | goal | result | detail |", "|---|---|---|---|---|"]
  for (const r of m.rows) {
    const p = passes(r)
    const goal = r.goal === undefined ? "" : `${r.goal.op} ${fmt(r.goal.target)} ${r.unit}`
    const result = p === undefined ? "" : p ? "pass" : "**FAIL**"
    lines.push(`| ${r.name} | ${fmt(r.value)} ${r.unit} | ${goal} | ${result} | ${r.detail ?? ""} |`)
  }
  return lines.join("\n")
}

/** The whole run as a markdown document (what RESULTS.md holds). */
export function renderMarkdown(r: RunResult): string {
  const m = r.machine
  const out: string[] = [
    "# sksm benchmark results",
    "",
    `- date: ${m.date}`,
    `- CPU: ${m.cpu}, ${m.cores} logical core(s)`,
    `- Node: ${m.node}; kernel: ${m.kernel}`,
    `- mode: ${r.quick ? "quick (smaller sizes: figures are indicative only)" : "full"}; total ${fmt(r.seconds)} s; load average ${fmt(m.load)} when it started (on ${m.cores} cores: the machine is shared)`,
    "",
    "Generated by `npm run bench` (bench/run.ts). Ratios are measured side by side in one run; machines are shared and noisy,",
    "so compare figures from one file, not across runs. GB = 10^9 bytes of address space processed.",
  ]
  let goals = 0
  let met = 0
  for (const mod of r.modules) {
    out.push("", `## ${mod.name}`, "", `${mod.description} (${fmt(mod.seconds)} s)`, "")
    if (mod.error !== undefined) out.push("**The bench failed:**", "", "```", mod.error, "```")
    if (mod.rows.length > 0) out.push(moduleTable(mod))
    for (const note of mod.notes) out.push("", note)
    for (const row of mod.rows) {
      const p = passes(row)
      if (p === undefined) continue
      goals++
      if (p) met++
    }
  }
  out.push("", `## Summary`, "", `${met} of ${goals} goals met.`, "")
  return out.join("\n")
}

function parseArgs(argv: readonly string[]): { quick: boolean; only: string[]; out: string | null; write: boolean; child: string | null; isolate: boolean } {
  let quick = false
  let out: string | null = null
  let write = true
  let child: string | null = null
  let isolate = true
  const only: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === "--quick") quick = true
    else if (a === "--no-write") write = false
    else if (a === "--in-process") isolate = false
    else if (a === "--child") {
      child = argv[++i] ?? null
      if (child === null) throw new Error("--child needs a bench name")
    }
    else if (a === "--out") {
      out = argv[++i] ?? null
      if (out === null) throw new Error("--out needs a file name")
    } else if (a === "--help" || a === "-h") {
      process.stdout.write(`usage: tsx bench/run.ts [--quick] [--out FILE] [--no-write] [--in-process] [${BENCHES.map((b) => b.name).join("|")} ...]\n`)
      process.exit(0)
    } else if (a.startsWith("-")) throw new Error(`unknown option ${a}`)
    else only.push(a)
  }
  return { quick, only, out, write, child, isolate }
}

/** A usage mistake (an unknown bench name): one line, exit code 2, no stack trace. */
class UsageError extends Error {}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  for (const n of args.only) if (!BENCHES.some((b) => b.name === n)) throw new UsageError(`unknown bench "${n}"; known: ${BENCHES.map((b) => b.name).join(", ")}`)
  if (args.child !== null) return child(args.child, args.quick)
  const result = await runBenches({ quick: args.quick, only: args.only, isolate: args.isolate })
  const md = renderMarkdown(result)
  process.stdout.write(`${md}\n`)
  const here = dirname(fileURLToPath(import.meta.url))
  const target = args.out ?? (!args.quick && args.only.length === 0 ? join(here, "RESULTS.md") : null)
  if (args.write && target !== null) {
    writeFileSync(target, md)
    process.stderr.write(`wrote ${target}\n`)
  }
  if (result.modules.some((m) => m.error !== undefined)) process.exitCode = 1
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === HERE) {
  main().catch((e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`bench: ${e.message}\n`)
      process.exit(2)
    }
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
    process.exit(1)
  })
}
