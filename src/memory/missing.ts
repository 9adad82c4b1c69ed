/**
 * Missing pages (userfaultfd's MISSING mode, in process): a space can hold pages whose contents
 * live elsewhere (a snapshot on disk) until their first access, when a handler fills them (the
 * kernel's fault delivered to the uffd reader, answered with UFFDIO_COPY), or until someone
 * installs their bytes from outside a fault (UFFDIO_COPY ahead of the fault).
 *
 * This file holds the handler interface the memory layer declares and the per-space set of
 * missing pages. The space (space.ts) keeps its fast paths unchanged: their bounds cover only the
 * prefix of pages below the first missing one, so every access above it takes the slow path,
 * which fills a missing page before touching it.
 */

/**
 * Supplies the contents of missing pages (see `AddressSpace.registerMissing`): the in-process
 * counterpart of a userfaultfd reader answering MISSING faults with UFFDIO_COPY.
 *
 * When to use: memory whose contents arrive later than the space is needed (lazy snapshot
 * restore, post-copy migration). Gotchas: `fill` runs synchronously inside the access that
 * faulted (a read, a write, a translate, a bulk copy), so it must read its source synchronously;
 * it must not call the engine (Busy); what it throws makes the access throw PageFetchFailed with
 * the page still missing and nothing changed.
 */
export interface MissingPageHandler {
  /**
   * Write the contents of page `pageIndex` into `page` (exactly one page of bytes, zero-filled
   * before the call; bytes left untouched stay zero). `page` is a scratch buffer of the engine:
   * do not keep it past the call.
   */
  fill(pageIndex: number, page: Uint8Array): void
}

/** Set of missing pages of one space: a bitmap and its population count. Cold code (faults, fills). */
export class MissingSet {
  readonly #bits: Uint32Array
  /** Pages still missing. */
  count = 0

  constructor(pages: number) {
    this.#bits = new Uint32Array(Math.ceil(pages / 32))
  }

  /** Bytes of the bitmap (for metadata accounting). */
  get bytes(): number {
    return this.#bits.byteLength
  }

  has(pi: number): boolean {
    return (this.#bits[pi >>> 5]! & (1 << (pi & 31))) !== 0
  }

  /** Mark page `pi` missing; false if it already was. */
  add(pi: number): boolean {
    const w = pi >>> 5
    const b = 1 << (pi & 31)
    if ((this.#bits[w]! & b) !== 0) return false
    this.#bits[w]! |= b
    this.count++
    return true
  }

  /** Page `pi` is no longer missing; false if it was not. */
  delete(pi: number): boolean {
    const w = pi >>> 5
    const b = 1 << (pi & 31)
    if ((this.#bits[w]! & b) === 0) return false
    this.#bits[w]! &= ~b
    this.count--
    return true
  }

  /** The first missing page at or after `pi`, or `limit` if none below it. */
  next(pi: number, limit: number): number {
    const bits = this.#bits
    let w = pi >>> 5
    if (w >= bits.length) return limit
    // The first word: mask off the bits below pi.
    let word = bits[w]! & ~((1 << (pi & 31)) - 1)
    while (word === 0) {
      if (++w >= bits.length) return limit
      word = bits[w]!
    }
    const found = (w << 5) + (31 - Math.clz32(word & -word))
    return found < limit ? found : limit
  }
}
