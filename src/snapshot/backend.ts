/**
 * The storage seam of sksm/snapshot: everything the store needs from where bytes live. The store
 * (store.ts) does the content addressing, manifests, reference counts and integrity checks; a
 * backend only keeps pages by content id and manifests by name, durably. The pack-file backend
 * (pack.ts) is the embedded default; a fleet backend (Redis, planned) implements the same.
 */

/** A content id: 32 lowercase hex digits (128 bits of a keyed hash). */
export type ContentId = string

/** Write content id `id` as its 16 bytes into `out` at `at`. */
export function idToBytes(id: ContentId, out: Uint8Array, at: number): void {
  for (let i = 0; i < 16; i++) out[at + i] = parseInt(id.slice(i * 2, i * 2 + 2), 16)
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

/** The content id of the 16 bytes of `b` at `at`. */
export function idFromBytes(b: Uint8Array, at: number): ContentId {
  let s = ""
  for (let i = 0; i < 16; i++) s += HEX[b[at + i]!]!
  return s
}

/** One page to store: its content id and its bytes (exactly one page). */
export interface StoredPage {
  readonly id: ContentId
  readonly bytes: Uint8Array
}

/** What a backend holds, for stats(). */
export interface BackendUsage {
  /** Pages held (referenced or not). */
  readonly pages: number
  /** Payload bytes of those pages. */
  readonly pageBytes: number
  /** Bytes those pages occupy as stored, when the backend compresses them (absent: pageBytes). */
  readonly storedBytes?: number
  /** Bytes the backend occupies in all (payload, record headers, index, manifests, garbage). */
  readonly totalBytes: number
}

/**
 * A snapshot store's storage. Every method may throw {@link StoreIOError}; a promise that
 * resolves means the change is durable (survives a crash of the process and of the machine).
 * Calls are never concurrent: the store serialises them.
 */
export interface SnapshotBackend {
  /**
   * The store's header (holds the hashing key): returns the committed one, or commits `initial`
   * and returns it when there is none yet. Called once, first.
   */
  header(initial: Uint8Array): Promise<Uint8Array>
  /** Whether the page is held (after open, from the backend's index: no I/O). */
  hasPage(id: ContentId): boolean
  /** Every page id held. */
  pageIds(): Iterable<ContentId>
  /** Store pages durably (ids not held yet; the store filters). */
  putPages(pages: readonly StoredPage[]): Promise<void>
  /**
   * Read pages; `undefined` for an id not held or whose record is unreadable. The bytes are
   * unverified: the store checks them against the id.
   */
  getPages(ids: readonly ContentId[]): Promise<(Uint8Array | undefined)[]>
  /**
   * Optional: read one page synchronously, `undefined` as getPages (unverified). Lazy restore
   * needs it (its page faults are synchronous); a backend without it restores eagerly only.
   * It may be called while another call is in flight (between that call's awaits), so it must
   * read only committed data.
   */
  readPageSync?(id: ContentId): Uint8Array | undefined
  /** Drop every page not in `live` and reclaim its space; returns how many pages were dropped. */
  retainPages(live: ReadonlySet<ContentId>): Promise<number>
  /** Commit a manifest atomically under `name` (replacing one of that name): all or nothing. */
  putManifest(name: string, bytes: Uint8Array): Promise<void>
  /** A committed manifest, or undefined. */
  getManifest(name: string): Promise<Uint8Array | undefined>
  /** Names of the committed manifests. */
  manifestNames(): Promise<string[]>
  /** Remove a manifest durably (no error if absent). */
  deleteManifest(name: string): Promise<void>
  /** What the backend holds. */
  usage(): Promise<BackendUsage>
  /** Release files, connections and locks. Idempotent. */
  close(): Promise<void>
}
