/**
 * Issue 15's snapshot store (sksm/snapshot, pack-file backend) on real fleets: the demo's QuickJS
 * interpreters, booted here, and the cached real-memory images of scripts/workloads.ts when
 * present (.cache/workloads, or $SKSM_WORKLOADS_DIR). For each fleet:
 *
 *   - bytes on disk of the store / logical bytes, next to the plain images and to the images
 *     compressed whole, image by image: deflate (node:zlib, level 6), brotli (node:zlib, quality
 *     5: quality 11 takes minutes per GiB), and zstd -3 / lz4 -1 (Debian's command-line tools:
 *     Node 20's zlib has no zstd, and no npm package is added for a measurement);
 *   - what per-page compression would add to the store (each distinct page deflated, or
 *     brotli'd, on its own, as a compressing pack backend would store it);
 *   - save and restore throughput (logical GB/s; restore verifies every page and merges);
 *   - RSS growth of the process when the fleet is restored, next to the engine's frames;
 *   - lazy restore (`{ lazy: true }`): the latency from the restore() call to the first readU32
 *     of a random page returning (median and p99 over many restores), the fault alone, the time
 *     to the full fill (filled and merged), and RssAnon (/proc/self/status) of the fleet right
 *     after a lazy restore vs an eager one.
 */
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { brotliCompressSync, constants, deflateRawSync, deflateSync } from "node:zlib"
import { boot, linearMemory, shutdown } from "../src/cli/fleet.ts"
import { Engine } from "../src/index.ts"
import { SnapshotStore } from "../src/snapshot/index.ts"
import { cachedWorkloads, loadImages } from "../scripts/workloads/cache.ts"
import { spawnRestoreRss } from "./snapshot-rss.ts"
import { type BenchModule, type BenchOptions, type BenchResult, type BenchRow, collectGarbage, fmt, GB, MiB, PAGE } from "./lib.ts"

interface Fleet {
  readonly name: string
  readonly images: readonly Uint8Array[]
}

/** Bytes of `data` compressed by a command-line tool, or undefined when it is not installed. */
function cliCompressed(cmd: string, args: readonly string[], data: Uint8Array): number | undefined {
  const r = spawnSync(cmd, args, { input: data, maxBuffer: data.length + (64 << 20) })
  if (r.error !== undefined || r.status !== 0) return undefined
  return r.stdout.length
}

function sum(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0)
}

/** The distinct non-zero pages of a fleet (what the store holds, one merge domain). */
export function distinctPages(images: readonly Uint8Array[]): Uint8Array[] {
  const seen = new Set<string>()
  const out: Uint8Array[] = []
  for (const img of images) {
    const words = new Uint32Array(img.buffer, img.byteOffset, img.byteLength >>> 2)
    for (let off = 0; off + PAGE <= img.byteLength; off += PAGE) {
      let zero = true
      for (let i = off >>> 2, e = (off + PAGE) >>> 2; i < e; i++)
        if (words[i] !== 0) {
          zero = false
          break
        }
      if (zero) continue
      const page = img.subarray(off, off + PAGE)
      const h = createHash("sha256").update(page).digest("base64")
      if (seen.has(h)) continue
      seen.add(h)
      out.push(page)
    }
  }
  return out
}


/** Resident set after a full garbage collection. */
const rss = () => {
  collectGarbage()
  collectGarbage()
  return process.memoryUsage().rss
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

/** Lazy restore of snapshot "fleet" from `store`: first-access latency, full fill, RSS vs eager. */
async function measureLazy(f: Fleet, store: SnapshotStore, opts: BenchOptions, rows: BenchRow[]): Promise<void> {
  opts.log(`snapshot: ${f.name}: lazy restore`)
  const logical = sum(f.images.map((i) => i.byteLength))
  let x = 0x9e3779b9
  const rand = (n: number) => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) % n
  }
  // The non-zero pages of each image (the ones a lazy restore leaves missing).
  const nonZero = f.images.map((img) => {
    const words = new Uint32Array(img.buffer, img.byteOffset, img.byteLength >>> 2)
    const out: number[] = []
    for (let p = 0; p < img.byteLength / PAGE; p++) {
      for (let i = (p * PAGE) >>> 2, e = ((p + 1) * PAGE) >>> 2; i < e; i++)
        if (words[i] !== 0) {
          out.push(p)
          break
        }
    }
    return out
  })
  const runs = opts.quick ? 30 : 200
  const anyPage: number[] = []
  const missingPage: number[] = []
  const fault: number[] = []
  for (let i = 0; i < 2 * runs; i++) {
    const e = new Engine()
    const si = rand(f.images.length)
    // Even runs: a random page of the space (mostly zero pages in these fleets); odd runs: a random non-zero page (a fault).
    const wantMissing = i % 2 === 1 && nonZero[si]!.length > 1
    const pages = Math.ceil(f.images[si]!.byteLength / PAGE)
    const page = wantMissing ? nonZero[si]![rand(nonZero[si]!.length)]! : rand(pages)
    const addr = page * PAGE + 4 * rand(PAGE / 4)
    const t0 = performance.now()
    const r = await store.restore("fleet", e, { lazy: true })
    r.spaces[si]!.readU32(addr)
    const t1 = performance.now()
    ;(wantMissing ? missingPage : anyPage).push(t1 - t0)
    if (wantMissing) {
      // A second fault in the same space: the page read and check alone (the first one also paid the engine's first slab).
      let other = page
      while (other === page) other = nonZero[si]![rand(nonZero[si]!.length)]!
      const t2 = performance.now()
      r.spaces[si]!.readU32(other * PAGE)
      fault.push(performance.now() - t2)
    }
    // Disposing stops the filler; the next restore starts with an idle store.
    for (const s of r.spaces) s.dispose()
    await r.done
  }
  for (const xs of [anyPage, missingPage, fault]) xs.sort((a, b) => a - b)
  const q = (xs: readonly number[]) => `median ${fmt(quantile(xs, 0.5) * 1e3)} µs, p99 ${fmt(quantile(xs, 0.99) * 1e3)} µs, max ${fmt(xs[xs.length - 1]! * 1e3)} µs`
  rows.push({ name: `lazy restore, first access (random page): ${f.name}`, value: quantile(anyPage, 0.5) * 1e3, unit: "µs", detail: `restore() call to the first readU32 of a random page returning, ${anyPage.length} restores: ${q(anyPage)} (manifest read, ${f.images.length} spaces created and registered)` })
  if (missingPage.length > 0) rows.push({ name: `lazy restore, first access (random non-zero page): ${f.name}`, value: quantile(missingPage, 0.5) * 1e3, unit: "µs", detail: `the same to a page that must be fetched, ${missingPage.length} restores: ${q(missingPage)}` })
  if (fault.length > 0) rows.push({ name: `lazy restore, one page fault: ${f.name}`, value: quantile(fault, 0.5) * 1e3, unit: "µs", detail: `a second readU32 of another missing page: one pread of the record and its keyed-hash check, ${fault.length} samples: ${q(fault)}` })

  // Time to the full fill (filled and merged), next to an eager restore.
  let t0 = performance.now()
  const eagerSpaces = await store.restore("fleet", new Engine())
  const eagerS = (performance.now() - t0) / 1e3
  for (const s of eagerSpaces) s.dispose()
  const e = new Engine()
  t0 = performance.now()
  const r = await store.restore("fleet", e, { lazy: true })
  const returnedMs = performance.now() - t0
  // The event loop stays responsive during the fill: the longest gap between timer ticks.
  let last = performance.now()
  let worstGap = 0
  const ticker = setInterval(() => {
    const now = performance.now()
    worstGap = Math.max(worstGap, now - last)
    last = now
  }, 1)
  await r.done
  clearInterval(ticker)
  const fillS = (performance.now() - t0) / 1e3
  let exact = true
  r.spaces.forEach((s, i) => {
    const img = f.images[i]!
    const b = s.read(0, img.byteLength)
    exact &&= Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.from(img.buffer, img.byteOffset, img.byteLength))
  })
  for (const s of r.spaces) s.dispose()
  if (!exact) throw new Error(`lazy restore of ${f.name} is not byte-exact`)
  rows.push({ name: `lazy restore, full fill: ${f.name}`, value: fillS * 1e3, unit: "ms", detail: `restore() returned after ${fmt(returnedMs)} ms; filled (1 MiB chunks, one per event-loop turn) and merged after ${fmt(fillS * 1e3)} ms (${fmt(logical / GB / fillS)} GB/s logical), vs ${fmt(eagerS * 1e3)} ms for an eager restore; longest gap between 1 ms timer ticks meanwhile ${fmt(worstGap)} ms (the final merge runs in one turn, as in an eager restore); byte-exact: yes` })

}

/** RssAnon of the fleet restored lazily vs eagerly, each in a fresh child process (the store must be closed). */
async function measureRss(f: Fleet, dir: string, opts: BenchOptions, rows: BenchRow[]): Promise<void> {
  opts.log(`snapshot: ${f.name}: RssAnon of restores (child processes)`)
  const logical = sum(f.images.map((i) => i.byteLength))
  const lazy = await spawnRestoreRss(dir, "lazy")
  const eager = await spawnRestoreRss(dir, "eager")
  rows.push({ name: `RssAnon of a lazily restored fleet right after restore: ${f.name}`, value: lazy.restoredBytes / MiB, unit: "MiB", detail: `fresh process, after a full GC: ${lazy.missingPages} pages missing, ${fmt(lazy.framesInUseBytes / MiB)} MiB of frames; vs ${fmt(eager.restoredBytes / MiB)} MiB for an eager restore (${fmt(eager.framesInUseBytes / MiB)} MiB of frames in use, merged); ${fmt((lazy.filledBytes ?? Number.NaN) / MiB)} MiB once the lazy fill is done (filled and merged); ${fmt(logical / MiB)} MiB logical` })
}

async function measure(f: Fleet, opts: BenchOptions, rows: BenchRow[], table: string[]): Promise<void> {
  const logical = sum(f.images.map((i) => i.byteLength))
  const dir = mkdtempSync(join(tmpdir(), "sksm-bench-snapshot-"))
  try {
    opts.log(`snapshot: ${f.name}: save`)
    const engine = new Engine()
    const spaces = f.images.map((img, i) => {
      const s = engine.createSpace({ size: Math.ceil(img.byteLength / PAGE) * PAGE, name: `${f.name}-${i}` })
      s.write(0, img)
      return s
    })
    const store = await SnapshotStore.open(dir)
    let t0 = performance.now()
    const saved = await store.save(spaces, { name: "fleet" })
    const saveS = (performance.now() - t0) / 1e3
    // A second fleet of the same images (another host's copy): what it costs to save again.
    t0 = performance.now()
    const again = await store.save(spaces, { name: "fleet-again" })
    const againS = (performance.now() - t0) / 1e3
    // The same fleet into a store with compress: "deflate".
    const zdir = join(dir, "deflate")
    const zstore = await SnapshotStore.open(zdir, { compress: "deflate" })
    t0 = performance.now()
    await zstore.save(spaces, { name: "fleet" })
    const zSaveS = (performance.now() - t0) / 1e3
    const zst = await zstore.stats()
    t0 = performance.now()
    const zback = await zstore.restore("fleet", new Engine())
    const zRestoreS = (performance.now() - t0) / 1e3
    for (const s of zback) s.dispose()
    await zstore.close()
    for (const s of spaces) s.dispose()
    await store.delete("fleet-again")
    const st = await store.stats()

    opts.log(`snapshot: ${f.name}: restore`)
    const rssBefore = rss()
    const e2 = new Engine()
    t0 = performance.now()
    const back = await store.restore("fleet", e2)
    const restoreS = (performance.now() - t0) / 1e3
    const rssGrowth = rss() - rssBefore
    const framesBytes = e2.memory().bytesInUse
    const reserved = e2.memory().bytesReserved
    // Byte-exact check of the restore (outside the timing).
    let exact = true
    back.forEach((s, i) => {
      const img = f.images[i]!
      const r = s.read(0, img.byteLength)
      exact &&= Buffer.from(r.buffer, r.byteOffset, r.byteLength).equals(Buffer.from(img.buffer, img.byteOffset, img.byteLength))
    })
    for (const s of back) s.dispose()
    await measureLazy(f, store, opts, rows)
    await store.close()
    await measureRss(f, dir, opts, rows)

    opts.log(`snapshot: ${f.name}: compressors`)
    const deflate = sum(f.images.map((i) => deflateSync(i, { level: 6 }).length))
    const brotli = sum(f.images.map((i) => brotliCompressSync(i, { params: { [constants.BROTLI_PARAM_QUALITY]: 5, [constants.BROTLI_PARAM_SIZE_HINT]: i.byteLength } }).length))
    const zstdParts = f.images.map((i) => cliCompressed("zstd", ["-3", "-q", "-c"], i))
    const lz4Parts = f.images.map((i) => cliCompressed("lz4", ["-1", "-q", "-c"], i))
    const zstd = zstdParts.includes(undefined) ? undefined : sum(zstdParts as number[])
    const lz4 = lz4Parts.includes(undefined) ? undefined : sum(lz4Parts as number[])
    const pages = distinctPages(f.images)
    t0 = performance.now()
    const pageDeflate = sum(pages.map((p) => deflateRawSync(p, { level: 6 }).length))
    const pageDeflateS = (performance.now() - t0) / 1e3
    const pageBrotli = sum(pages.map((p) => brotliCompressSync(p, { params: { [constants.BROTLI_PARAM_QUALITY]: 5 } }).length))
    // A compressing pack would add its record headers to the compressed payload, as now.
    const overhead = st.diskBytes - st.storedBytes
    const withDeflate = pageDeflate + overhead

    rows.push({ name: `store on disk / logical: ${f.name}`, value: st.diskBytes / logical, unit: "x", detail: `${fmt(st.diskBytes / MiB)} MiB on disk for ${fmt(logical / MiB)} MiB of ${f.images.length} images (${fmt(st.nonZeroBytes / MiB)} MiB non-zero, ${st.storedPages} distinct pages); ${fmt(logical / st.diskBytes)}x smaller` })
    rows.push({ name: `store on disk / images deflated: ${f.name}`, value: st.diskBytes / deflate, unit: "x", detail: `${fmt(st.diskBytes / MiB)} MiB vs ${fmt(deflate / MiB)} MiB (each image deflated whole, level 6)` })
    rows.push({ name: `store + per-page deflate / images deflated: ${f.name}`, value: withDeflate / deflate, unit: "x", detail: `${fmt(withDeflate / MiB)} MiB (distinct pages deflated one by one: ${fmt(pageDeflate / MiB)} MiB, ${fmt(pages.length * PAGE / GB / pageDeflateS)} GB/s) vs ${fmt(deflate / MiB)} MiB` })
    rows.push({ name: `store with compress "deflate" on disk / logical: ${f.name}`, value: zst.diskBytes / logical, unit: "x", detail: `${fmt(zst.diskBytes / MiB)} MiB on disk (${fmt(zst.compressionRatio)}x compression of the stored pages); ${fmt(zst.diskBytes / deflate)}x the images deflated whole; save ${fmt(logical / GB / zSaveS)} GB/s, restore ${fmt(logical / GB / zRestoreS)} GB/s` })
    rows.push({ name: `save: ${f.name}`, value: logical / GB / saveS, unit: "GB/s", detail: `${fmt(saveS * 1e3)} ms for ${fmt(logical / MiB)} MiB logical (${saved.newPages} pages written, fsync'd); saving the same fleet again (pages held): ${fmt(logical / GB / againS)} GB/s, ${again.newPages} pages written` })
    rows.push({ name: `restore: ${f.name}`, value: logical / GB / restoreS, unit: "GB/s", detail: `${fmt(restoreS * 1e3)} ms (every page verified, spaces merged); byte-exact: ${exact ? "yes" : "NO"}` })
    rows.push({ name: `RSS growth of the restored fleet: ${f.name}`, value: rssGrowth / MiB, unit: "MiB", detail: `noisy (slabs freed by the save side are reused); the engine after restore (merged): ${fmt(framesBytes / MiB)} MiB of frames in use, ${fmt(reserved / MiB)} MiB reserved, for ${fmt(logical / MiB)} MiB logical` })
    const m = (x: number | undefined) => (x === undefined ? "n/a" : `${fmt(x / MiB)}`)
    table.push(`| ${f.name} | ${f.images.length} | ${m(logical)} | ${m(st.nonZeroBytes)} | **${m(st.diskBytes)}** | **${m(zst.diskBytes)}** (est. ${m(withDeflate)}) | ${m(pageBrotli + overhead)} | ${m(deflate)} | ${m(brotli)} | ${m(zstd)} | ${m(lz4)} |`)
    if (!exact) throw new Error(`restore of ${f.name} is not byte-exact`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

export const snapshotBench: BenchModule = {
  name: "snapshot",
  description: "issue 15: the snapshot store on real fleets (QuickJS interpreters; cached real-memory images): bytes on disk vs plain and compressed images, save/restore GB/s, RSS of a restored fleet, lazy restore's first-access latency and RSS",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const rows: BenchRow[] = []
    const notes: string[] = []
    const table = [
      "| fleet | images | logical MiB | non-zero MiB | store on disk MiB | store with compress: deflate, MiB (level 1; est. at level 6) | store + per-page brotli-5 MiB | images deflate-6 MiB | images brotli-5 MiB | images zstd -3 MiB | images lz4 -1 MiB |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    const n = opts.quick ? 4 : 8
    opts.log(`snapshot: booting ${n} QuickJS interpreters`)
    const images: Uint8Array[] = []
    for (let i = 0; i < n; i++) {
      const inst = await boot(i)
      images.push(linearMemory(inst).slice())
      shutdown(inst)
    }
    const fleets: Fleet[] = [{ name: `${n} QuickJS interpreters (demo)`, images }]
    const cached = cachedWorkloads()
    for (const m of cached) {
      if (opts.quick && fleets.length > 1) break
      fleets.push({ name: `workload ${m.name}`, images: loadImages(m) })
    }
    if (cached.length === 0) notes.push("No cached real-memory workloads (.cache/workloads or $SKSM_WORKLOADS_DIR; `npx tsx scripts/workloads.ts` generates them): only the demo's interpreters measured.")
    for (const f of fleets) await measure(f, opts, rows, table)
    notes.push(table.join("\n"))
    notes.push(
      "Whole-image compressors see each image alone (as a host compressing its save files would); the store sees the whole fleet and keeps each distinct non-zero page once. Per-page columns compress each distinct page on its own, as a compressing pack backend would (record headers as the store has them now). zstd and lz4 are Debian's command-line tools (Node 20's zlib has neither; no npm package added for the measurement); n/a when not installed. RSS growth is the process's resident set after restore minus before, each after a full GC (the restored spaces are held; the images they came from are held throughout).",
    )
    return { rows, notes }
  },
}
