/**
 * Issue 13's benchmarks on real memory (the cached images of scripts/workloads.ts) and on W:
 *
 * - merge() CPU next to the kernel's ksmd CPU to converge on the same images
 *   (bench/kernel-real.ts; needs root and /sys/kernel/mm/ksm, else that part says why and is
 *   skipped): goal ≤ 0.5; pagesShared / pagesSharing / ksmZeroPages equal to the kernel's.
 * - merge() GB/s next to the memory-read bound measured in the same run (a plain loop reading
 *   every byte of the same images once, a 32-bit word at a time): goal within 2x.
 * - the worst case (bench/real-worst.ts).
 *
 * Workloads: QuickJS (generated here if missing) and whatever else is cached; `npx tsx
 * scripts/workloads.ts` generates the rest. Every merge() runs with useZeroPages true and
 * maxPageSharing 256, as the kernel does here, on freshly written spaces.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { cachedWorkloads, loadImages, type Manifest, workloadDir } from "../scripts/workloads/cache.ts"
import { ensureWorkload } from "../scripts/workloads/generate.ts"
import { census, expected, type Expected } from "../scripts/workloads/oracle.ts"
import { Engine } from "../test/helpers/internals.ts"
import { kernelOnImages, type KsmdConvergence } from "./kernel-real.ts"
import { type BenchModule, type BenchOptions, type BenchResult, type BenchRow, consume, fmt, GB, median, MiB } from "./lib.ts"
import { laterTurn, worstCase } from "./real-worst.ts"
import { imageW } from "./workload.ts"

/** A workload as the bench sees it: images in memory and, for the kernel, on disk. */
interface Subject {
  readonly name: string
  readonly images: Uint8Array[]
  readonly files: string[]
  readonly bytes: number
}

/** merge() of every image, timed: medians of wall and process CPU seconds, counters of the first run. */
export interface MergeFigures {
  readonly wall: number
  readonly cpu: number
  readonly counters: Expected
}

/** Write the images into fresh spaces of one engine (untimed), then time merge() of each. */
export async function timeMergeImages(images: readonly Uint8Array[], iterations: number): Promise<MergeFigures> {
  const walls: number[] = []
  const cpus: number[] = []
  let counters: Expected | null = null
  for (let it = 0; it <= iterations; it++) {
    const engine = new Engine({ maxPageSharing: 256, useZeroPages: true })
    const spaces = images.map((img) => {
      const s = engine.createSpace({ size: img.length })
      s.write(0, img)
      return s
    })
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    for (const s of spaces) s.merge()
    const wall = (performance.now() - t0) / 1e3
    const c = process.cpuUsage(c0)
    const st = engine.stats()
    counters ??= { framesInUse: engine.memory().framesInUse, pagesShared: st.pagesShared, pagesSharing: st.pagesSharing, ksmZeroPages: st.ksmZeroPages }
    if (it > 0) {
      walls.push(wall)
      cpus.push((c.user + c.system) / 1e6)
    }
    for (const s of spaces) s.dispose()
    await laterTurn()
  }
  return { wall: median(walls), cpu: median(cpus), counters: counters! }
}

function xorWords(w: Int32Array): number {
  let x = 0
  for (let i = 0; i < w.length; i++) x ^= w[i]!
  return x
}

/**
 * GB/s of reading every byte of the images once, median of `iterations`: `loop` is a plain JS
 * loop over 32-bit words (the issue's read bound); `native` is memcmp of each image against a
 * copy of it (Buffer.equals), counting the image's bytes only, so it reads twice as much: an
 * informative lower bound of what the memory system gives native code.
 */
export function readBound(images: readonly Uint8Array[], iterations: number): { loop: number; native: number } {
  const words = images.map((img) => new Int32Array(img.buffer, img.byteOffset, img.byteLength >>> 2))
  const bufs = images.map((img) => Buffer.from(img.buffer, img.byteOffset, img.byteLength))
  const copies = bufs.map((b) => Buffer.from(b))
  const bytes = images.reduce((a, b) => a + b.byteLength, 0)
  const loop: number[] = []
  const native: number[] = []
  for (let it = 0; it <= iterations; it++) {
    let t0 = performance.now()
    let x = 0
    for (const w of words) x ^= xorWords(w)
    consume(x)
    if (it > 0) loop.push((performance.now() - t0) / 1e3)
    t0 = performance.now()
    for (let i = 0; i < bufs.length; i++) x += bufs[i]!.equals(copies[i]!) ? 1 : 0
    consume(x)
    if (it > 0) native.push((performance.now() - t0) / 1e3)
  }
  return { loop: bytes / GB / median(loop), native: bytes / GB / median(native) }
}

function subjectOf(m: Manifest): Subject {
  const images = loadImages(m)
  return { name: m.name, images, files: m.instances.map((i) => join(workloadDir(m.name), i.file)), bytes: images.reduce((a, b) => a + b.length, 0) }
}

/** Workload W (half 16 contents repeated, half random) as one image, also written to `dir`. */
function subjectW(sizeBytes: number, dir: string): Subject {
  const img = imageW(sizeBytes)
  const file = join(dir, "W.bin")
  writeFileSync(file, img)
  return { name: `W ${sizeBytes / MiB} MiB`, images: [img], files: [file], bytes: sizeBytes }
}

const diff = (a: Omit<Expected, "framesInUse">, b: Omit<Expected, "framesInUse">): number =>
  Math.abs(a.pagesShared - b.pagesShared) + Math.abs(a.pagesSharing - b.pagesSharing) + Math.abs(a.ksmZeroPages - b.ksmZeroPages)
const counts = (e: Omit<Expected, "framesInUse">): string => `${e.pagesShared} / ${e.pagesSharing} / ${e.ksmZeroPages}`

export const realMemory: BenchModule = {
  name: "real-memory",
  description: "issue 13: merge() on real memory (interpreter heaps, emulated Linux guests) and W, next to the kernel's ksmd and the memory-read bound; the worst case",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const iterations = opts.quick ? 3 : 7
    const rows: BenchRow[] = []
    const notes: string[] = [`Load average ${loadavg().map((x) => fmt(x)).join(" / ")} (1/5/15 min) when the bench started.`]
    const q = await ensureWorkload("quickjs", { log: opts.log })
    if ("missing" in q) notes.push(`QuickJS heaps: ${q.missing}`)
    const manifests = cachedWorkloads()
    const absent = ["quickjs", "pyodide-seeded", "pyodide-random", "v86-booted", "v86-cloned"].filter((n) => !manifests.some((m) => m.name === n))
    if (absent.length > 0) notes.push(`Not cached, so not measured: ${absent.join(", ")} (generate with \`npx tsx scripts/workloads.ts\`).`)
    const tmp = mkdtempSync(join(tmpdir(), "sksm-real-"))
    try {
      const subjects = [...manifests.map(subjectOf), subjectW(opts.quick ? 64 * MiB : 256 * MiB, tmp)]
      opts.log(`real-memory: kernel ksmd on ${subjects.map((s) => s.name).join(", ")}`)
      const kernel = await kernelOnImages(subjects.map((s) => ({ label: s.name, files: s.files })), { log: opts.log })
      if (kernel.status === "skipped") notes.push(`Kernel comparison skipped: ${kernel.reason}.`)
      // Warm the JIT on W first, so the first workload measured is not charged for compiling merge().
      await timeMergeImages(subjects.at(-1)!.images, 2)
      const table = ["| workload | MiB | merge() wall / CPU | GB/s (read bound: JS loop; native memcmp) | ksmd CPU to converge (total) | scans | sksm shared / sharing / zero | kernel shared / sharing / zero | oracle |", "|---|---|---|---|---|---|---|---|---|"]
      for (const s of subjects) {
        opts.log(`real-memory: merge() of ${s.name} (${iterations} runs)`)
        const t = await timeMergeImages(s.images, iterations)
        const bound = readBound(s.images, iterations)
        const oracle = expected(census(s.images), 256, true)
        const gbps = s.bytes / GB / t.wall
        const k: KsmdConvergence | undefined = kernel.status === "ok" ? kernel.runs.find((r) => r.label === s.name) : undefined
        const oracleDiff = diff(t.counters, oracle) + Math.abs(t.counters.framesInUse - oracle.framesInUse)
        rows.push({ name: `merge(): ${s.name}`, value: gbps, unit: "GB/s", detail: `${fmt(t.wall * 1e3)} ms wall, ${fmt(t.cpu * 1e3)} ms CPU (medians of ${iterations}); read bound ${fmt(bound.loop)} GB/s (JS loop), ${fmt(bound.native)} GB/s (native memcmp)` })
        rows.push({ name: `read bound / merge(): ${s.name}`, value: bound.loop / gbps, unit: "x", goal: { op: "<=", target: 2 }, detail: `a JS loop reading every byte once (32-bit words) over the same images, same run; native memcmp read bound / merge(): ${fmt(bound.native / gbps)}x` })
        rows.push({ name: `counters and frames vs the oracle: ${s.name}`, value: oracleDiff, unit: "pages off", goal: { op: "<=", target: 0 }, detail: `sksm ${counts(t.counters)}, frames ${t.counters.framesInUse}; oracle ${counts(oracle)}, frames ${oracle.framesInUse}` })
        if (k !== undefined) {
          rows.push({ name: `merge() CPU / ksmd CPU: ${s.name}`, value: t.cpu / k.cpuToConverge, unit: "x", goal: { op: "<=", target: 0.5 }, detail: `${fmt(t.cpu)} s vs ksmd ${fmt(k.cpuToConverge)} s to converge (${fmt(k.cpuTotal)} s until two unchanged scans)${k.converged ? "" : "; ksmd DID NOT CONVERGE in the time bound"}` })
          rows.push({ name: `counters vs the kernel's: ${s.name}`, value: diff(t.counters, k), unit: "pages off", goal: { op: "<=", target: 0 }, detail: `sksm ${counts(t.counters)}; kernel ${counts(k)}` })
        }
        const kc = k === undefined ? ["", "", ""] : [`${fmt(k.cpuToConverge)} s (${fmt(k.cpuTotal)} s)`, String(k.fullScans), counts(k)]
        table.push(`| ${s.name} | ${fmt(s.bytes / MiB)} | ${fmt(t.wall * 1e3)} / ${fmt(t.cpu * 1e3)} ms | ${fmt(gbps)} (${fmt(bound.loop)}; native ${fmt(bound.native)}) | ${kc[0]} | ${kc[1]} | ${counts(t.counters)} | ${kc[2]} | ${counts(oracle)} |`)
      }
      notes.push(table.join("\n"))
      if (kernel.status === "ok") {
        notes.push(
          `ksmd at pages_to_scan 100000, sleep_millisecs 0, use_zero_pages 1, max_page_sharing 256, until pages_sharing + ksm_zero_pages stayed unchanged for two full scans; CPU from /proc/<ksmd>/schedstat. ` +
            `Settings before (restored after run=2): ${Object.entries(kernel.settingsBefore).map(([a, b]) => `${a}=${b}`).join(", ")}.` +
            (kernel.restoreFailures.length > 0 ? ` **Could not restore: ${kernel.restoreFailures.join("; ")}**` : " All restored."),
        )
      }
      opts.log("real-memory: worst case")
      const worst = await worstCase(opts.quick ? 3 : 7)
      rows.push(...worst.rows)
      notes.push(...worst.notes)
    } finally {
      rmSync(tmp, { recursive: true, force: true })
    }
    return { rows, notes }
  },
}
