/**
 * The merge table: one global hash table indexed by page key (checksum salted with the
 * merge domain), the userspace counterpart of the SKSM RFC's `sksm_ht` and of KSM's
 * stable tree. Each entry is one merge-table frame: a frame some pages map write-protected.
 *
 * Entries live in parallel typed arrays (14 bytes each) chained per bucket; buckets hold
 * up to four entries on average, so the table costs about 15 bytes per entry. Entries of
 * identical content (max_page_sharing dups) simply sit in the same chain.
 */
import { allocating } from "../errors.ts"

const NONE = -1
/** `next` of an entry linked into no bucket (secure mode's stand-ins for crowded pages). */
const DETACHED = -2
const MAPPERS_SATURATED = 0xffff

/** A chained hash table of merge-table frames. */
export class MergeTable {
  /** Entry -> frame. */
  frame: Int32Array = new Int32Array(0)
  /** Entry -> key (salted checksum). */
  key: Uint32Array = new Uint32Array(0)
  /** Entry -> next entry in its bucket, or in the free list. */
  next: Int32Array = new Int32Array(0)
  /** Entry -> pages mapping it as PAGE_MERGED; saturates into #overflow. */
  #mappers: Uint16Array = new Uint16Array(0)
  #overflow = new Map<number, number>()
  #buckets: Int32Array = new Int32Array(16).fill(NONE)
  #mask = 15
  #count = 0
  #freeHead = NONE
  #capacity = 0
  /** Bumped on every insert and remove, so derived statistics can be cached. */
  version = 0
  /** Fault-injection hook (tests): called before the table allocates. */
  failpoint: ((site: string) => void) | null = null

  /** Live entries. */
  get size(): number {
    return this.#count
  }

  /** Bytes the table holds: entry arrays plus buckets. */
  get bytes(): number {
    return this.frame.byteLength + this.key.byteLength + this.next.byteLength + this.#mappers.byteLength + this.#buckets.byteLength + this.#overflow.size * 16
  }

  /** First entry of the bucket for `key`, or -1. Walk with `next`. */
  head(key: number): number {
    return this.#buckets[key & this.#mask]!
  }

  mappers(e: number): number {
    const m = this.#mappers[e]!
    return m === MAPPERS_SATURATED ? this.#overflow.get(e)! : m
  }

  setMappers(e: number, m: number): void {
    if (m >= MAPPERS_SATURATED) {
      this.#mappers[e] = MAPPERS_SATURATED
      this.#overflow.set(e, m)
    } else {
      if (this.#mappers[e] === MAPPERS_SATURATED) this.#overflow.delete(e)
      this.#mappers[e] = m
    }
  }

  /**
   * Make room for `n` more entries, so inserts cannot fail midway through an operation.
   * Throws OutOfMemory and changes nothing if the arrays cannot grow.
   */
  reserve(n: number): void {
    if (n <= 0) return
    if (this.failpoint !== null) this.failpoint("table")
    const want = this.#count + n
    allocating(`a merge table of ${want} entries`, () => {
      if (want > this.#capacity) this.#grow(Math.max(want, this.#capacity * 2, 64))
      // Keep the average chain at or below 4: buckets >= entries / 4.
      let buckets = this.#mask + 1
      while (buckets * 4 < want) buckets *= 2
      if (buckets !== this.#mask + 1) this.#rehash(buckets)
    })
  }

  /** Insert `frame` under `key` with `mappers` mappers; returns the entry. Call reserve first. */
  insert(frame: number, key: number, mappers: number): number {
    if (this.#freeHead === NONE) this.reserve(1)
    const e = this.#freeHead
    this.#freeHead = this.next[e]!
    const b = key & this.#mask
    this.frame[e] = frame
    this.key[e] = key
    this.next[e] = this.#buckets[b]!
    this.#buckets[b] = e
    this.setMappers(e, mappers)
    this.#count++
    this.version++
    return e
  }

  /**
   * Insert `frame` as an entry no lookup can find (linked into no bucket). Secure mode uses it
   * for a candidate whose key is crowded: the page gets the same write-protected table state
   * as every other candidate, so its write cost does not reveal the crowding. Call reserve first.
   */
  insertDetached(frame: number, key: number, mappers: number): number {
    if (this.#freeHead === NONE) this.reserve(1)
    const e = this.#freeHead
    this.#freeHead = this.next[e]!
    this.frame[e] = frame
    this.key[e] = key
    this.next[e] = DETACHED
    this.setMappers(e, mappers)
    this.#count++
    this.version++
    return e
  }

  /** Move linked entry `e` under `key`: unlink it from its bucket, link it at the head of the new one. */
  rekey(e: number, key: number): void {
    this.#unlink(e)
    this.key[e] = key
    const b = key & this.#mask
    this.next[e] = this.#buckets[b]!
    this.#buckets[b] = e
    this.version++
  }

  #unlink(e: number): void {
    const b = this.key[e]! & this.#mask
    let p = this.#buckets[b]!
    if (p === e) {
      this.#buckets[b] = this.next[e]!
    } else {
      while (this.next[p] !== e) {
        // An entry that is not in its bucket (a detached one) breaks the caller's precondition.
        if (p === NONE) throw new Error(`merge table: entry ${e} is not in its bucket`)
        p = this.next[p]!
      }
      this.next[p] = this.next[e]!
    }
  }

  /** Unlink entry `e` and put it on the free list. */
  remove(e: number): void {
    // A detached entry is linked into no bucket: nothing to unlink.
    if (this.next[e] !== DETACHED) this.#unlink(e)
    this.setMappers(e, 0)
    this.frame[e] = NONE
    this.next[e] = this.#freeHead
    this.#freeHead = e
    this.#count--
    this.version++
  }

  /**
   * Give back the room a worst-case reserve left unused: when under two thirds of the
   * entry slots are live, renumber the live entries densely (bucket order kept, so the
   * newest dup stays first) into arrays sized for them. `moved(from, to)` is told of every
   * renumbered entry so back-pointers follow. Best effort: if memory is refused, nothing changes.
   */
  shrink(moved: (from: number, to: number) => void): void {
    if (!this.oversized) return
    const live = this.#count
    const cap = Math.max(64, Math.ceil(live * 1.0625))
    let frame: Int32Array, key: Uint32Array, next: Int32Array, mappers: Uint16Array, order: Int32Array, renumber: Int32Array
    try {
      frame = new Int32Array(cap).fill(NONE)
      key = new Uint32Array(cap)
      next = new Int32Array(cap)
      mappers = new Uint16Array(cap)
      order = new Int32Array(live)
      renumber = new Int32Array(this.#capacity)
    } catch {
      return
    }
    // Live entries in bucket order (so each chain keeps its order), then the detached ones.
    let k = 0
    for (let b = 0; b <= this.#mask; b++) for (let e = this.#buckets[b]!; e !== NONE; e = this.next[e]!) order[k++] = e
    for (let e = 0; e < this.#capacity; e++) if (this.next[e] === DETACHED && this.frame[e] !== NONE) order[k++] = e
    for (let i = 0; i < live; i++) renumber[order[i]!] = i
    const overflow = new Map<number, number>()
    for (let i = 0; i < live; i++) {
      const e = order[i]!
      frame[i] = this.frame[e]!
      key[i] = this.key[e]!
      const n = this.next[e]!
      next[i] = n === DETACHED || n === NONE ? n : renumber[n]!
      mappers[i] = this.#mappers[e]!
      if (this.#mappers[e] === MAPPERS_SATURATED) overflow.set(i, this.#overflow.get(e)!)
    }
    for (let b = 0; b <= this.#mask; b++) {
      const h = this.#buckets[b]!
      if (h !== NONE) this.#buckets[b] = renumber[h]!
    }
    this.#freeHead = NONE
    this.#install(frame, key, next, mappers, live, cap)
    this.#overflow = overflow
    // Buckets shrink too, to an average chain of at most 8 (a chain step is one integer compare).
    let buckets = this.#mask + 1
    while (buckets > 16 && (buckets / 2) * 8 >= live) buckets /= 2
    if (buckets !== this.#mask + 1) {
      try {
        this.#rehash(buckets)
      } catch {
        // Keep the larger buckets: correct, just bigger.
      }
    }
    for (let i = 0; i < live; i++) if (order[i] !== i) moved(order[i]!, i)
  }

  /** Whether a worst-case reservation left the entry arrays at least half again too large (shrink would act). */
  get oversized(): boolean {
    return this.#capacity > 64 && this.#capacity * 2 > this.#count * 3
  }

  /** Whether the entry arrays are more than twice what the live entries need (and worth a pass). */
  get wasteful(): boolean {
    return this.#capacity > 2 * this.#count + 4096
  }

  /** Every live entry (detached ones included), for statistics and checks (cold). */
  entries(): number[] {
    const out: number[] = []
    for (let b = 0; b <= this.#mask; b++) for (let e = this.#buckets[b]!; e !== NONE; e = this.next[e]!) out.push(e)
    for (let e = 0; e < this.#capacity; e++) if (this.next[e] === DETACHED && this.frame[e] !== NONE) out.push(e)
    return out
  }

  /** Drop every entry (unmergeAll). */
  clear(): void {
    this.#buckets.fill(NONE)
    this.#overflow.clear()
    this.#mappers.fill(0)
    this.frame.fill(NONE)
    this.#count = 0
    this.#freeHead = NONE
    for (let e = this.#capacity - 1; e >= 0; e--) {
      this.next[e] = this.#freeHead
      this.#freeHead = e
    }
    this.version++
  }

  #grow(cap: number): void {
    const frame = new Int32Array(cap).fill(NONE)
    const key = new Uint32Array(cap)
    const next = new Int32Array(cap)
    const mappers = new Uint16Array(cap)
    frame.set(this.frame)
    key.set(this.key)
    next.set(this.next)
    mappers.set(this.#mappers)
    this.#install(frame, key, next, mappers, this.#capacity, cap)
  }

  /** Adopt new entry arrays of `cap` slots; slots from `firstFree` up go on the free list, lowest first. */
  #install(frame: Int32Array, key: Uint32Array, next: Int32Array, mappers: Uint16Array, firstFree: number, cap: number): void {
    for (let e = cap - 1; e >= firstFree; e--) {
      next[e] = this.#freeHead
      this.#freeHead = e
    }
    this.frame = frame
    this.key = key
    this.next = next
    this.#mappers = mappers
    this.#capacity = cap
  }

  #rehash(buckets: number): void {
    const fresh = new Int32Array(buckets).fill(NONE)
    const tail = new Int32Array(buckets).fill(NONE)
    const mask = buckets - 1
    // Append, chain by chain: entries of one new bucket keep their relative order (newest first).
    for (let b = 0; b <= this.#mask; b++) {
      let e = this.#buckets[b]!
      while (e !== NONE) {
        const n = this.next[e]!
        const nb = this.key[e]! & mask
        this.next[e] = NONE
        if (tail[nb] === NONE) fresh[nb] = e
        else this.next[tail[nb]!] = e
        tail[nb] = e
        e = n
      }
    }
    this.#buckets = fresh
    this.#mask = mask
  }
}
