/**
 * Typed errors of the snapshot store (sksm/snapshot). Each is an {@link SksmError} with a `_tag`,
 * like the engine's own; bad input (InvalidArgument, from the engine's set) changes nothing.
 */
import { SksmError } from "../index.ts"

/**
 * Stored data failed its integrity check: a page whose bytes no longer hash to its content id
 * (a flipped bit on disk, a truncated pack), a manifest whose checksum fails, or a page a
 * manifest needs that the store no longer has. Never returned as memory: restore() throws this
 * and disposes whatever it had created.
 */
export class SnapshotCorrupt extends SksmError {
  readonly _tag = "SnapshotCorrupt" as const
  /** The snapshot being read. */
  readonly snapshot: string
  /** Index of the space in the snapshot, or -1 when the manifest itself is damaged. */
  readonly space: number
  /** Page number in that space, or -1 when the manifest itself is damaged. */
  readonly page: number
  constructor(snapshot: string, space: number, page: number, detail: string, options?: ErrorOptions) {
    super(page < 0 ? `snapshot ${JSON.stringify(snapshot)} is corrupt: ${detail}` : `snapshot ${JSON.stringify(snapshot)}, space ${space}, page ${page} is corrupt: ${detail}`, options)
    this.snapshot = snapshot
    this.space = space
    this.page = page
  }
}

/** No committed snapshot has this name. */
export class SnapshotNotFound extends SksmError {
  readonly _tag = "SnapshotNotFound" as const
  readonly snapshot: string
  constructor(snapshot: string) {
    super(`no snapshot named ${JSON.stringify(snapshot)}`)
    this.snapshot = snapshot
  }
}

/** save() without `replace: true` to a name that is already committed. */
export class SnapshotExists extends SksmError {
  readonly _tag = "SnapshotExists" as const
  readonly snapshot: string
  constructor(snapshot: string) {
    super(`a snapshot named ${JSON.stringify(snapshot)} already exists (pass replace: true to overwrite it)`)
    this.snapshot = snapshot
  }
}

/** Another live process holds the store's writer lock, or the store was closed. */
export class StoreUnavailable extends SksmError {
  readonly _tag = "StoreUnavailable" as const
}

/** The storage underneath failed (disk full, permission, I/O error); `cause` is the system error. */
export class StoreIOError extends SksmError {
  readonly _tag = "StoreIOError" as const
}

/** Union of the errors sksm/snapshot adds to the engine's. */
export type SnapshotErrorType = SnapshotCorrupt | SnapshotNotFound | SnapshotExists | StoreUnavailable | StoreIOError
