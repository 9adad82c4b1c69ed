/**
 * Issue 15's choice of the embedded default, measured: the pack files (SnapshotStore.open, the
 * library's own backend) against minimal page stores on LMDB (`lmdb`), SQLite (`better-sqlite3`)
 * and LevelDB (`classic-level`) behind the same SnapshotBackend seam (bench/stores/), so hashing,
 * manifests and integrity checks are the same code and only the storage differs. Per fleet
 * (v86 guests when cached, the demo's QuickJS interpreters, a synthetic fleet), in rounds with
 * the stores' order rotated each round, medians and min..max over the rounds:
 *
 *   - save: logical bytes / s of a first save into an empty store (every distinct page written);
 *   - re-save: the same spaces saved again under another name (every page a dedup hit);
 *   - bytes on disk (allocated blocks of the directory after close), open time (reopen with two
 *     snapshots), restore: logical bytes / s of restore(merge: false) after the reopen (every
 *     page read and checked against its id; the page cache is warm), byte-exact checked untimed.
 *
 * Then per-page compression of each fleet's distinct pages: deflate (node:zlib), zstd
 * (@mongodb-js/zstd) and lz4 (lz4-napi) against none: ratio and MB/s each way.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type AddressSpace, Engine } from "../src/index.ts"
import type { Codec } from "./codecs.ts"
import { type Fleet, quickjsFleet, syntheticFleet, v86Fleet } from "./fleets.ts"
import { type BenchModule, type BenchOptions, type BenchResult, type BenchRow, collectGarbage, fmt, GB, median, MiB, PAGE } from "./lib.ts"
import { distinctPages } from "./snapshot.ts"
import { duBytes } from "./stores/du.ts"
import type { EmbeddedStore } from "./stores/index.ts"
import { type RawTiming, rawRound, storedPages } from "./stores/raw.ts"


interface Samples {
  save: number[]
  resave: number[]
  restore: number[]
  openMs: number[]
  disk: number[]
  stored: number
}

const seconds = async (f: () => Promise<unknown>): Promise<number> => {
  collectGarbage()
  const t0 = performance.now()
  await f()
  return (performance.now() - t0) / 1e3
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
}

/** One store's round on one fleet: save, re-save, close, du, reopen, restore. */
async function round(kind: EmbeddedStore, f: Fleet, spaces: readonly AddressSpace[], s: Samples, check: boolean): Promise<void> {
  const logical = spaces.reduce((a, x) => a + x.size, 0)
  const dir = mkdtempSync(join(tmpdir(), "sksm-bench-stores-"))
  try {
    let store = await kind.open(dir)
    s.save.push(logical / GB / (await seconds(() => store.save(spaces, { name: "a" }))))
    s.resave.push(logical / GB / (await seconds(() => store.save(spaces, { name: "b" }))))
    if (check) s.stored = (await store.stats()).storedPages
    await store.close()
    s.disk.push(duBytes(dir))
    s.openMs.push((await seconds(async () => (store = await kind.open(dir)))) * 1e3)
    let back: AddressSpace[] = []
    s.restore.push(logical / GB / (await seconds(async () => (back = await store.restore("a", new Engine(), { merge: false })))))
    if (check) back.forEach((b, i) => {
      if (!sameBytes(b.read(0, f.images[i]!.byteLength), f.images[i]!)) throw new Error(`${kind.name}: restore of ${f.name} is not byte-exact (space ${i})`)
    })
    for (const b of back) b.dispose()
    await store.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const range = (xs: readonly number[], scale = 1) => `${fmt(Math.min(...xs) * scale)}..${fmt(Math.max(...xs) * scale)}`
const cell = (xs: readonly number[], scale = 1) => `${fmt(median(xs) * scale)} (${range(xs, scale)})`

async function measureStores(stores: readonly EmbeddedStore[], f: Fleet, rounds: number, opts: BenchOptions, rows: BenchRow[], notes: string[]): Promise<void> {
  const engine = new Engine()
  const spaces = f.images.map((img, i) => {
    const s = engine.createSpace({ size: img.byteLength, name: `img-${i}` })
    s.write(0, img)
    return s
  })
  const logical = f.images.reduce((a, i) => a + i.byteLength, 0)
  const distinct = distinctPages(f.images).length
  const samples = new Map<string, Samples>(stores.map((k) => [k.name, { save: [], resave: [], restore: [], openMs: [], disk: [], stored: 0 }]))
  for (let r = 0; r < rounds; r++) {
    // Rotate the order each round: no store always runs first (cold) or last.
    for (let k = 0; k < stores.length; k++) {
      const kind = stores[(k + r) % stores.length]!
      opts.log(`snapshot-stores: ${f.name}: round ${r + 1}/${rounds}: ${kind.name}`)
      await round(kind, f, spaces, samples.get(kind.name)!, r === 0)
    }
  }
  for (const s of spaces) s.dispose()
  const table = [
    `**${f.name}**: ${fmt(logical / MiB)} MiB logical, ${distinct.toLocaleString("en-US")} distinct non-zero pages (${fmt((distinct * PAGE) / MiB)} MiB). Median of ${rounds} rounds (min..max); GB/s of logical bytes; baseline: pack files.`,
    "",
    "| store | durability per write | save GB/s | re-save (all hits) GB/s | restore GB/s | open ms | on disk MiB | disk / distinct bytes | pages stored |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for (const kind of stores) {
    const s = samples.get(kind.name)!
    const disk = median(s.disk)
    table.push(`| ${kind.name} | ${kind.durability} | ${cell(s.save)} | ${cell(s.resave)} | ${cell(s.restore)} | ${cell(s.openMs)} | ${fmt(disk / MiB)} | ${fmt(disk / (distinct * PAGE))} | ${s.stored}${s.stored === distinct ? "" : ` (**not** ${distinct})`} |`)
    if (s.stored !== distinct) throw new Error(`${kind.name} stored ${s.stored} pages of ${f.name}, expected ${distinct} distinct`)
  }
  notes.push(table.join("\n"))
  const pack = samples.get("pack files")!
  const best = (pick: (s: Samples) => number) => stores.map((k) => [k.name, pick(samples.get(k.name)!)] as const).reduce((a, b) => (b[1] > a[1] ? b : a))
  const [bestSave, bestSaveV] = best((s) => median(s.save))
  const [bestRestore, bestRestoreV] = best((s) => median(s.restore))
  rows.push({ name: `pack files save: ${f.name}`, value: median(pack.save), unit: "GB/s", detail: `logical bytes; ${range(pack.save)} over ${rounds} rounds; fastest store: ${bestSave} ${fmt(bestSaveV)} GB/s` })
  rows.push({ name: `pack files restore: ${f.name}`, value: median(pack.restore), unit: "GB/s", detail: `logical bytes, merge: false; ${range(pack.restore)}; fastest store: ${bestRestore} ${fmt(bestRestoreV)} GB/s` })
  rows.push({ name: `pack files on disk / distinct page bytes: ${f.name}`, value: median(pack.disk) / (distinct * PAGE), unit: "x", detail: `${fmt(median(pack.disk) / MiB)} MiB; LMDB ${fmt(median(samples.get("LMDB")!.disk) / MiB)}, SQLite ${fmt(median(samples.get("SQLite")!.disk) / MiB)}, LevelDB ${fmt(median(samples.get("LevelDB")!.disk) / MiB)} MiB` })
}

/** The backends alone on a fleet's distinct pages (no hashing, no checks): write, reopen, read. */
async function measureRaw(stores: readonly EmbeddedStore[], f: Fleet, rounds: number, opts: BenchOptions, notes: string[]): Promise<void> {
  const pages = storedPages(distinctPages(f.images))
  const bytes = pages.length * PAGE
  opts.log(`snapshot-stores: ${f.name}: backends alone`)
  const t = new Map<string, RawTiming[]>(stores.map((k) => [k.name, []]))
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < stores.length; k++) {
      const kind = stores[(k + r) % stores.length]!
      collectGarbage()
      t.get(kind.name)!.push(await rawRound(kind.backend, pages, r === 0))
    }
  }
  const table = [
    `**Backends alone, ${f.name}**: its ${pages.length.toLocaleString("en-US")} distinct pages (${fmt(bytes / MiB)} MiB), ids precomputed: putPages 4,096 at a time (each durable) + one manifest, close, reopen, getPages of all. Median of ${rounds} rounds (min..max); MB/s of page bytes; baseline: pack files.`,
    "",
    "| backend | write MB/s | reopen ms | read MB/s |",
    "|---|---|---|---|",
  ]
  for (const kind of stores) {
    const xs = t.get(kind.name)!
    table.push(`| ${kind.name} | ${cell(xs.map((x) => bytes / 1e6 / x.writeS))} | ${cell(xs.map((x) => x.openMs))} | ${cell(xs.map((x) => bytes / 1e6 / x.readS))} |`)
  }
  notes.push(table.join("\n"))
}

/** Pages sampled evenly down to at most `cap` bytes. */
function sample(pages: readonly Uint8Array[], cap: number): Uint8Array[] {
  const n = Math.min(pages.length, Math.floor(cap / PAGE))
  return Array.from({ length: n }, (_, i) => pages[Math.floor((i * pages.length) / n)]!)
}

async function measureCodecs(codecs: readonly Codec[], f: Fleet, rounds: number, cap: number, opts: BenchOptions, notes: string[]): Promise<void> {
  const all = distinctPages(f.images)
  const pages = sample(all, cap).map((p) => Buffer.from(p))
  const raw = pages.length * PAGE
  opts.log(`snapshot-stores: ${f.name}: codecs on ${pages.length} pages`)
  const res = new Map<string, { stored: number; comp: number[]; decomp: number[]; compCpu: number[] }>()
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < codecs.length; k++) {
      const c: Codec = codecs[(k + r) % codecs.length]!
      collectGarbage()
      const cpu0 = process.cpuUsage()
      let t0 = performance.now()
      const packed = await c.compress(pages)
      const compS = (performance.now() - t0) / 1e3
      const cpu = process.cpuUsage(cpu0)
      collectGarbage()
      t0 = performance.now()
      const back = await c.decompress(packed)
      const decompS = (performance.now() - t0) / 1e3
      if (r === 0) back.forEach((b, i) => {
        if (!sameBytes(b, pages[i]!)) throw new Error(`${c.name}: page ${i} does not round-trip`)
      })
      // As the pack files do: a page is kept raw when compressing does not make it smaller.
      const stored = packed.reduce((a, p) => a + Math.min(p.length, PAGE), 0)
      const e = res.get(c.name) ?? { stored, comp: [], decomp: [], compCpu: [] }
      e.comp.push(raw / MiB / compS)
      e.decomp.push(raw / MiB / decompS)
      e.compCpu.push(raw / MiB / ((cpu.user + cpu.system) / 1e6))
      res.set(c.name, e)
    }
  }
  const table = [
    `**Per-page compression, ${f.name}**: ${pages.length.toLocaleString("en-US")} distinct pages (${fmt(raw / MiB)} MiB${pages.length < all.length ? `, sampled evenly from ${all.length.toLocaleString("en-US")}` : ""}), each compressed on its own; median of ${rounds} rounds (min..max); baseline: none.`,
    "",
    "| codec | ratio | compress MiB/s | compress MiB per CPU-s | decompress MiB/s |",
    "|---|---|---|---|---|",
  ]
  for (const c of codecs) {
    const e = res.get(c.name)!
    table.push(`| ${c.name} | ${fmt(raw / e.stored)} | ${cell(e.comp)} | ${fmt(median(e.compCpu))} | ${cell(e.decomp)} |`)
  }
  notes.push(table.join("\n"))
}

export const snapshotStores: BenchModule = {
  name: "snapshot-stores",
  description: "issue 15: the embedded default chosen by measurement: pack files vs LMDB, SQLite, LevelDB behind SnapshotStore (save, re-save, restore GB/s, bytes on disk, open time), and per-page deflate / zstd / lz4 vs none",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const rows: BenchRow[] = []
    const notes: string[] = []
    // Loaded here, not at the top: a clone whose native devDependencies did not build still runs the other benches.
    let stores: readonly EmbeddedStore[]
    let codecs: readonly Codec[]
    try {
      ;({ STORES: stores } = await import("./stores/index.ts"))
      ;({ CODECS: codecs } = await import("./codecs.ts"))
    } catch (e) {
      throw new Error(`snapshot-stores needs the devDependencies lmdb, better-sqlite3, classic-level, @mongodb-js/zstd and lz4-napi (npm ci): ${e instanceof Error ? e.message : String(e)}`)
    }
    const rounds = opts.quick ? 2 : 3
    const fleets: Fleet[] = []
    const v86 = v86Fleet()
    if (typeof v86 === "string") notes.push(v86)
    else fleets.push(opts.quick ? { name: `${v86.name} (quick: first 2)`, images: v86.images.slice(0, 2) } : v86)
    opts.log("snapshot-stores: booting QuickJS interpreters")
    fleets.push(await quickjsFleet(opts.quick ? 4 : 8))
    fleets.push(syntheticFleet(4, opts.quick ? 16 : 32))
    for (const f of fleets) await measureStores(stores, f, rounds, opts, rows, notes)
    for (const f of fleets) await measureRaw(stores, f, rounds, opts, notes)
    // Codecs on the real fleets only (the synthetic pages are random bytes: nothing to compress).
    for (const f of fleets.slice(0, -1)) await measureCodecs(codecs, f, opts.quick ? 2 : 3, (opts.quick ? 8 : 16) * MiB, opts, notes)
    notes.push(
      "Every store runs under the same SnapshotStore (keyed HMAC ids, manifests, verification on restore), so the differences are the storage's. Each SnapshotBackend write resolves durable: the store makes one durable commit per 4,096 new pages plus one for the manifest, on every backend alike. Restore is after a reopen, from the OS page cache (files just written), merge: false. On disk: allocated blocks after close (SQLite's WAL checkpointed by close; LevelDB's log and uncompacted tables counted as they are). SQLite with page_size 65536 (at the default 4 KiB each 4 KiB row spills into an overflow page: twice the bytes). LevelDB and LMDB with their compression off. LMDB keeps a value larger than half a page in overflow pages, whole pages each: a 4 KiB page plus its header takes two 4 KiB pages, hence about 2x on disk (page sizes of 8 to 64 KiB measured no better: 2.0x to 3.5x). Codecs: deflate is node:zlib deflateRawSync (level 1, what compress: \"deflate\" stores, and level 6); zstd is @mongodb-js/zstd 1.2.2 (level 3; async only: pages go 256 at a time to the libuv pool, so its MiB/s uses the 2 cores, see MiB per CPU-s); lz4 is lz4-napi 2.10.0 (block format, sync).",
    )
    return { rows, notes }
  },
}
