/**
 * The unstable index: ksmd's unstable tree as a hash of (key, space id, page) entries in
 * typed arrays. The kernel's tree is ordered by memcmp; here the key (a full-page checksum
 * or a table key, salted with the merge domain) finds candidates and every hit is
 * confirmed by a full compare, so the answer is the same: an identical page seen earlier
 * in this pass, if there is one.
 *
 * Like the kernel's `root_unstable_tree = RB_ROOT`, it is emptied in O(buckets) at the start
 * of every pass, and entries are never erased one by one: an entry is live only while its
 * page still carries the policy's "in the index this pass" mark, which the policy checks on
 * every hit. A space id that no longer resolves (disposed space) makes its entries dead too.
 */
import { allocating } from "../errors.ts"

const NONE = -1

/** A rebuilt-every-pass hash index of candidate pages. */
export class UnstableIndex {
  /** Entry -> key. */
  key: Uint32Array = new Uint32Array(0)
  /** Entry -> id of the space holding the page. */
  space: Int32Array = new Int32Array(0)
  /** Entry -> page index in that space. */
  page: Int32Array = new Int32Array(0)
  /** Entry -> next entry in its bucket. */
  next: Int32Array = new Int32Array(0)
  #buckets: Int32Array = new Int32Array(64).fill(NONE)
  #mask = 63
  #count = 0

  /** Entries added since the last reset (dead ones included). */
  get size(): number {
    return this.#count
  }

  /** Bytes held. */
  get bytes(): number {
    return this.key.byteLength + this.space.byteLength + this.page.byteLength + this.next.byteLength + this.#buckets.byteLength
  }

  /** First entry of `key`'s bucket, or -1; walk with `next`. */
  head(key: number): number {
    return this.#buckets[key & this.#mask]!
  }

  /**
   * Empty the index (start of a pass). Shrinks arrays that grew far beyond the last pass's
   * needs, so one busy pass does not pin memory forever.
   */
  reset(): void {
    const used = this.#count
    this.#count = 0
    if (this.key.length > 4096 && used * 8 < this.key.length) {
      const cap = Math.max(64, used * 2)
      this.key = new Uint32Array(cap)
      this.space = new Int32Array(cap)
      this.page = new Int32Array(cap)
      this.next = new Int32Array(cap)
      let b = 64
      while (b * 2 < cap) b *= 2
      this.#buckets = new Int32Array(b)
      this.#mask = b - 1
    }
    this.#buckets.fill(NONE)
  }

  /**
   * Add an entry. Throws OutOfMemory (adding nothing) if the arrays cannot grow; callers
   * treat that as "not indexed this time".
   */
  insert(key: number, spaceId: number, page: number): void {
    if (this.#count === this.key.length) this.#grow()
    const e = this.#count++
    this.key[e] = key
    this.space[e] = spaceId
    this.page[e] = page
    const b = key & this.#mask
    this.next[e] = this.#buckets[b]!
    this.#buckets[b] = e
  }

  /** Fault-injection hook (tests; the policies forward the pool's): called before the index grows. */
  failpoint: ((site: string) => void) | null = null

  #grow(): void {
    if (this.failpoint !== null) this.failpoint("index")
    const cap = Math.max(64, this.key.length * 2)
    const [key, space, page, next] = allocating(`an unstable index of ${cap} entries`, () => [new Uint32Array(cap), new Int32Array(cap), new Int32Array(cap), new Int32Array(cap)] as const)
    key.set(this.key)
    space.set(this.space)
    page.set(this.page)
    next.set(this.next)
    this.key = key
    this.space = space
    this.page = page
    this.next = next
    // Keep chains short: buckets >= entries / 2; rehash in place of the bucket heads.
    let b = this.#mask + 1
    while (b * 2 < cap) b *= 2
    if (b !== this.#mask + 1) {
      this.#buckets = new Int32Array(b).fill(NONE)
      this.#mask = b - 1
      for (let e = 0; e < this.#count; e++) {
        const h = this.key[e]! & this.#mask
        this.next[e] = this.#buckets[h]!
        this.#buckets[h] = e
      }
    }
  }
}
