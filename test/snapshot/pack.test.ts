/** PackBackend: appends across packs, reads, recovery of torn tails and leftovers, compaction. */
import { appendFileSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { InvalidArgument } from "../../src/index.ts"
import { PackBackend } from "../../src/snapshot/index.ts"
import { INDEX_ENTRY_BYTES, RECORD_HEADER_BYTES } from "../../src/snapshot/pack.ts"

let dir: string
beforeEach(() => void (dir = mkdtempSync(join(tmpdir(), "sksm-pack-"))))
afterEach(() => rmSync(dir, { recursive: true, force: true }))

const id = (n: number) => n.toString(16).padStart(32, "0")
const page = (n: number) => new Uint8Array(4096).fill(n & 0xff)
const REC = 4096 + RECORD_HEADER_BYTES

describe("PackBackend", () => {
  it("appends records across packs and reads them back; unknown ids read undefined", async () => {
    const b = await PackBackend.open(dir, { packBytes: 4 * REC })
    await b.putPages(Array.from({ length: 10 }, (_, n) => ({ id: id(n), bytes: page(n) })))
    expect(readdirSync(join(dir, "packs"))).toHaveLength(3)
    const got = await b.getPages([id(9), id(0), id(99), id(4)])
    expect(got.map((g) => g?.[0])).toEqual([9, 0, undefined, 4])
    expect(b.hasPage(id(3))).toBe(true)
    expect(await b.usage()).toMatchObject({ pages: 10, pageBytes: 10 * 4096 })
    await b.close()
  })

  it("open() cuts a torn index entry and a torn pack tail, removes unused packs and temporary files", async () => {
    const b = await PackBackend.open(dir)
    await b.putPages([{ id: id(1), bytes: page(1) }])
    await b.close()
    appendFileSync(join(dir, "index.log"), new Uint8Array(INDEX_ENTRY_BYTES - 5).fill(7))
    appendFileSync(join(dir, "packs", "00000001.pack"), new Uint8Array(1000).fill(1))
    writeFileSync(join(dir, "packs", "00000009.pack"), page(9))
    writeFileSync(join(dir, "snapshots", "x.snap.tmp"), "partial")
    const c = await PackBackend.open(dir)
    expect(c.recovered).toEqual({ indexBytesCut: INDEX_ENTRY_BYTES - 5, packBytesCut: 1000, packsRemoved: 1, tempFilesRemoved: 1 })
    expect(statSync(join(dir, "index.log")).size).toBe(INDEX_ENTRY_BYTES)
    expect(await c.packFileBytes()).toBe(REC)
    await c.putPages([{ id: id(2), bytes: page(2) }])
    expect((await c.getPages([id(1), id(2)])).map((g) => g?.[0])).toEqual([1, 2])
    await c.close()
  })

  it("a record whose header does not match its index entry reads undefined", async () => {
    const b = await PackBackend.open(dir)
    await b.putPages([{ id: id(1), bytes: page(1) }])
    await b.close()
    const f = join(dir, "packs", "00000001.pack")
    const bytes = new Uint8Array(REC)
    bytes.set(page(1), RECORD_HEADER_BYTES)
    writeFileSync(f, bytes) // header zeroed
    const c = await PackBackend.open(dir)
    expect(await c.getPages([id(1)])).toEqual([undefined])
    await c.close()
  })

  it("retainPages copies live records out of packs with dead ones and deletes those packs", async () => {
    const b = await PackBackend.open(dir, { packBytes: 4 * REC })
    await b.putPages(Array.from({ length: 12 }, (_, n) => ({ id: id(n), bytes: page(n) })))
    const live = new Set([id(0), id(5), id(6), id(7), id(11)])
    expect(await b.retainPages(live)).toBe(7)
    expect(await b.packFileBytes()).toBe(5 * REC)
    expect([...b.pageIds()].sort()).toEqual([...live].sort())
    expect(await b.retainPages(live)).toBe(0)
    await b.close()
    const c = await PackBackend.open(dir, { packBytes: 4 * REC })
    expect((await c.getPages([...live])).map((g) => g?.[0])).toEqual([0, 5, 6, 7, 11])
    expect(c.recovered.packsRemoved).toBe(0)
    await c.close()
  })

  it("readPageSync reads what getPages reads (plain and deflated), undefined for unknown ids, and still after gc's compaction", async () => {
    const b = await PackBackend.open(dir, { packBytes: 4 * REC, compress: "deflate" })
    const odd = new Uint8Array(4096).map((_, i) => (i * 7919) >>> 3)
    await b.putPages([...Array.from({ length: 10 }, (_, n) => ({ id: id(n), bytes: page(n) })), { id: id(50), bytes: odd }])
    const got = await b.getPages([id(3), id(50)])
    expect(b.readPageSync(id(3))).toEqual(got[0])
    expect(b.readPageSync(id(50))).toEqual(odd)
    expect(b.readPageSync(id(99))).toBeUndefined()
    // Compaction moves records to new packs and deletes old ones: cached descriptors must not be used.
    expect(await b.retainPages(new Set([id(7), id(50)]))).toBe(9)
    expect(b.readPageSync(id(7))?.[0]).toBe(7)
    expect(b.readPageSync(id(50))).toEqual(odd)
    expect(b.readPageSync(id(3))).toBeUndefined()
    await b.close()
    expect(() => b.readPageSync(id(7))).toThrow(expect.objectContaining({ _tag: "StoreUnavailable" }))
  })

  it("refuses a bad packBytes", async () => {
    for (const packBytes of [0, 100, 1.5, 2 ** 33]) await expect(PackBackend.open(dir, { packBytes })).rejects.toBeInstanceOf(InvalidArgument)
  })
})
