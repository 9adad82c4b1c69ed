/**
 * `sksm estimate` on a parent with forked children (test/cli/fixtures/fork_fleet.py): pages the
 * processes share copy-on-write are one physical page, counted once, as the kernel would; the
 * per-process figures do not depend on the order of the pids; a pid given twice counts once;
 * without page frame numbers (not root) the shared pages are left out and the report says so.
 * The comparison with the real ksmd is bench/kernel-ksm-estimate.ts (SKSM_KERNEL_KSM=1 runs it here).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { compareWithKsmd } from "../../bench/kernel-ksm-estimate.ts"
import type { EstimateReport } from "../../src/cli/estimate.ts"
import { canDropPrivileges, sksm } from "./spawn.ts"

const FLEET = fileURLToPath(new URL("./fixtures/fork_fleet.py", import.meta.url))
const PAGES = 4000
const CHILD_PAGES = 1000
const hasPython = spawnSync("python3", ["-c", "import mmap, ctypes"]).status === 0
const isRoot = process.getuid?.() === 0

interface Fleet {
  readonly child: ChildProcess
  readonly pids: number[]
}

function startFleet(prefix: readonly string[] = []): Promise<Fleet> {
  const argv = [...prefix, "python3", FLEET, "2", String(PAGES), String(CHILD_PAGES)]
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "inherit"] })
  return new Promise((resolve, reject) => {
    let out = ""
    child.on("error", reject)
    child.once("exit", (code) => reject(new Error(`fork_fleet.py exited early (${code})`)))
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString()
      const m = /READY ([\d ]+)\n/.exec(out)
      if (m !== null) resolve({ child, pids: m[1]!.trim().split(" ").map(Number) })
    })
  })
}

async function estimateJson(args: readonly string[], prefix?: readonly string[]): Promise<EstimateReport> {
  const r = await sksm(["estimate", "--json", ...args], prefix === undefined ? {} : { prefix })
  expect(r.stderr).toBe("")
  expect(r.code).toBe(0)
  return JSON.parse(r.stdout) as EstimateReport
}

const pidArgs = (pids: readonly number[]) => pids.flatMap((p) => ["--pid", String(p)])

describe.runIf(hasPython && isRoot)("sksm estimate on a parent with forked children (root: physical pages visible)", () => {
  let fleet: Fleet
  beforeAll(async () => {
    fleet = await startFleet()
  })
  afterAll(() => {
    fleet?.child.stdin!.end()
  })

  it("counts each physical page once: forked copies save nothing, the duplicates still merge", async () => {
    const r = await estimateJson(pidArgs(fleet.pids))
    expect(r.pfns).toBe(true)
    // The fixture's mappings: the parent's PAGES (shared by fork in all three) and each child's own.
    const [parent, ...children] = fleet.pids
    const big = (pid: number, pages: number) => r.sources.find((s) => s.pid === pid)!.regions.filter((g) => g.pages === pages)
    for (const pid of fleet.pids) {
      const [g] = big(pid, PAGES)
      expect(g).toBeDefined()
      // A quarter is 8 contents repeated (on many physical pages: they merge), the rest unique
      // contents that are one physical page mapped three times: nothing to save.
      expect(g!.ksmMergingPages).toBe(PAGES / 4)
      expect(g!.cowSharedPages).toBe((PAGES * 3) / 4)
    }
    for (const pid of children) {
      // Half the parent's repeated contents, a quarter the same content at the same offset in
      // both children (two physical pages: they merge), a quarter unique.
      const [g] = big(pid, CHILD_PAGES)
      expect(g!.ksmMergingPages).toBe((CHILD_PAGES * 3) / 4)
      expect(g!.cowSharedPages).toBe(0)
    }
    expect(parent).toBeDefined()
    // The unique forked pages are the "one page already" row, not a saving.
    expect(r.totals.cowSharedPages).toBeGreaterThanOrEqual(3 * (PAGES * 3) / 4)
    expect(r.whyNotMore.cowSharedPages).toBe(r.totals.cowSharedPages)
    // pages_sharing counts every forked mapping of a merged page; the memory freed is less.
    expect(r.totals.freedPages).toBeLessThan(r.totals.pagesSharing)
    expect(r.totals.savedBytes).toBe(r.totals.freedPages * r.pageSize)
    // The kernel's per-process figures add up to the fleet's.
    expect(r.sources.reduce((a, s) => a + s.counts.ksmMergingPages, 0)).toBe(r.totals.pagesShared + r.totals.pagesSharing)
    const text = await sksm(["estimate", ...pidArgs(fleet.pids)])
    expect(text.stdout).toMatch(/one page already\s+[\d,]+/)
    expect(text.stdout).toMatch(/why not more/)
    expect(text.stdout).toMatch(/fork\/COW\): KSM saves nothing/)
    expect(text.stdout).toMatch(/forked mappings of pages freed once/)
  })

  it("gives identical per-process figures under any order of --pid, and counts a repeated pid once", async () => {
    const [a, b, c] = fleet.pids as [number, number, number]
    const orders = [[a, b, c], [c, a, b], [b, c, a, a]]
    const reports = await Promise.all(orders.map((o) => estimateJson(pidArgs(o))))
    const byPid = (r: EstimateReport) =>
      Object.fromEntries(r.sources.map((s) => [s.pid, { pages: s.counts.pages, shared: s.counts.pagesShared, sharing: s.counts.pagesSharing, merging: s.counts.ksmMergingPages, zero: s.counts.ksmZeroPages, cow: s.counts.cowSharedPages, profit: s.ksmProcessProfit }]))
    const first = byPid(reports[0]!)
    // The processes are idle (blocked reading stdin): their pages do not move between the reads.
    for (const r of reports.slice(1)) {
      expect(byPid(r)).toEqual(first)
      expect(r.totals).toEqual({ ...reports[0]!.totals })
    }
    // The sources are listed in the order given; the repeat is a note.
    expect(reports[1]!.sources.map((s) => s.pid)).toEqual([c, a, b])
    expect(reports[2]!.sources.map((s) => s.pid)).toEqual([b, c, a])
    expect(reports[2]!.notes).toEqual([`pid ${a} was given more than once: counted once`])
    expect(reports[0]!.notes).toEqual([])
  })
})

describe.runIf(hasPython && canDropPrivileges())("sksm estimate without page frame numbers (not root)", () => {
  it("leaves the forked pages out and says how many", async () => {
    const asNobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "env", "HOME=/tmp"]
    const fleet = await startFleet(asNobody)
    try {
      const r = await estimateJson(pidArgs(fleet.pids), asNobody)
      expect(r.pfns).toBe(false)
      // At least the parent's unique pages in each process, mapped three times.
      expect(r.whyNotMore.sharedExcludedPages).toBeGreaterThanOrEqual(3 * (PAGES * 3) / 4)
      expect(r.totals.cowSharedPages).toBe(0)
      expect(r.whyNotMore.hints.join("\n")).toMatch(/mapped by several processes \(fork\/COW\) were left out.*root/)
      const text = await sksm(["estimate", ...pidArgs(fleet.pids)], { prefix: asNobody })
      expect(text.stdout).toMatch(/physical pages NOT visible/)
      expect(text.stdout).toMatch(/forked, left out\s+[\d,]+/)
    } finally {
      fleet.child.stdin!.end()
    }
  })
})

describe.runIf(process.env["SKSM_KERNEL_KSM"] === "1")("sksm estimate against the real ksmd (SKSM_KERNEL_KSM=1)", () => {
  it("reaches ksmd's pages_sharing within 1% on a forked fleet and on separate processes, and its ksm_merging_pages per process", async () => {
    const r = await compareWithKsmd()
    if (r.status === "skipped") throw new Error(`cannot drive ksmd here: ${r.reason}`)
    expect(r.restoreFailures).toEqual([])
    for (const f of r.value) {
      expect(f.ksmd.pagesSharing).toBeGreaterThan(0)
      expect(f.sharingError).toBeLessThanOrEqual(0.01)
      f.estimate.perProcess.forEach((e, i) => expect(Math.abs(e - f.ksmd.perProcess[i]!)).toBeLessThanOrEqual(Math.max(2, 0.01 * f.ksmd.perProcess[i]!)))
    }
  }, 300_000)
})
