/**
 * Issue 3's merge-core benchmarks: merge() throughput on workload W, all-unique and
 * all-zero spaces, the table's bytes per entry, and a per-page cost breakdown.
 *
 * Each timed merge runs on a freshly written space (writing happens in tinybench's
 * beforeEach, outside the timed part; the space is disposed in afterEach, so the engine's
 * frames are recycled and the table starts empty every time).
 */
import type { AddressSpace } from "../test/helpers/internals.ts"
import type { MergeReport } from "../src/core/merge.ts"
import { Engine } from "../test/helpers/internals.ts"
import { type BenchModule, type BenchOptions, type BenchResult, type BenchRow, consume, GB, fmt, measure, MiB, PAGE } from "./lib.ts"
import { expectedCounts, makeWorkload, populate, type Workload, type WorkloadSpec } from "./workload.ts"

/** Result of timing merge() on one workload. */
export interface MergeTiming {
  readonly spec: WorkloadSpec
  /** Median seconds per merge() of the whole space. */
  readonly seconds: number
  /** Fastest merge() seen, seconds. */
  readonly bestSeconds: number
  /** Decimal GB of address space merged per second. */
  readonly gbPerSecond: number
  readonly nsPerPage: number
  /** Report of the first timed merge. */
  readonly report: MergeReport
  /** engine.stats() right after the first timed merge. */
  readonly pagesShared: number
  readonly pagesSharing: number
  readonly ksmZeroPages: number
  readonly pagesUnique: number
  /** Table bytes per live table entry right after the first timed merge. */
  readonly tableBytesPerEntry: number
  /** Before engine.maybeCompact(): with the reservation for the whole range still held. */
  readonly tableBytesRightAfter: number
  readonly tableEntries: number
  readonly samples: number
}

/**
 * Time `space.merge()` over a fresh copy of the workload, `iterations` times (plus one
 * warmup), and return the median. Reusable by the kernel comparison and the CLI.
 */
export async function timeMerge(spec: WorkloadSpec, iterations: number, workload?: Workload): Promise<MergeTiming> {
  const w = workload ?? makeWorkload(spec)
  const engine = new Engine({ maxPageSharing: 256 })
  let space: AddressSpace | null = null
  type First = Omit<MergeTiming, "spec" | "seconds" | "bestSeconds" | "gbPerSecond" | "nsPerPage" | "samples">
  // A box, not a `let`: TypeScript does not see assignments made inside the hooks.
  const box: { first: First | null } = { first: null }
  let report: MergeReport | null = null
  const t = await measure(
    `merge ${spec.kind}`,
    () => {
      report = space!.merge()
    },
    {
      time: 0,
      iterations,
      warmupIterations: 1,
      beforeEach: () => {
        space = engine.createSpace({ size: spec.sizeBytes, name: spec.kind })
        populate(space, w)
        // Populating grows the frame store by reallocation; collect the old stores now, so the
        // timed merge does not pay for the previous iteration's garbage.
        ;(globalThis as { gc?: () => void }).gc?.()
      },
      afterEach: (mode) => {
        if (box.first === null && mode === "run" && report !== null) {
          const st = engine.stats()
          const table = engine.core.table
          // The reservation merge() made for its whole range stays until it is twice what the
          // table needs; a host's idle call (engine.maybeCompact) gives back the rest.
          const bytesRightAfter = table.size === 0 ? 0 : table.bytes / table.size
          engine.maybeCompact()
          box.first = {
            tableBytesRightAfter: bytesRightAfter,
            report,
            pagesShared: st.pagesShared,
            pagesSharing: st.pagesSharing,
            ksmZeroPages: st.ksmZeroPages,
            pagesUnique: st.pagesUnique,
            tableBytesPerEntry: table.size === 0 ? 0 : table.bytes / table.size,
            tableEntries: table.size,
          }
        }
        space!.dispose()
        space = null
      },
    },
  )
  if (box.first === null) throw new Error("merge bench recorded no run")
  const seconds = t.median / 1e3
  return {
    spec,
    seconds,
    bestSeconds: t.min / 1e3,
    gbPerSecond: spec.sizeBytes / GB / seconds,
    nsPerPage: (t.median * 1e6) / (spec.sizeBytes / PAGE),
    samples: t.samples,
    ...box.first,
  }
}

/** Check the first merge did what the kernel would; returns a problem or "". */
function verify(t: MergeTiming): string {
  const pages = t.spec.sizeBytes / PAGE
  if (t.spec.kind === "W") {
    const want = expectedCounts(pages, t.spec.dup, t.spec.contents, 256)
    if (t.pagesShared !== want.shared || t.pagesSharing !== want.sharing) {
      return `counters differ from the kernel rule: pagesShared ${t.pagesShared} (want ${want.shared}), pagesSharing ${t.pagesSharing} (want ${want.sharing})`
    }
  } else if (t.spec.kind === "unique") {
    if (t.pagesUnique !== pages) return `pagesUnique ${t.pagesUnique}, want ${pages}`
  } else if (t.ksmZeroPages !== pages) {
    return `ksmZeroPages ${t.ksmZeroPages}, want ${pages}`
  }
  return ""
}

/**
 * Cost of the building blocks merge() uses, per page of W: the sampled table key, the
 * full memcmp against a candidate, and the zero check. Time not explained by these is
 * bookkeeping (flags, table, refcounts) and call overhead.
 */
async function breakdown(opts: BenchOptions, w: Workload): Promise<BenchRow[]> {
  const engine = new Engine()
  const space = engine.createSpace({ size: w.spec.sizeBytes })
  populate(space, w)
  const pool = engine.pool
  const core = engine.core
  const pte = space.frameTable()
  const pages = space.pages
  const dup = w.dupPages
  const n = w.spec.contents
  const common = { time: opts.quick ? 200 : 600, iterations: 5 }
  const keyMs = (await measure("key", () => {
    let x = 0
    for (let pi = 0; pi < pages; pi++) x ^= core.keyOf(pte[pi]!)
    consume(x)
  }, common)).median
  const cmpMs = (await measure("memcmp", () => {
    let x = 0
    for (let pi = n; pi < dup; pi++) x |= pool.compare(pte[pi]!, pte[pi % n]!)
    consume(x)
  }, common)).median
  const zeroMs = (await measure("zero check", () => {
    let x = 0
    for (let pi = dup; pi < pages; pi++) x += pool.isZero(pte[pi]!) ? 1 : 0
    consume(x)
  }, common)).median
  const fullMs = (await measure("full checksum", () => {
    let x = 0
    for (let pi = 0; pi < pages; pi++) x ^= core.checksumOf(pte[pi]!)
    consume(x)
  }, common)).median
  space.dispose()
  const ns = (ms: number, count: number): number => (ms * 1e6) / Math.max(1, count)
  return [
    { name: "breakdown: sampled table key", value: ns(keyMs, pages), unit: "ns/page", detail: "core.keyOf over every page (64 words read)" },
    { name: "breakdown: memcmp of a duplicate vs its candidate", value: ns(cmpMs, dup - n), unit: "ns/page", detail: "pool.compare (Buffer.compare) of equal 4 KiB pages" },
    { name: "breakdown: all-zero check of a non-zero page", value: ns(zeroMs, pages - dup), unit: "ns/page", detail: "pool.isZero on random pages (exits at the first byte)" },
    { name: "breakdown: full-page checksum (scanner, not merge)", value: ns(fullMs, pages), unit: "ns/page", detail: `core.checksumOf: ${fmt(PAGE / ns(fullMs, pages))} GB/s` },
  ]
}

export const merge: BenchModule = {
  name: "merge",
  description: "issue 3: merge() throughput on W, all-unique and all-zero spaces; table bytes per entry",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const size = opts.quick ? 64 * MiB : 256 * MiB
    const iterations = opts.quick ? 3 : 7
    const mb = size / MiB
    const rows: BenchRow[] = []
    const notes: string[] = []
    const specs: WorkloadSpec[] = [
      { kind: "W", sizeBytes: size, dup: 0.5, contents: 16 },
      { kind: "unique", sizeBytes: size, dup: 0, contents: 0 },
      { kind: "zero", sizeBytes: size, dup: 0, contents: 0 },
    ]
    const goals = { W: 4, unique: 2.5, zero: 10 }
    const titles = { W: `merge(W), ${mb} MiB: half 16 contents repeated, half unique`, unique: `merge, ${mb} MiB all unique`, zero: `merge, ${mb} MiB all zero (populated)` }
    let wTiming: MergeTiming | null = null
    let uniqueTiming: MergeTiming | null = null
    let wl: Workload | null = null
    for (const spec of specs) {
      opts.log(`merge: ${spec.kind} (${mb} MiB, ${iterations} runs)`)
      const w = makeWorkload(spec)
      if (spec.kind === "W") wl = w
      const t = await timeMerge(spec, iterations, w)
      if (spec.kind === "W") wTiming = t
      if (spec.kind === "unique") uniqueTiming = t
      const problem = verify(t)
      if (problem !== "") notes.push(`**${spec.kind}: ${problem}**`)
      const r = t.report
      rows.push({
        name: titles[spec.kind],
        value: t.gbPerSecond,
        unit: "GB/s",
        goal: { op: ">=", target: goals[spec.kind] },
        detail: `${fmt(t.seconds * 1e3)} ms per merge (median of ${t.samples}; best ${fmt(t.spec.sizeBytes / GB / t.bestSeconds)} GB/s), ${fmt(t.nsPerPage)} ns/page; merged ${r.merged}, inserted ${r.inserted}, zeroMapped ${r.zeroMapped}${problem === "" ? "; counters as the kernel's" : ""}`,
      })
    }
    const wt = wTiming!
    rows.push({
      name: "table bytes per entry after merge(W) and engine.maybeCompact()",
      value: wt.tableBytesPerEntry,
      unit: "B/entry",
      goal: { op: "<=", target: 16 },
      detail: `table.bytes / table.size with ${wt.tableEntries} entries; right after merge(), with the reservation for the whole range still held: ${fmt(wt.tableBytesRightAfter)} B/entry (given back once it is twice what the table needs, or at the host's idle call)`,
    })
    rows.push({
      name: "table bytes per entry after merge(all unique)",
      value: uniqueTiming!.tableBytesPerEntry,
      unit: "B/entry",
      detail: `${uniqueTiming!.tableEntries} entries`,
    })
    opts.log("merge: per-page breakdown")
    rows.push(...(await breakdown(opts, wl!)))
    if (opts.quick) notes.push(`Quick mode: ${mb} MiB spaces instead of 256 MiB.`)
    return { rows, notes }
  },
}
