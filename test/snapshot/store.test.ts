/** SnapshotStore: round trips, dedup and its scoping, restore merging, incremental saves, gc, integrity, bad input. */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { type AddressSpace, Engine, InvalidArgument } from "../../src/index.ts"
import { PackBackend, SnapshotCorrupt, SnapshotExists, SnapshotNotFound, SnapshotStore, StoreUnavailable } from "../../src/snapshot/index.ts"

const PAGE = 4096
let dir: string
let store: SnapshotStore

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "sksm-store-"))
  store = await SnapshotStore.open(dir)
})
afterEach(async () => {
  await store.close()
  rmSync(dir, { recursive: true, force: true })
})

/** A space of `pages` pages: page p holds the pattern (seed, p), pages in `zero` left untouched. */
function image(engine: Engine, pages: number, seed: number, options: { domain?: string; zero?: (p: number) => boolean } = {}): AddressSpace {
  const s = engine.createSpace({ size: pages * PAGE, ...(options.domain === undefined ? {} : { domain: options.domain }) })
  for (let p = 0; p < pages; p++) {
    if (options.zero?.(p) === true) continue
    const b = new Uint32Array(PAGE / 4)
    for (let i = 0; i < b.length; i++) b[i] = (Math.imul(seed + 1, 2654435761) ^ Math.imul(p + 1, 40503) ^ i) >>> 0
    s.write(p * PAGE, new Uint8Array(b.buffer))
  }
  return s
}

const same = (a: AddressSpace, b: AddressSpace) => Buffer.compare(a.read(0, a.size), b.read(0, b.size)) === 0

describe("save and restore", () => {
  it("restores several spaces byte-exact, with their names and domains, in order; zero pages cost nothing", async () => {
    const e = new Engine()
    const a = image(e, 32, 1, { zero: (p) => p % 4 === 0 })
    const b = image(e, 8, 2, { domain: "tenant-b" })
    b.writeU32(5, 0) // a present page that reads zero in part
    const r = await store.save([a, b], { name: "pair", meta: { why: "test" } })
    expect(r).toMatchObject({ pages: 40, nonZeroPages: 24 + 8, newPages: 32 })
    const e2 = new Engine()
    const [a2, b2] = await store.restore("pair", e2)
    expect(same(a, a2!) && same(b, b2!)).toBe(true)
    expect([a2!.name, a2!.domain, b2!.name, b2!.domain]).toEqual([a.name, "default", b.name, "tenant-b"])
    expect(store.list()).toEqual([expect.objectContaining({ name: "pair", meta: { why: "test" }, logicalBytes: 40 * PAGE, nonZeroBytes: 32 * PAGE })])
    const empty = e.createSpace({ size: 16 * PAGE })
    empty.fill(0, 2 * PAGE, 0) // present, all zero
    await store.save(empty, { name: "empty" })
    expect((await store.stats()).storedPages).toBe(32)
  })

  it("stores each distinct page once: forks of one image cost their private pages", async () => {
    const e = new Engine()
    const base = image(e, 64, 3)
    const forks = [0, 1, 2, 3].map((k) => {
      const f = base.fork()
      f.writeU32(k * PAGE, 0xbeef + k) // one private page each
      return f
    })
    for (const [k, f] of forks.entries()) await store.save(f, { name: `fork-${k}` })
    const s = await store.stats()
    expect(s.storedPages).toBe(64 + 4)
    expect(s.logicalBytes).toBe(4 * 64 * PAGE)
    expect(s.dedupRatio).toBeCloseTo((4 * 64) / 68)
    expect(s.unreferencedPages).toBe(0)
  })

  it("does not deduplicate across merge domains unless crossDomain is set", async () => {
    const e = new Engine()
    const a = image(e, 8, 4, { domain: "a" })
    const b = image(e, 8, 4, { domain: "b" })
    await store.save(a, { name: "a" })
    await store.save(b, { name: "b" })
    expect((await store.stats()).storedPages).toBe(16)
    const dir2 = mkdtempSync(join(tmpdir(), "sksm-store-"))
    const shared = await SnapshotStore.open(dir2, { crossDomain: true })
    try {
      await shared.save(a, { name: "a" })
      await shared.save(b, { name: "b" })
      expect((await shared.stats()).storedPages).toBe(8)
      const [b2] = await shared.restore("b", new Engine())
      expect(same(b, b2!)).toBe(true)
    } finally {
      await shared.close()
      rmSync(dir2, { recursive: true, force: true })
    }
  })

  it("restoring many snapshots of one image costs its distinct pages once in memory", async () => {
    const e = new Engine()
    const base = image(e, 32, 5)
    base.fill(0, 4 * PAGE, 9) // four identical pages
    await store.save(base, { name: "img" })
    const e2 = new Engine()
    for (let i = 0; i < 5; i++) await store.restore("img", e2)
    expect(e2.spaces()).toHaveLength(5)
    expect(e2.memory().framesInUse).toBe(28 + 1)
    const e3 = new Engine()
    await store.restore("img", e3, { merge: false })
    expect(e3.memory().framesInUse).toBe(32)
  })

  it("a repeated save writes only changed pages; a tracked one hashes only written pages", async () => {
    const e = new Engine()
    const s = image(e, 64, 6)
    expect((await store.save(s, { name: "v1", track: true })).newPages).toBe(64)
    s.writeU32(3 * PAGE, 1)
    s.discard(10 * PAGE, PAGE)
    const w = s.translate(20 * PAGE + 8, true) // a write through the TLB counts too
    s.memory.bytes[w] = 0xab
    const v2 = await store.save(s, { name: "v2", track: true })
    expect(v2).toMatchObject({ nonZeroPages: 63, hashedPages: 2, newPages: 2 })
    const untracked = await store.save(s, { name: "v3" })
    expect(untracked).toMatchObject({ hashedPages: 63, newPages: 0 })
    for (const n of ["v2", "v3"]) expect(same(s, (await store.restore(n, new Engine()))[0]!)).toBe(true)
  })
})

describe("delete and gc", () => {
  it("delete keeps pages until gc; gc frees exactly the unreferenced ones", async () => {
    const e = new Engine()
    const a = image(e, 16, 7)
    const b = a.fork()
    b.fill(0, 4 * PAGE, 1)
    await store.save(a, { name: "a" })
    await store.save(b, { name: "b" })
    await store.delete("b")
    expect(store.list().map((s) => s.name)).toEqual(["a"])
    expect((await store.stats()).unreferencedPages).toBe(1)
    expect(await store.gc()).toMatchObject({ pagesFreed: 1 })
    const s = await store.stats()
    expect([s.storedPages, s.unreferencedPages]).toEqual([16, 0])
    expect(same(a, (await store.restore("a", new Engine()))[0]!)).toBe(true)
    await expect(store.delete("b")).rejects.toBeInstanceOf(SnapshotNotFound)
    await expect(store.restore("b", new Engine())).rejects.toBeInstanceOf(SnapshotNotFound)
  })

  it("replace overwrites atomically; without it SnapshotExists", async () => {
    const e = new Engine()
    const a = image(e, 4, 8)
    await store.save(a, { name: "x" })
    await expect(store.save(a, { name: "x" })).rejects.toBeInstanceOf(SnapshotExists)
    a.fill(0, PAGE, 3)
    await store.save(a, { name: "x", replace: true })
    expect(same(a, (await store.restore("x", new Engine()))[0]!)).toBe(true)
    await store.gc()
    expect((await store.stats()).storedPages).toBe(4)
  })

  it("refresh() on a store nobody else writes changes nothing (references stay exact)", async () => {
    const e = new Engine()
    await store.save(image(e, 4, 9), { name: "a" })
    await store.save(image(e, 4, 10), { name: "b" })
    const before = store.list()
    await store.refresh()
    expect(store.list()).toEqual(before)
    await store.delete("a")
    await store.refresh()
    expect((await store.gc()).pagesFreed).toBe(4)
    expect((await store.stats()).unreferencedPages).toBe(0)
    expect(same(image(e, 4, 10), (await store.restore("b", new Engine()))[0]!)).toBe(true)
  })
})

/** Save an 8-page image as "victim", then flip one byte of its stored page 5 on disk (store reopened). */
async function savedWithFlippedPage(): Promise<{ a: AddressSpace; page: number }> {
  const a = image(new Engine(), 8, 9)
  await store.save(a, { name: "victim" })
  await store.close()
  const pack = join(dir, "packs", readdirSync(join(dir, "packs"))[0]!)
  const bytes = readFileSync(pack)
  const page = 5
  bytes[page * (PAGE + 24) + 24 + 100]! ^= 0x10
  writeFileSync(pack, bytes)
  store = await SnapshotStore.open(dir)
  return { a, page }
}

describe("integrity", () => {
  it("a flipped byte in a stored page is SnapshotCorrupt naming snapshot, space and page; nothing is left in the engine", async () => {
    const { a, page } = await savedWithFlippedPage()
    const e2 = new Engine()
    const err = await store.restore("victim", e2).catch((x: unknown) => x)
    expect(err).toBeInstanceOf(SnapshotCorrupt)
    expect(err).toMatchObject({ _tag: "SnapshotCorrupt", snapshot: "victim", space: 0, page })
    expect(e2.spaces()).toHaveLength(0)
  })

  it("a damaged manifest is reported by stats(), refused by restore(), removable by delete()", async () => {
    const e = new Engine()
    await store.save(image(e, 2, 10), { name: "m" })
    await store.close()
    const f = join(dir, "snapshots", "m.snap")
    const b = readFileSync(f)
    b[20]! ^= 1
    writeFileSync(f, b)
    store = await SnapshotStore.open(dir)
    expect((await store.stats()).damaged).toEqual(["m"])
    await expect(store.restore("m", new Engine())).rejects.toMatchObject({ _tag: "SnapshotCorrupt", snapshot: "m", page: -1 })
    await store.delete("m")
    expect((await store.stats()).damaged).toEqual([])
  })
})

describe("bad input changes nothing", () => {
  it("refuses bad options, names, spaces and engines with typed errors", async () => {
    const e = new Engine()
    const a = image(e, 4, 11)
    await store.save(a, { name: "keep" })
    const before = await store.stats()
    const bad: [unknown, unknown][] = [
      [a, { name: "" }],
      [a, { name: "../escape" }],
      [a, { name: ".hidden" }],
      [a, { name: "ok", nmae: 1 }],
      [a, { name: "ok", replace: "yes" }],
      [a, { name: "ok", meta: () => 1 }],
      [a, { name: "ok", meta: 10n }],
      [[], { name: "ok" }],
      [[a, a], { name: "ok" }],
      [{}, { name: "ok" }],
      [a, null],
    ]
    for (const [spaces, options] of bad) await expect(store.save(spaces as AddressSpace, options as { name: string })).rejects.toBeInstanceOf(InvalidArgument)
    const gone = e.createSpace({ size: PAGE })
    gone.dispose()
    await expect(store.save(gone, { name: "ok" })).rejects.toBeInstanceOf(InvalidArgument)
    await expect(store.restore("keep", {} as Engine)).rejects.toBeInstanceOf(InvalidArgument)
    await expect(store.restore("keep", new Engine({ pageSize: 8192 }))).rejects.toBeInstanceOf(InvalidArgument)
    await expect(store.restore("keep", new Engine(), { merge: 1 } as never)).rejects.toBeInstanceOf(InvalidArgument)
    await expect(SnapshotStore.open(dir + "-x", { packBytes: 1 })).rejects.toBeInstanceOf(InvalidArgument)
    expect(await store.stats()).toEqual(before)
    expect(store.list().map((s) => s.name)).toEqual(["keep"])
  })

  it("one process at a time: a second open is StoreUnavailable; a closed store refuses calls", async () => {
    await expect(SnapshotStore.open(dir)).rejects.toBeInstanceOf(StoreUnavailable)
    const other = mkdtempSync(join(tmpdir(), "sksm-store-"))
    const s = await SnapshotStore.open(other)
    await s.close()
    expect(() => s.list()).toThrow(StoreUnavailable)
    await expect(s.gc()).rejects.toBeInstanceOf(StoreUnavailable)
    rmSync(other, { recursive: true, force: true })
  })

  it("reopens with its snapshots and key (same ids: a re-save writes nothing)", async () => {
    const e = new Engine()
    const a = image(e, 8, 12)
    await store.save(a, { name: "p" })
    await store.close()
    store = await SnapshotStore.open(dir)
    expect(store.list().map((s) => s.name)).toEqual(["p"])
    expect((await store.save(a, { name: "q" })).newPages).toBe(0)
  })
})

describe("lazy restore", () => {
  it("returns usable spaces at once, byte-exact with an eager restore; done resolves filled and merged like it", async () => {
    const e = new Engine()
    const a = image(e, 600, 1, { zero: (p) => p % 5 === 0 })
    const b = a.fork()
    b.writeU32(7 * PAGE, 1)
    b.setMergeAny(true)
    await store.save([a, b], { name: "lazy" })
    const eager = new Engine()
    const want = await store.restore("lazy", eager)
    const lazyEngine = new Engine()
    const r = await store.restore("lazy", lazyEngine, { lazy: true })
    expect(r.spaces.map((s) => [s.name, s.domain, s.size, s.mergeAny])).toEqual(want.map((s) => [s.name, s.domain, s.size, s.mergeAny]))
    expect(r.missingPages).toBe(2 * 480)
    // First accesses, before the filler has run: synchronous faults.
    expect(r.spaces[1]!.readU32(7 * PAGE)).toBe(1)
    expect(r.spaces[0]!.readU32(599 * PAGE + 8)).toBe(want[0]!.readU32(599 * PAGE + 8))
    expect(r.missingPages).toBe(2 * 480 - 2)
    await r.done
    expect(r.missingPages).toBe(0)
    expect(r.spaces.every((s, i) => same(s, want[i]!))).toBe(true)
    const se = eager.stats()
    const sl = lazyEngine.stats()
    expect([sl.pagesShared, sl.pagesSharing]).toEqual([se.pagesShared, se.pagesSharing])
    expect(lazyEngine.memory().framesInUse).toBe(eager.memory().framesInUse)
  })

  it("without merge, a lazily restored space holds its pages privately and the fast paths serve it", async () => {
    const e = new Engine()
    const a = image(e, 300, 2)
    await store.save(a, { name: "m" })
    const e2 = new Engine()
    const r = await store.restore("m", e2, { lazy: true, merge: false })
    r.spaces[0]!.writeU32(123 * PAGE + 4, 0xabcdef)
    await r.done
    expect(e2.stats().pagesSharing).toBe(0)
    a.writeU32(123 * PAGE + 4, 0xabcdef)
    expect(same(a, r.spaces[0]!)).toBe(true)
  })

  it("a corrupt page is found on its lazy fault: PageFetchFailed caused by SnapshotCorrupt naming snapshot, space, page; done rejects; the rest reads fine", async () => {
    const { a, page } = await savedWithFlippedPage()
    const e2 = new Engine()
    const r = await store.restore("victim", e2, { lazy: true })
    const s = r.spaces[0]!
    const err = (() => {
      try {
        s.readU8(page * PAGE)
      } catch (x) {
        return x as { _tag: string; page: number; cause: unknown }
      }
      return null
    })()
    expect(err).toMatchObject({ _tag: "PageFetchFailed", page })
    expect(err!.cause).toBeInstanceOf(SnapshotCorrupt)
    expect(err!.cause).toMatchObject({ snapshot: "victim", space: 0, page })
    await expect(r.done).rejects.toMatchObject({ _tag: "SnapshotCorrupt", snapshot: "victim", space: 0, page })
    expect(s.isMissing(page * PAGE)).toBe(true)
    expect(s.read(0, page * PAGE)).toEqual(a.read(0, page * PAGE))
    expect(s.read(6 * PAGE, 2 * PAGE)).toEqual(a.read(6 * PAGE, 2 * PAGE))
    // The host decides: discarding the bad page makes the space whole (and zero there).
    s.discard(page * PAGE, PAGE)
    expect(s.missingPages).toBe(0)
  })

  it("disposing a space mid-fill stops its filler cleanly; the others fill; nothing is left in the engine", async () => {
    const e = new Engine()
    await store.save([image(e, 2000, 3), image(e, 100, 4)], { name: "big" })
    const e2 = new Engine()
    const r = await store.restore("big", e2, { lazy: true })
    r.spaces[0]!.readU8(0)
    r.spaces[0]!.dispose()
    await r.done
    expect(r.spaces[1]!.missingPages).toBe(0)
    expect(e2.spaces()).toHaveLength(1)
    r.spaces[1]!.dispose()
    expect(e2.memory().framesInUse).toBe(0)
  })

  it("close() mid-fill waits for the fill: the spaces are whole after it", async () => {
    const e = new Engine()
    const a = image(e, 1500, 5)
    await store.save(a, { name: "c" })
    const e2 = new Engine()
    const r = await store.restore("c", e2, { lazy: true })
    await store.close()
    expect(r.missingPages).toBe(0)
    expect(same(a, r.spaces[0]!)).toBe(true)
    await r.done
    store = await SnapshotStore.open(dir)
  })

  it("delete and gc during a lazy fill free none of its pages", async () => {
    const e = new Engine()
    const a = image(e, 1200, 6)
    await store.save(a, { name: "g" })
    const r = await store.restore("g", new Engine(), { lazy: true })
    await store.delete("g")
    const gc = await store.gc()
    expect(gc.pagesFreed).toBe(0)
    await r.done
    expect(same(a, r.spaces[0]!)).toBe(true)
    expect((await store.gc()).pagesFreed).toBe(1200)
  })

  it("after close, a page the fill never reached throws PageFetchFailed caused by StoreUnavailable", async () => {
    const e = new Engine()
    const a = image(e, 8, 7)
    await store.save(a, { name: "x" })
    await store.close()
    // Corrupt page 2 so the fill stops there, then close: pages after it stay missing.
    const pack = join(dir, "packs", readdirSync(join(dir, "packs"))[0]!)
    const bytes = readFileSync(pack)
    bytes[2 * (PAGE + 24) + 24]! ^= 1
    writeFileSync(pack, bytes)
    store = await SnapshotStore.open(dir)
    const r = await store.restore("x", new Engine(), { lazy: true })
    await expect(r.done).rejects.toBeInstanceOf(SnapshotCorrupt)
    await store.close()
    const s = r.spaces[0]!
    expect(s.readU8(0)).toBe(a.readU8(0))
    expect(() => s.readU8(6 * PAGE)).toThrow(expect.objectContaining({ _tag: "PageFetchFailed", page: 6, cause: expect.any(StoreUnavailable) }))
    store = await SnapshotStore.open(dir)
  })

  it("a backend without synchronous reads refuses lazy restore with InvalidArgument; bad options too", async () => {
    const e = new Engine()
    await store.save(image(e, 4, 8), { name: "r" })
    await expect(store.restore("r", new Engine(), { lazy: "yes" } as never)).rejects.toBeInstanceOf(InvalidArgument)
    await store.close()
    const pack = await PackBackend.open(dir)
    const noSync = {
      header: (i: Uint8Array) => pack.header(i),
      hasPage: (id: string) => pack.hasPage(id),
      pageIds: () => pack.pageIds(),
      putPages: (p: never) => pack.putPages(p),
      getPages: (ids: readonly string[]) => pack.getPages(ids),
      retainPages: (l: ReadonlySet<string>) => pack.retainPages(l),
      putManifest: (n: string, b: Uint8Array) => pack.putManifest(n, b),
      getManifest: (n: string) => pack.getManifest(n),
      manifestNames: () => pack.manifestNames(),
      deleteManifest: (n: string) => pack.deleteManifest(n),
      usage: () => pack.usage(),
      close: () => pack.close(),
    }
    store = await SnapshotStore.withBackend(noSync)
    const e2 = new Engine()
    await expect(store.restore("r", e2, { lazy: true })).rejects.toThrow(/synchronously/)
    expect(e2.spaces()).toHaveLength(0)
    expect(await store.restore("r", e2)).toHaveLength(1)
  })
})
