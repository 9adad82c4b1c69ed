/**
 * The embedded-store adapters of bench/snapshot-stores.ts (LMDB, SQLite, LevelDB) behind
 * SnapshotStore, next to the pack files: pages round-trip byte-exact across a reopen, a repeat
 * save writes nothing, each distinct page is stored once, delete + gc frees the pages.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { STORES } from "../../bench/stores/index.ts"
import { Engine } from "../../src/index.ts"

const PAGE = 4096
const root = mkdtempSync(join(tmpdir(), "sksm-stores-test-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

/** 64 pages: zero, shared fillers and unique pages. */
function image(seed: number): Uint8Array {
  const img = new Uint8Array(64 * PAGE)
  for (let p = 0; p < 64; p++) {
    if (p % 4 === 0) continue
    if (p % 4 === 1) img.fill(p, p * PAGE, (p + 1) * PAGE)
    else for (let i = 0; i < PAGE; i += 64) img[p * PAGE + i] = (seed * 131 + p * 7 + i) & 255
  }
  return img
}

describe.each(STORES.map((s) => [s.name, s] as const))("%s", (_name, kind) => {
  it("round-trips pages byte-exact across a reopen, stores each distinct page once, gc frees", async () => {
    const dir = join(root, kind.name.replace(/\W/g, "-"))
    const e = new Engine()
    const imgs = [image(1), image(2)]
    const spaces = imgs.map((img) => {
      const s = e.createSpace({ size: img.length })
      s.write(0, img)
      return s
    })
    let store = await kind.open(dir)
    const first = await store.save(spaces, { name: "a" })
    const again = await store.save(spaces, { name: "b" })
    expect(again.newPages).toBe(0)
    await store.close()
    store = await kind.open(dir)
    expect(store.list().map((i) => i.name)).toEqual(["a", "b"])
    const st = await store.stats()
    expect(st.storedPages).toBe(first.newPages)
    expect(st.storedPages).toBe(16 + 2 * 32) // 16 fillers shared by both images, 32 unique pages each
    const back = await store.restore("a", new Engine(), { merge: false })
    back.forEach((s, i) => expect(Buffer.from(s.read(0, imgs[i]!.length)).equals(Buffer.from(imgs[i]!))).toBe(true))
    await store.delete("a")
    expect((await store.gc()).pagesFreed).toBe(0)
    await store.delete("b")
    expect((await store.gc()).pagesFreed).toBe(first.newPages)
    await store.close()
  })
})
