/**
 * Does merging give memory back to the process? Measured the way a user would: with the
 * process's own figures (process.memoryUsage().rss and .arrayBuffers), in a fresh child
 * process per scenario (node --expose-gc, so a full GC can be forced before each reading).
 *
 * Run: npx tsx bench/rss.ts        (prints a markdown table; exits 1 if a check fails)
 *
 * Per scenario the child: populates the workload, forces a GC and reads memoryUsage (before);
 * merges (automatic compaction off, so compaction is timed on its own); compacts in steps of
 * the default automatic budget until done, timing each step (the longest is the pause a host
 * sees); forces a GC and reads memoryUsage again (after). Checks: the drop in arrayBuffers is
 * >= 90% of (pagesSharing + ksmZeroPages) * pageSize, and RSS drops.
 *
 * Workloads (256 MiB, 4 KiB pages):
 * - W: first half 16 distinct contents repeated, second half random unique pages (the
 *   project's workload W). Merging empties whole slabs: compaction mostly releases, moves little.
 * - W-interleaved: the same pages, but duplicate and unique pages alternate, so merging leaves
 *   every slab half used and compaction must move a quarter of the live frames.
 */
import { spawnSync } from "node:child_process"
import { randomFillSync } from "node:crypto"
import { fileURLToPath } from "node:url"
import { DEFAULT_COMPACT_BUDGET_PAGES } from "../src/memory/compact.ts"
import { Engine } from "../src/index.ts"

const PS = 4096
const SIZE = 256 << 20

interface Result {
  scenario: string
  budget: number
  mergedAwayBytes: number
  before: { rss: number; arrayBuffers: number }
  afterMerge: { rss: number; arrayBuffers: number }
  after: { rss: number; arrayBuffers: number }
  reservedBefore: number
  reservedAfter: number
  framesMoved: number
  bytesMoved: number
  pagesRewritten: number
  slabsReleased: number
  steps: number
  compactMs: number
  longestStepMs: number
  populateMs: number
  mergeMs: number
}

function usage(): { rss: number; arrayBuffers: number } {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error("run the child with --expose-gc")
  gc()
  gc()
  const m = process.memoryUsage()
  return { rss: m.rss, arrayBuffers: m.arrayBuffers }
}

function child(scenario: string, budget: number): Result {
  const engine = new Engine({ pageSize: PS, autoCompact: false, seed: 1 })
  const pages = SIZE / PS
  const a = engine.createSpace({ size: SIZE, name: scenario })
  const t0 = performance.now()
  const dup = Buffer.alloc(16 * PS)
  for (let c = 0; c < 16; c++) dup.fill(c + 1, c * PS, (c + 1) * PS)
  const chunk = Buffer.alloc(1 << 20)
  if (scenario === "W") {
    for (let p = 0; p < pages / 2; p += 16) a.write(p * PS, dup)
    for (let p = pages / 2; p < pages; p += chunk.length / PS) {
      randomFillSync(chunk)
      a.write(p * PS, chunk)
    }
  } else {
    // Even pages: one of 16 contents; odd pages: random.
    for (let p = 0; p < pages; p += chunk.length / PS) {
      randomFillSync(chunk)
      for (let i = 0; i < chunk.length / PS; i += 2) dup.copy(chunk, i * PS, ((p + i) / 2) % 16 * PS, (((p + i) / 2) % 16 + 1) * PS)
      a.write(p * PS, chunk)
    }
  }
  const populateMs = performance.now() - t0
  const before = usage()
  const reservedBefore = engine.memory().bytesReserved
  const t1 = performance.now()
  a.merge()
  const mergeMs = performance.now() - t1
  const afterMerge = usage()
  const st = engine.stats()
  const mergedAwayBytes = (st.pagesSharing + st.ksmZeroPages) * PS
  let steps = 0
  let longest = 0
  let compactMs = 0
  let framesMoved = 0
  let pagesRewritten = 0
  let slabsReleased = 0
  for (;;) {
    const r = engine.compact({ budgetPages: budget })
    steps++
    compactMs += r.ms
    longest = Math.max(longest, r.ms)
    framesMoved += r.framesMoved
    pagesRewritten += r.pagesRewritten
    slabsReleased += r.slabsReleased
    if (r.done) break
  }
  const after = usage()
  // Keep the engine alive past the reading, so only released slabs can have been collected.
  if (a.readU8(0) === 256) console.error("unreachable")
  return {
    scenario,
    budget,
    mergedAwayBytes,
    before,
    afterMerge,
    after,
    reservedBefore,
    reservedAfter: engine.memory().bytesReserved,
    framesMoved,
    bytesMoved: framesMoved * PS,
    pagesRewritten,
    slabsReleased,
    steps,
    compactMs,
    longestStepMs: longest,
    populateMs,
    mergeMs,
  }
}

const MiB = (b: number): string => (b / (1 << 20)).toFixed(1)

function parent(): void {
  const self = fileURLToPath(import.meta.url)
  const runs: [string, number][] = [
    ["W", DEFAULT_COMPACT_BUDGET_PAGES],
    ["W-interleaved", DEFAULT_COMPACT_BUDGET_PAGES],
    ["W-interleaved", Number.POSITIVE_INFINITY],
  ]
  const results: Result[] = []
  for (const [scenario, budget] of runs) {
    const out = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", self, "--child", scenario, String(budget)], { encoding: "utf8", maxBuffer: 1 << 20 })
    if (out.status !== 0) {
      console.error(out.stderr)
      process.exit(1)
    }
    const r = JSON.parse(out.stdout.trim().split("\n").at(-1)!) as Result
    results.push({ ...r, budget }) // JSON has no Infinity
  }
  let ok = true
  console.log(`| workload | budget (pages/step) | merged away | arrayBuffers before -> after | drop / merged away | RSS before -> after | frames moved | steps | compaction time | throughput (moved) | longest pause |`)
  console.log(`|---|---|---|---|---|---|---|---|---|---|---|`)
  for (const r of results) {
    const abDrop = r.before.arrayBuffers - r.after.arrayBuffers
    const rssDrop = r.before.rss - r.after.rss
    const ratio = abDrop / r.mergedAwayBytes
    const pass = ratio >= 0.9 && rssDrop > 0
    ok &&= pass
    const mbps = r.compactMs > 0 ? r.bytesMoved / (1 << 20) / (r.compactMs / 1000) : 0
    console.log(
      `| ${r.scenario} | ${r.budget === Number.POSITIVE_INFINITY ? "unbounded" : r.budget} | ${MiB(r.mergedAwayBytes)} MiB | ${MiB(r.before.arrayBuffers)} -> ${MiB(r.after.arrayBuffers)} MiB | ${(ratio * 100).toFixed(1)}% ${pass ? "" : "FAIL"} | ${MiB(r.before.rss)} -> ${MiB(r.after.rss)} MiB | ${r.framesMoved} (${MiB(r.bytesMoved)} MiB) | ${r.steps} | ${r.compactMs.toFixed(1)} ms | ${r.bytesMoved < 1 << 20 ? "n/m (< 1 MiB moved)" : `${mbps.toFixed(0)} MB/s`} | ${r.longestStepMs.toFixed(2)} ms |`,
    )
  }
  console.log()
  console.log(`Checks: arrayBuffers drop >= 90% of (pagesSharing + ksmZeroPages) * pageSize, and RSS drops: ${ok ? "pass" : "FAIL"}`)
  console.log(`(populate ${results.map((r) => r.populateMs.toFixed(0)).join("/")} ms, merge ${results.map((r) => r.mergeMs.toFixed(0)).join("/")} ms; throughput = bytes moved / total compaction time including plan and page-table sweeps)`)
  if (!ok) process.exit(1)
}

const i = process.argv.indexOf("--child")
if (i >= 0) {
  const budgetArg = process.argv[i + 2] ?? String(DEFAULT_COMPACT_BUDGET_PAGES)
  console.log(JSON.stringify(child(process.argv[i + 1] ?? "W", Number(budgetArg))))
} else {
  parent()
}
