/**
 * The embedded page stores bench/snapshot-stores.ts compares, each opened as a SnapshotStore: the
 * pack files (the library's own backend) and minimal adapters on LMDB, SQLite and LevelDB behind
 * the same SnapshotBackend seam, so hashing, manifests and checks are the same code for all.
 */
import { PackBackend, type SnapshotBackend, SnapshotStore } from "../../src/snapshot/index.ts"
import { LevelBackend } from "./level.ts"
import { LmdbBackend } from "./lmdb.ts"
import { SqliteBackend } from "./sqlite.ts"

export interface EmbeddedStore {
  readonly name: string
  /** How it is made durable, for the tables. */
  readonly durability: string
  open(dir: string): Promise<SnapshotStore>
  /** The backend alone (bench/stores/raw.ts). */
  backend(dir: string): Promise<SnapshotBackend>
}

async function over(backend: Promise<SnapshotBackend>): Promise<SnapshotStore> {
  return SnapshotStore.withBackend(await backend)
}

export const STORES: readonly EmbeddedStore[] = [
  { name: "pack files", durability: "fsync of pack, index, manifest + directory", open: (dir) => SnapshotStore.open(dir), backend: (dir) => PackBackend.open(dir) },
  { name: "LMDB", durability: "one transaction per write, awaited until flushed", open: (dir) => over(LmdbBackend.open(dir)), backend: (dir) => LmdbBackend.open(dir) },
  { name: "SQLite", durability: "WAL, synchronous=FULL, one transaction per write", open: (dir) => over(SqliteBackend.open(dir)), backend: (dir) => SqliteBackend.open(dir) },
  { name: "LevelDB", durability: "batch with sync: true per write", open: (dir) => over(LevelBackend.open(dir)), backend: (dir) => LevelBackend.open(dir) },
]
