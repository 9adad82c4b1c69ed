/**
 * A minimal SnapshotBackend on SQLite (`better-sqlite3` 12.11.1; 13.x needs Node 22), for
 * bench/snapshot-stores.ts only (a devDependency). WAL journal with synchronous=FULL: every commit
 * fsyncs the WAL, the same durability as the pack files' fsync (NORMAL would not survive a power
 * loss in WAL mode). page_size 65536: a 4 KiB page is a row of ~4.1 KiB, which at SQLite's
 * default 4 KiB page size spills into an overflow page and doubles the file; at 64 KiB, 15 rows
 * share a page. Rowid table (rows appended in order) plus a unique index on the 16-byte id.
 */
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import type { BackendUsage, ContentId, SnapshotBackend, StoredPage } from "../../src/snapshot/backend.ts"
import { duBytes } from "./du.ts"

const key = (id: ContentId) => Buffer.from(id, "hex")

export class SqliteBackend implements SnapshotBackend {
  readonly #dir: string
  readonly #db: Database.Database
  readonly #has: Database.Statement<[Buffer], unknown>
  readonly #get: Database.Statement<[Buffer], { bytes: Buffer }>
  readonly #put: Database.Statement<[Buffer, Buffer]>
  readonly #putPages: (pages: readonly StoredPage[]) => void
  #closed = false

  private constructor(dir: string) {
    this.#dir = dir
    mkdirSync(dir, { recursive: true })
    const db = new Database(join(dir, "pages.sqlite"))
    db.pragma("page_size = 65536") // before the first table: fixes the file's page size
    db.pragma("journal_mode = WAL")
    db.pragma("synchronous = FULL")
    db.exec("CREATE TABLE IF NOT EXISTS pages (id BLOB NOT NULL UNIQUE, bytes BLOB NOT NULL)")
    db.exec("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, bytes BLOB NOT NULL)")
    this.#db = db
    this.#has = db.prepare("SELECT 1 FROM pages WHERE id = ?").pluck()
    this.#get = db.prepare("SELECT bytes FROM pages WHERE id = ?")
    this.#put = db.prepare("INSERT OR IGNORE INTO pages (id, bytes) VALUES (?, ?)")
    // One transaction per call: one WAL fsync at its commit.
    this.#putPages = db.transaction((pages: readonly StoredPage[]) => {
      for (const p of pages) this.#put.run(key(p.id), Buffer.from(p.bytes.buffer, p.bytes.byteOffset, p.bytes.byteLength))
    })
  }

  static async open(dir: string): Promise<SqliteBackend> {
    return new SqliteBackend(dir)
  }

  #metaGet(name: string): Uint8Array | undefined {
    return (this.#db.prepare("SELECT bytes FROM meta WHERE name = ?").get(name) as { bytes: Buffer } | undefined)?.bytes
  }

  async header(initial: Uint8Array): Promise<Uint8Array> {
    const held = this.#metaGet("header")
    if (held !== undefined) return held
    this.#db.prepare("INSERT INTO meta (name, bytes) VALUES ('header', ?)").run(Buffer.from(initial))
    return initial
  }

  hasPage(id: ContentId): boolean {
    return this.#has.get(key(id)) !== undefined
  }

  *pageIds(): Iterable<ContentId> {
    for (const id of this.#db.prepare("SELECT id FROM pages").pluck().iterate()) yield (id as Buffer).toString("hex")
  }

  async putPages(pages: readonly StoredPage[]): Promise<void> {
    this.#putPages(pages)
  }

  async getPages(ids: readonly ContentId[]): Promise<(Uint8Array | undefined)[]> {
    return ids.map((id) => this.#get.get(key(id))?.bytes)
  }

  async retainPages(live: ReadonlySet<ContentId>): Promise<number> {
    const dead = [...this.pageIds()].filter((id) => !live.has(id))
    const del = this.#db.prepare("DELETE FROM pages WHERE id = ?")
    this.#db.transaction(() => {
      for (const id of dead) del.run(key(id))
    })()
    this.#db.exec("VACUUM")
    return dead.length
  }

  async putManifest(name: string, bytes: Uint8Array): Promise<void> {
    this.#db.prepare("INSERT OR REPLACE INTO meta (name, bytes) VALUES (?, ?)").run(`m:${name}`, Buffer.from(bytes))
  }

  async getManifest(name: string): Promise<Uint8Array | undefined> {
    return this.#metaGet(`m:${name}`)
  }

  async manifestNames(): Promise<string[]> {
    return (this.#db.prepare("SELECT name FROM meta WHERE name LIKE 'm:%'").pluck().all() as string[]).map((n) => n.slice(2))
  }

  async deleteManifest(name: string): Promise<void> {
    this.#db.prepare("DELETE FROM meta WHERE name = ?").run(`m:${name}`)
  }

  async usage(): Promise<BackendUsage> {
    const r = this.#db.prepare("SELECT count(*) AS pages, coalesce(sum(length(bytes)), 0) AS pageBytes FROM pages").get() as { pages: number; pageBytes: number }
    return { pages: r.pages, pageBytes: r.pageBytes, totalBytes: duBytes(this.#dir) }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#db.close() // checkpoints the WAL into the database file and removes it
  }
}
