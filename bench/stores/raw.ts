/**
 * The storage alone, without SnapshotStore's hashing and checks: the distinct pages of a fleet
 * written to a backend (ids precomputed, 4,096 pages per durable putPages, then one manifest),
 * reopened, and read back with getPages; bytes compared outside the timed parts.
 */
import { createHash } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { SnapshotBackend, StoredPage } from "../../src/snapshot/backend.ts"

const IO_PAGES = 4096

export interface RawTiming {
  readonly writeS: number
  readonly openMs: number
  readonly readS: number
}

export function storedPages(pages: readonly Uint8Array[]): StoredPage[] {
  return pages.map((bytes) => ({ id: createHash("sha256").update(bytes).digest("hex").slice(0, 32), bytes }))
}

export async function rawRound(open: (dir: string) => Promise<SnapshotBackend>, pages: readonly StoredPage[], check: boolean): Promise<RawTiming> {
  const dir = mkdtempSync(join(tmpdir(), "sksm-bench-raw-"))
  try {
    let b = await open(dir)
    await b.header(new TextEncoder().encode("{}"))
    const manifest = new Uint8Array(pages.length * 20)
    let t0 = performance.now()
    for (let i = 0; i < pages.length; i += IO_PAGES) await b.putPages(pages.slice(i, i + IO_PAGES))
    await b.putManifest("raw", manifest)
    const writeS = (performance.now() - t0) / 1e3
    await b.close()
    t0 = performance.now()
    b = await open(dir)
    const openMs = performance.now() - t0
    const ids = pages.map((p) => p.id)
    const got: (Uint8Array | undefined)[] = []
    t0 = performance.now()
    for (let i = 0; i < ids.length; i += IO_PAGES) got.push(...(await b.getPages(ids.slice(i, i + IO_PAGES))))
    const readS = (performance.now() - t0) / 1e3
    if (check) got.forEach((g, i) => {
      const want = pages[i]!.bytes
      if (g === undefined || !Buffer.from(g.buffer, g.byteOffset, g.byteLength).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength))) throw new Error(`raw read: page ${i} differs`)
    })
    await b.close()
    return { writeS, openMs, readS }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
