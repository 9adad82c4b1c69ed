/**
 * A minimal SnapshotBackend on LMDB (`lmdb` 3.5.6), for bench/snapshot-stores.ts only (a
 * devDependency, never a runtime one). Two named databases: pages (16-byte id -> page bytes,
 * written once) and meta (header, manifests). Every write is one transaction that resolves when
 * LMDB reports it flushed to disk (`db.flushed`): the same durability as the pack files' fsync.
 * Reads and `hasPage` are synchronous lookups in the memory map: no index in memory.
 */
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { open, type Database, type RootDatabase } from "lmdb"
import type { BackendUsage, ContentId, SnapshotBackend, StoredPage } from "../../src/snapshot/backend.ts"
import { duBytes } from "./du.ts"

const key = (id: ContentId) => Buffer.from(id, "hex")
const MANIFEST = "m:"

export class LmdbBackend implements SnapshotBackend {
  readonly #dir: string
  readonly #root: RootDatabase
  readonly #pages: Database<Buffer, Buffer>
  readonly #meta: Database<Buffer, string>
  #closed = false

  private constructor(dir: string) {
    this.#dir = dir
    mkdirSync(dir, { recursive: true })
    // compression off: LMDB stores what it is given (compression is measured separately).
    this.#root = open({ path: join(dir, "pages.mdb"), compression: false })
    this.#pages = this.#root.openDB({ name: "pages", keyEncoding: "binary", encoding: "binary", compression: false })
    this.#meta = this.#root.openDB({ name: "meta", encoding: "binary", compression: false })
  }

  static async open(dir: string): Promise<LmdbBackend> {
    return new LmdbBackend(dir)
  }

  async #commit(write: () => void): Promise<void> {
    await this.#root.transaction(write)
    await this.#root.flushed
  }

  async header(initial: Uint8Array): Promise<Uint8Array> {
    const held = this.#meta.get("header")
    if (held !== undefined) return held
    await this.#commit(() => void this.#meta.put("header", Buffer.from(initial)))
    return initial
  }

  hasPage(id: ContentId): boolean {
    return this.#pages.doesExist(key(id))
  }

  *pageIds(): Iterable<ContentId> {
    for (const k of this.#pages.getKeys()) yield (k as Buffer).toString("hex")
  }

  putPages(pages: readonly StoredPage[]): Promise<void> {
    return this.#commit(() => {
      for (const p of pages) void this.#pages.put(key(p.id), Buffer.from(p.bytes.buffer, p.bytes.byteOffset, p.bytes.byteLength))
    })
  }

  async getPages(ids: readonly ContentId[]): Promise<(Uint8Array | undefined)[]> {
    return ids.map((id) => this.#pages.get(key(id)))
  }

  async retainPages(live: ReadonlySet<ContentId>): Promise<number> {
    const dead = [...this.pageIds()].filter((id) => !live.has(id))
    await this.#commit(() => {
      for (const id of dead) void this.#pages.remove(key(id))
    })
    return dead.length
  }

  putManifest(name: string, bytes: Uint8Array): Promise<void> {
    return this.#commit(() => void this.#meta.put(MANIFEST + name, Buffer.from(bytes)))
  }

  async getManifest(name: string): Promise<Uint8Array | undefined> {
    return this.#meta.get(MANIFEST + name)
  }

  async manifestNames(): Promise<string[]> {
    const out: string[] = []
    for (const k of this.#meta.getKeys({ start: MANIFEST, end: "m;" })) out.push(String(k).slice(MANIFEST.length))
    return out
  }

  deleteManifest(name: string): Promise<void> {
    return this.#commit(() => void this.#meta.remove(MANIFEST + name))
  }

  async usage(): Promise<BackendUsage> {
    let pages = 0
    let pageBytes = 0
    for (const { value } of this.#pages.getRange({})) {
      pages++
      pageBytes += value.length
    }
    return { pages, pageBytes, totalBytes: duBytes(this.#dir) }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#root.close()
  }
}
