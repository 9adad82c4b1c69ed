/**
 * Merging real memory (issue 13): the images of scripts/workloads.ts (interpreter heaps, RAM
 * of emulated Linux guests), one space per instance in one engine, merged, checked against a
 * SHA-256 content oracle (scripts/workloads/oracle.ts):
 *
 * - frames in use == Σ over distinct contents of ceil(copies / maxPageSharing), zero pages on
 *   the zero frame (useZeroPages true) or merged as one more content (false);
 * - pagesShared / pagesSharing / ksmZeroPages as the kernel's chain rule gives them;
 * - every space reads back byte-exact;
 *
 * for merge() and for the "ksm" and "tracked" scanners run until their counters stop changing.
 *
 * Which workloads: QuickJS always (generated here if the cache lacks it, ~1 s), and the
 * cached ones of at most 256 MiB in all (.ci/run generates Pyodide and a small v86 fleet
 * before the suite; the default 4 x 128 MiB fleets take ~80 s more here, so they run only
 * when named). SKSM_REAL_WORKLOADS=all (or a comma list of names) runs exactly those,
 * generating the missing ones first (v86 takes 1–3 minutes).
 */
import { createHash } from "node:crypto"
import { beforeAll, describe, expect, it } from "vitest"
import { cachedWorkloads, loadImages, type Manifest, PAGE, WORKLOAD_NAMES, type WorkloadName } from "../../scripts/workloads/cache.ts"
import { ensureWorkload } from "../../scripts/workloads/generate.ts"
import { type Census, census, describeStats, type Expected, expected } from "../../scripts/workloads/oracle.ts"
import { type AddressSpace, Engine } from "../helpers/internals.ts"

const M = 256
const SEEDS = 8
/** Cached workloads larger than this run only when named in SKSM_REAL_WORKLOADS. */
const DEFAULT_MAX_BYTES = 256 << 20

/** The workloads this run checks (see the header). */
async function selectWorkloads(): Promise<Manifest[]> {
  const env = process.env["SKSM_REAL_WORKLOADS"]?.trim()
  const names: readonly WorkloadName[] =
    env === undefined || env === "" ? ["quickjs"] : env === "all" ? WORKLOAD_NAMES : WORKLOAD_NAMES.filter((n) => env.split(",").includes(n))
  const out = new Map<string, Manifest>()
  for (const name of names) {
    const r = await ensureWorkload(name, { log: (l) => process.stderr.write(`real-memory: ${l}\n`) })
    if ("missing" in r) process.stderr.write(`real-memory: ${name} skipped: ${r.missing}\n`)
    else out.set(name, r.manifest)
  }
  const small = (m: Manifest): boolean => m.instances.reduce((a, i) => a + i.bytes, 0) <= DEFAULT_MAX_BYTES
  if (env === undefined || env === "") for (const m of cachedWorkloads()) if (!out.has(m.name) && small(m)) out.set(m.name, m)
  return WORKLOAD_NAMES.flatMap((n) => out.get(n) ?? [])
}

const workloads = await selectWorkloads()

/**
 * Let the engine's deferred work run (merge() gives back unused table capacity on a later
 * turn, and that pending callback keeps the engine alive): without a turn between engines,
 * eight 512 MiB engines in one synchronous loop stay reachable at once (~10 GB).
 */
const laterTurn = (): Promise<void> => new Promise((r) => setImmediate(r))

/** One space per image, written in full (zero pages populated too, as a guest's RAM is). */
function load(engine: Engine, images: readonly Uint8Array[]): AddressSpace[] {
  return images.map((img, i) => {
    const s = engine.createSpace({ size: img.length, name: `instance-${i}` })
    s.write(0, img)
    return s
  })
}

function observed(engine: Engine): Expected {
  const st = engine.stats()
  return { framesInUse: engine.memory().framesInUse, pagesShared: st.pagesShared, pagesSharing: st.pagesSharing, ksmZeroPages: st.ksmZeroPages }
}

/** Each space reads back as its image; returns the first differing instance and page, or "". */
function mismatch(spaces: readonly AddressSpace[], images: readonly Uint8Array[]): string {
  const chunk = 16 << 20
  for (let i = 0; i < spaces.length; i++) {
    const img = Buffer.from(images[i]!.buffer, images[i]!.byteOffset, images[i]!.byteLength)
    for (let off = 0; off < img.length; off += chunk) {
      const n = Math.min(chunk, img.length - off)
      const got = Buffer.from(spaces[i]!.read(off, n))
      if (!got.equals(img.subarray(off, off + n))) {
        for (let p = 0; p < n; p += PAGE) if (!got.subarray(p, p + PAGE).equals(img.subarray(off + p, off + p + PAGE))) return `instance ${i}, page ${(off + p) / PAGE}`
      }
    }
  }
  return ""
}

/**
 * Diagnosis for a failure: the contents that sit on more frames than ceil(copies / M), with
 * where their pages are ("instance:page") and how many pages each frame holds.
 */
function splitContents(spaces: readonly AddressSpace[], images: readonly Uint8Array[], useZeroPages: boolean): string[] {
  const zero = Buffer.alloc(PAGE)
  const byContent = new Map<string, { frames: Map<number, number>; where: string[] }>()
  spaces.forEach((s, i) => {
    const img = Buffer.from(images[i]!.buffer, images[i]!.byteOffset, images[i]!.byteLength)
    for (let p = 0; p < s.pages; p++) {
      const page = img.subarray(p * PAGE, (p + 1) * PAGE)
      if (useZeroPages && page.equals(zero)) continue
      const h = createHash("sha256").update(page).digest("base64")
      const e = byContent.get(h) ?? { frames: new Map<number, number>(), where: [] }
      e.frames.set(s.frameAt(p), (e.frames.get(s.frameAt(p)) ?? 0) + 1)
      e.where.push(`${i}:${p}`)
      byContent.set(h, e)
    }
  })
  return [...byContent.values()]
    .filter((e) => e.frames.size > Math.ceil(e.where.length / M))
    .map((e) => `${e.where.length} copies on ${e.frames.size} frames (${[...e.frames.values()].join("+")}) at ${e.where.slice(0, 8).join(" ")}`)
}

/** Tick the scanner until pagesShared, pagesSharing and ksmZeroPages stay put for 3 full scans. */
function converge(engine: Engine, policy: "ksm" | "tracked"): number {
  const ksmd = engine.scanner({ policy, pagesToScan: 100_000, ...(policy === "tracked" ? { stablePasses: 1 } : {}) })
  let last = ""
  let still = 0
  for (let scans = 0; scans < 60; scans++) {
    const target = ksmd.scanCounters().fullScans + 1
    for (let i = 0; i < 100_000 && ksmd.scanCounters().fullScans < target; i++) ksmd.tick()
    const st = engine.stats()
    const now = `${st.pagesShared}/${st.pagesSharing}/${st.ksmZeroPages}`
    still = now === last ? still + 1 : 0
    last = now
    if (still >= 3) return ksmd.scanCounters().fullScans
  }
  throw new Error(`the ${policy} scanner did not converge in 60 full scans (last ${last})`)
}

describe.each(workloads.map((m) => [m.name, m] as const))("real memory: %s", (_name, m) => {
  let images: Uint8Array[] = []
  let c: Census
  beforeAll(() => {
    images = loadImages(m)
    c = census(images)
    process.stderr.write(`real-memory: ${m.name}, ${m.instances.length} instances: ${describeStats(c)}\n`)
  })

  // The table's keyed hash depends on the engine's seed: eight fixed seeds, so a failure is
  // reproducible on the same images (a missed merge showed up for some seeds only).
  it.each([true, false])("merge() with useZeroPages %s, seeds 1-8: frames and counters as the oracle, contents byte-exact", async (useZeroPages) => {
    const want = expected(c, M, useZeroPages)
    const failures: string[] = []
    for (let seed = 1; seed <= SEEDS; seed++) {
      const engine = new Engine({ maxPageSharing: M, useZeroPages, seed })
      const spaces = load(engine, images)
      for (const s of spaces) s.merge()
      const got = observed(engine)
      const bad = mismatch(spaces, images)
      if (bad !== "") failures.push(`seed ${seed}: contents differ at ${bad}`)
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        failures.push(`seed ${seed}: got ${JSON.stringify(got)}, oracle ${JSON.stringify(want)}; ${splitContents(spaces, images, useZeroPages).join("; ")}`)
      }
      for (const s of spaces) s.dispose()
      await laterTurn()
    }
    expect(failures).toEqual([])
  })

  it.each(["ksm", "tracked"] as const)("the %s scanner, until converged: frames and counters as the oracle, contents byte-exact", (policy) => {
    const engine = new Engine({ maxPageSharing: M, useZeroPages: true })
    const spaces = load(engine, images)
    for (const s of spaces) s.advise(0, s.size, "mergeable")
    converge(engine, policy)
    expect(mismatch(spaces, images)).toBe("")
    const got = observed(engine)
    const want = expected(c, M, true)
    expect(got, JSON.stringify(got) === JSON.stringify(want) ? "" : splitContents(spaces, images, true).join("; ")).toEqual(want)
  })
})

describe("real memory: the workloads", () => {
  it("has at least the QuickJS heaps", () => {
    expect(workloads.map((m) => m.name)).toContain("quickjs")
  })
})
