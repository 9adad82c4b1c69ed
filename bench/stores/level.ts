/**
 * A minimal SnapshotBackend on LevelDB (`classic-level` 3.0.0), for bench/snapshot-stores.ts only
 * (a devDependency). Keys: "p" + 16-byte id -> page bytes, "m" + name -> manifest, "h" -> header.
 * Every write is one batch with `sync: true` (LevelDB fsyncs its log before it resolves): the
 * same durability as the pack files' fsync. Snappy is off (LevelDB's default is on): the stores
 * are compared on the bytes they are given; compression is measured on its own. LevelDB has no
 * synchronous read, so `hasPage` answers from a set of ids loaded at open, as the pack index does.
 */
import { ClassicLevel } from "classic-level"
import type { BackendUsage, ContentId, SnapshotBackend, StoredPage } from "../../src/snapshot/backend.ts"
import { duBytes } from "./du.ts"

const P = 0x70 // "p"
const pageKey = (id: ContentId) => {
  const k = Buffer.allocUnsafe(17)
  k[0] = P
  k.write(id, 1, "hex")
  return k
}
const metaKey = (s: string) => Buffer.from(s, "utf8")

export class LevelBackend implements SnapshotBackend {
  readonly #dir: string
  readonly #db: ClassicLevel<Buffer, Buffer>
  readonly #ids = new Set<ContentId>()
  #closed = false

  private constructor(dir: string) {
    this.#dir = dir
    this.#db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: "buffer", valueEncoding: "buffer", compression: false })
  }

  static async open(dir: string): Promise<LevelBackend> {
    const b = new LevelBackend(dir)
    await b.#db.open()
    for await (const k of b.#db.keys({ gte: Buffer.from([P]), lt: Buffer.from([P + 1]) })) b.#ids.add(k.toString("hex", 1))
    return b
  }

  async header(initial: Uint8Array): Promise<Uint8Array> {
    const held = await this.#db.get(metaKey("h"))
    if (held !== undefined) return held
    await this.#db.put(metaKey("h"), Buffer.from(initial), { sync: true })
    return initial
  }

  hasPage(id: ContentId): boolean {
    return this.#ids.has(id)
  }

  pageIds(): Iterable<ContentId> {
    return this.#ids
  }

  async putPages(pages: readonly StoredPage[]): Promise<void> {
    await this.#db.batch(
      pages.map((p) => ({ type: "put" as const, key: pageKey(p.id), value: Buffer.from(p.bytes.buffer, p.bytes.byteOffset, p.bytes.byteLength) })),
      { sync: true },
    )
    for (const p of pages) this.#ids.add(p.id)
  }

  async getPages(ids: readonly ContentId[]): Promise<(Uint8Array | undefined)[]> {
    return this.#db.getMany(ids.map(pageKey))
  }

  async retainPages(live: ReadonlySet<ContentId>): Promise<number> {
    const dead = [...this.#ids].filter((id) => !live.has(id))
    await this.#db.batch(dead.map((id) => ({ type: "del" as const, key: pageKey(id) })), { sync: true })
    for (const id of dead) this.#ids.delete(id)
    await this.#db.compactRange(Buffer.from([P]), Buffer.from([P + 1]))
    return dead.length
  }

  async putManifest(name: string, bytes: Uint8Array): Promise<void> {
    await this.#db.put(metaKey(`m${name}`), Buffer.from(bytes), { sync: true })
  }

  async getManifest(name: string): Promise<Uint8Array | undefined> {
    return this.#db.get(metaKey(`m${name}`))
  }

  async manifestNames(): Promise<string[]> {
    const out: string[] = []
    for await (const k of this.#db.keys({ gte: metaKey("m"), lt: metaKey("n") })) out.push(k.toString("utf8", 1))
    return out
  }

  async deleteManifest(name: string): Promise<void> {
    await this.#db.del(metaKey(`m${name}`), { sync: true })
  }

  async usage(): Promise<BackendUsage> {
    let pageBytes = 0
    for await (const v of this.#db.values({ gte: Buffer.from([P]), lt: Buffer.from([P + 1]) })) pageBytes += v.length
    return { pages: this.#ids.size, pageBytes, totalBytes: duBytes(this.#dir) }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#db.close()
  }
}
