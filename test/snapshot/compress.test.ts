/** The pack backend's optional page compression (compress: "deflate"): smaller on disk, byte-exact, off by default, checked like plain records. */
import { randomBytes } from "node:crypto"
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { type AddressSpace, Engine, InvalidArgument } from "../../src/index.ts"
import { SnapshotCorrupt, SnapshotStore } from "../../src/snapshot/index.ts"

const PAGE = 4096
let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "sksm-compress-"))
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

/** 24 compressible pages (text-like, distinct), 8 random pages, 8 zero pages. */
function fleetSpace(engine: Engine, seed: number): AddressSpace {
  const s = engine.createSpace({ size: 40 * PAGE })
  for (let p = 0; p < 24; p++) s.write(p * PAGE, new TextEncoder().encode(`page ${p} of ${seed}: `.padEnd(64, ".").repeat(PAGE / 64)))
  s.write(24 * PAGE, randomBytes(8 * PAGE))
  return s
}

const packs = () => Buffer.concat(readdirSync(join(dir, "packs")).map((n) => readFileSync(join(dir, "packs", n))))
const magics = (b: Buffer) => ({ plain: b.toString("latin1").split("SKPG").length - 1, deflated: b.toString("latin1").split("SKPZ").length - 1 })

describe('compress: "deflate"', () => {
  it("stores compressible pages deflated, random ones plain, restores byte-exact (also reopened without the option), and reports the ratio", async () => {
    const e = new Engine()
    const a = fleetSpace(e, 1)
    const store = await SnapshotStore.open(dir, { compress: "deflate" })
    await store.save(a, { name: "a" })
    const st = await store.stats()
    expect(st.storedPages).toBe(32)
    expect(st.storedBytes).toBe(32 * PAGE)
    expect(st.compressedBytes).toBeLessThan(8 * PAGE + 24 * 200)
    expect(st.compressionRatio).toBeGreaterThan(3)
    expect(st.dedupRatio).toBe(1)
    expect(st.diskBytes).toBeLessThan(10 * PAGE)
    expect(magics(packs())).toEqual({ plain: 8, deflated: 24 })
    await store.close()
    const again = await SnapshotStore.open(dir)
    const [r] = await again.restore("a", new Engine())
    expect(Buffer.compare(r!.read(0, r!.size), a.read(0, a.size))).toBe(0)
    // gc's compaction keeps records as they are encoded by the store that compacts.
    const b = fleetSpace(e, 2)
    await again.save(b, { name: "b" })
    await again.delete("a")
    expect((await again.gc()).pagesFreed).toBe(32)
    const [rb] = await again.restore("b", new Engine())
    expect(Buffer.compare(rb!.read(0, rb!.size), b.read(0, b.size))).toBe(0)
    await again.close()
  })

  it("is off by default: plain records only, compressionRatio 1", async () => {
    const store = await SnapshotStore.open(dir)
    await store.save(fleetSpace(new Engine(), 1), { name: "a" })
    const st = await store.stats()
    expect(st.compressedBytes).toBe(st.storedBytes)
    expect(st.compressionRatio).toBe(1)
    expect(magics(packs()).deflated).toBe(0)
    await store.close()
  })

  it("a flipped byte in a deflated record is SnapshotCorrupt naming the page, never memory", async () => {
    const store = await SnapshotStore.open(dir, { compress: "deflate" })
    await store.save(fleetSpace(new Engine(), 1), { name: "a" })
    await store.close()
    const name = readdirSync(join(dir, "packs"))[0]!
    const path = join(dir, "packs", name)
    const bytes = readFileSync(path)
    const at = bytes.indexOf("SKPZ", 0, "latin1") + 24 + 5
    bytes[at] = bytes[at]! ^ 0x40
    writeFileSync(path, bytes)
    const reopened = await SnapshotStore.open(dir)
    const err = await reopened.restore("a", new Engine()).catch((x: unknown) => x)
    expect(err).toBeInstanceOf(SnapshotCorrupt)
    expect((err as SnapshotCorrupt).snapshot).toBe("a")
    expect((err as SnapshotCorrupt).page).toBe(0)
    await reopened.close()
  })

  it("refuses an unknown compressor", async () => {
    await expect(SnapshotStore.open(dir, { compress: "zstd" as "deflate" })).rejects.toBeInstanceOf(InvalidArgument)
  })
})
