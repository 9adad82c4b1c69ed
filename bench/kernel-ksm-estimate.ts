/**
 * bench/kernel-ksm-estimate: `sksm estimate` against the kernel's own ksmd on the same processes.
 *
 *   npx tsx bench/kernel-ksm-estimate.ts [--children N] [--pages N] [--child-pages N]
 *
 * For two fleets of Python processes that opt in with prctl(PR_SET_MEMORY_MERGE)
 * (test/cli/fixtures/fork_fleet.py): a parent with forked children sharing its pages
 * copy-on-write, and the same contents in separate processes. For each: run `sksm estimate --json`
 * on the processes, then run ksmd at full speed until pages_sharing stops moving for four full
 * scans, and compare pages_shared / pages_sharing and each process's ksm_merging_pages
 * (/proc/PID/ksm_stat) with the estimate. KSM settings are saved and restored by
 * withKernelKsm (bench/kernel-ksm.ts); it refuses to run when KSM is in use.
 *
 * `compareWithKsmd` is the reusable entry point (test/cli/estimate-kernel.test.ts calls it).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { findKsmd, type KsmControl, withKernelKsm } from "./kernel-ksm.ts"

const ROOT = fileURLToPath(new URL("../", import.meta.url))
const FLEET = `${ROOT}test/cli/fixtures/fork_fleet.py`
const BIN = `${ROOT}bin/sksm.mjs`

/** One fleet's comparison. */
export interface FleetComparison {
  readonly fleet: "forked" | "separate"
  readonly pids: readonly number[]
  readonly estimate: { readonly pagesShared: number; readonly pagesSharing: number; readonly ksmZeroPages: number; readonly perProcess: readonly number[]; readonly freedPages: number }
  readonly ksmd: { readonly pagesShared: number; readonly pagesSharing: number; readonly ksmZeroPages: number; readonly perProcess: readonly number[]; readonly fullScans: number; readonly seconds: number }
  /** |estimate - ksmd| / ksmd for pages_sharing. */
  readonly sharingError: number
}

/** Options of {@link compareWithKsmd}. */
export interface CompareOptions {
  readonly children?: number
  readonly pages?: number
  readonly childPages?: number
  readonly timeoutMs?: number
  readonly log?: (line: string) => void
}

interface Fleet {
  readonly pids: number[]
  stop(): Promise<void>
  kill(): void
}

function startFleet(args: readonly string[]): Promise<Fleet> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn("python3", [FLEET, ...args], { stdio: ["pipe", "pipe", "inherit"] })
    let out = ""
    const exited = new Promise<void>((r) => child.once("exit", () => r()))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error("fork_fleet.py not ready after 60 s"))
    }, 60_000)
    child.on("error", reject)
    child.once("exit", (code) => reject(new Error(`fork_fleet.py exited early (${code})`)))
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString()
      const m = /READY ([\d ]+)\n/.exec(out)
      if (m === null) return
      clearTimeout(timer)
      const pids = m[1]!.trim().split(" ").map(Number)
      resolve({
        pids,
        kill: () => {
          for (const p of pids) {
            try {
              process.kill(p, "SIGKILL")
            } catch {
              // gone
            }
          }
        },
        stop: async () => {
          child.stdin!.end()
          const t = setTimeout(() => child.kill("SIGKILL"), 10_000)
          await exited
          clearTimeout(t)
        },
      })
    })
  })
}

function runEstimate(pids: readonly number[]): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const args = [BIN, "estimate", "--json", ...pids.flatMap((p) => ["--pid", String(p)])]
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    child.stderr.on("data", (d: Buffer) => (err += d.toString()))
    child.on("close", (code) => (code === 0 ? resolve(JSON.parse(out) as Record<string, unknown>) : reject(new Error(`sksm estimate failed (${code}): ${err.trim()}`))))
  })
}

function ksmStat(pid: number): Record<string, number> {
  const out: Record<string, number> = {}
  for (const line of readFileSync(`/proc/${pid}/ksm_stat`, "utf8").split("\n")) {
    const m = /^(\w+)\s+(\S+)$/.exec(line.trim())
    if (m !== null) out[m[1]!] = m[2] === "yes" ? 1 : m[2] === "no" ? 0 : Number(m[2])
  }
  return out
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Run ksmd at full speed until pages_sharing holds for four full scans (or the bound). */
async function converge(ksm: KsmControl, timeoutMs: number): Promise<{ fullScans: number; seconds: number }> {
  ksm.set("pages_to_scan", 100000)
  ksm.set("sleep_millisecs", 0)
  const scans0 = ksm.read("full_scans")
  const t0 = performance.now()
  ksm.set("run", 1)
  let last = -1
  let lastScan = scans0
  for (;;) {
    await sleep(20)
    const sharing = ksm.read("pages_sharing")
    const scans = ksm.read("full_scans")
    if (sharing !== last) {
      last = sharing
      lastScan = scans
    }
    if (scans - scans0 >= 4 && scans - lastScan >= 4) break
    if (performance.now() - t0 > timeoutMs) break
  }
  ksm.set("run", 0)
  return { fullScans: ksm.read("full_scans") - scans0, seconds: (performance.now() - t0) / 1e3 }
}

/**
 * Compare the estimate with ksmd on a forked fleet and on separate processes. Returns
 * `{ status: "skipped", reason }` where the kernel's KSM cannot be driven here.
 */
export async function compareWithKsmd(opts: CompareOptions = {}) {
  const log = opts.log ?? (() => {})
  const children = opts.children ?? 2
  const pages = opts.pages ?? 8000
  const childPages = opts.childPages ?? 2000
  if (findKsmd() === null) return { status: "skipped" as const, reason: "no ksmd thread found in /proc" }
  let current: Fleet | null = null
  return withKernelKsm(
    async (ksm) => {
      ksm.set("max_page_sharing", 256)
      ksm.set("use_zero_pages", 0)
      const results: FleetComparison[] = []
      for (const fleet of ["forked", "separate"] as const) {
        log(`kernel-ksm-estimate: ${fleet} fleet, ${children} children, ${pages} + ${childPages} pages each`)
        current = await startFleet([String(children), String(pages), String(childPages), "--merge", ...(fleet === "separate" ? ["--separate"] : [])])
        try {
          const pids = current.pids
          const est = (await runEstimate(pids)) as { totals: { pagesShared: number; pagesSharing: number; ksmZeroPages: number; freedPages: number }; sources: { pid: number; counts: { ksmMergingPages: number } }[] }
          const c = await converge(ksm, opts.timeoutMs ?? 60_000)
          const stats = pids.map(ksmStat)
          const ksmd = {
            pagesShared: ksm.read("pages_shared"),
            pagesSharing: ksm.read("pages_sharing"),
            ksmZeroPages: ksm.read("ksm_zero_pages"),
            perProcess: stats.map((s) => s["ksm_merging_pages"] ?? -1),
            ...c,
          }
          const estimate = {
            pagesShared: est.totals.pagesShared,
            pagesSharing: est.totals.pagesSharing,
            ksmZeroPages: est.totals.ksmZeroPages,
            freedPages: est.totals.freedPages,
            perProcess: pids.map((p) => est.sources.find((s) => s.pid === p)!.counts.ksmMergingPages),
          }
          const sharingError = ksmd.pagesSharing === 0 ? (estimate.pagesSharing === 0 ? 0 : 1) : Math.abs(estimate.pagesSharing - ksmd.pagesSharing) / ksmd.pagesSharing
          results.push({ fleet, pids, estimate, ksmd, sharingError })
          log(`kernel-ksm-estimate: ${fleet}: estimate ${estimate.pagesShared}/${estimate.pagesSharing}, ksmd ${ksmd.pagesShared}/${ksmd.pagesSharing} (${c.fullScans} full scans, ${c.seconds.toFixed(1)} s)`)
        } finally {
          await current.stop()
          current = null
          ksm.set("run", 2) // unmerge what is left before the next fleet
        }
      }
      return results
    },
    () => (current as Fleet | null)?.kill(),
  )
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(`--${name}`)
    return i > 0 ? Number(process.argv[i + 1]) : undefined
  }
  const r = await compareWithKsmd({ children: arg("children"), pages: arg("pages"), childPages: arg("child-pages"), log: (l) => process.stderr.write(`${l}\n`) })
  process.stdout.write(`${JSON.stringify(r, null, 2)}\n`)
}
