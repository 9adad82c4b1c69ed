/**
 * Typed errors thrown by the plain API. Every error carries a `_tag` so that
 * Effect users can `Effect.catchTag` on it, and plain users can `switch (e._tag)`.
 *
 * A call that throws one of these has changed nothing: no partial write, no leaked
 * frame, no counter moved.
 */

/** Base class of every error sksm throws on purpose. */
export abstract class SksmError extends Error {
  abstract readonly _tag: string
  override get name(): string {
    return this._tag
  }
}

/** An address or range lies outside the space (`EFAULT`/`ENOMEM` in the kernel). */
export class OutOfBounds extends SksmError {
  readonly _tag = "OutOfBounds" as const
}

/** An argument has the wrong type, is not a safe integer, is misaligned, or is out of its domain (`EINVAL`). */
export class InvalidArgument extends SksmError {
  readonly _tag = "InvalidArgument" as const
}

/** The space was disposed; every later call on it throws this. */
export class SpaceDisposed extends SksmError {
  readonly _tag = "SpaceDisposed" as const
}

/** An allocation would pass `maxMemoryBytes`, or the runtime refused memory (`ENOMEM`). */
export class OutOfMemory extends SksmError {
  readonly _tag = "OutOfMemory" as const
}

/** The operation would discard or move a pinned page (`EBUSY`/`EINVAL` for DONTNEED on locked pages). */
export class PinnedPage extends SksmError {
  readonly _tag = "PinnedPage" as const
}

/** A tunable cannot change now, e.g. maxPageSharing while pages are shared (`EBUSY`). */
export class Busy extends SksmError {
  readonly _tag = "Busy" as const
}

/** The scanner was detached: the engine made a newer one (one active scanner per engine). */
export class ScannerDetached extends SksmError {
  readonly _tag = "ScannerDetached" as const
}

/**
 * The operation is not available in this configuration (`EOPNOTSUPP`): a write translation over a
 * shared frame store (it cannot be revoked), or shared memory where the runtime has none (a
 * browser page without cross-origin isolation).
 */
export class Unsupported extends SksmError {
  readonly _tag = "Unsupported" as const
}

/**
 * A missing page could not be filled: the handler registered with `registerMissing` threw (its
 * error is the `cause`). The access that faulted changed nothing: the page is still missing, no
 * frame was taken, and a later access asks the handler again.
 */
export class PageFetchFailed extends SksmError {
  readonly _tag = "PageFetchFailed" as const
  /** Index of the page (address / page size) that could not be filled. */
  readonly page: number
  constructor(page: number, message: string, options?: ErrorOptions) {
    super(message, options)
    this.page = page
  }
}

/**
 * Run an allocation of the runtime's memory (typed arrays, slabs): the runtime's refusal (a
 * RangeError) becomes OutOfMemory saying what could not be allocated. The one way sksm turns a
 * refused allocation into its error; `maxMemoryBytes` is checked before allocating, by the pool.
 */
export function allocating<T>(what: string, allocate: () => T): T {
  try {
    return allocate()
  } catch (cause) {
    if (cause instanceof RangeError) throw new OutOfMemory(`the runtime refused ${what}: ${cause.message}`, { cause })
    throw cause
  }
}

/** Union of every error the plain API throws on purpose. */
export type SksmErrorType = OutOfBounds | InvalidArgument | SpaceDisposed | OutOfMemory | PinnedPage | Busy | ScannerDetached | Unsupported | PageFetchFailed
