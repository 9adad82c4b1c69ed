/**
 * Physical memory: frames of `pageSize` bytes in one flat store (one ArrayBuffer per engine),
 * with per-frame metadata in typed arrays and a free list. This is the `struct page` array and
 * the buddy allocator of sksm, reduced to what a userspace host needs.
 *
 * Frame `f` lives at byte `f << pageShift` of the store: a page-table entry locates its frame
 * in one step, and a space's word access is one typed-array access over the store. The store
 * is divided into slabs of `framesPerSlab` frames for placement (frames go to the fullest slab,
 * lowest first) and grows by reallocation (at least by half, so growth copies O(1) per byte
 * amortised). Slabs are listed (their frames put on the free list, the per-frame arrays grown
 * to cover them) only as frames are needed: the store's headroom past the last listed slab is
 * never written, and the per-frame arrays grow with the frames used, not with the store.
 * Memory goes back by shrinking: compaction moves the live frames of the top slabs
 * into free frames below, then the store is reallocated smaller ({@link FramePool.shrink}).
 * Stores of 32 MiB and more are above glibc's largest dynamic mmap threshold, so the old store
 * is unmapped when the runtime frees it, however many cycles a long-lived host runs; so a store
 * above 4 MiB is made at least 32 MiB (see MMAP_STORE_BYTES).
 *
 * Frame 0 is the engine's zero frame (ZERO_PAGE): never written, never freed,
 * never moved. Every unpopulated page and every merge-placed zero page maps it.
 */
import { allocating, Busy, InvalidArgument, OutOfMemory, Unsupported } from "../errors.ts"
import { show } from "../validate.ts"
import { detach } from "../platform.ts"
import { type FrameBacking, heapBacking, sharedBacking, sharedMemoryAvailable } from "./backing.ts"
import { makeRandom, type RandomU32 } from "./random.ts"

/** Frame flag: the frame is in the merge table (a KSM page); never reused in place on write. */
export const FRAME_KSM = 1
/** Frame flag: some page mapping this frame is pinned; the frame never moves. */
export const FRAME_PINNED = 2
/** Frame flag: a merge-table frame that has had a partner (a stable node), as opposed to a unique insert. */
export const FRAME_SHARED = 4

/** The zero frame's id. */
export const ZERO_FRAME = 0

/** Told when a merged page stops mapping its frame; implemented by the merge core. */
export interface SharingObserver {
  /** A page whose PTE was an rmap entry of `frame` (flag MERGED) no longer maps it. */
  mergedPageLeft(frame: number): void
  /** `frame`'s contents now live in frame `to` (compaction); the table follows. */
  frameMoved(frame: number, to: number): void
}

/** Options of {@link FramePool}. */
export interface FramePoolOptions {
  /** Page (frame) size in bytes: a power of two from 512 to 65536. @default 4096 */
  readonly pageSize?: number
  /** Cap on the bytes of frame memory reserved (slabs); the store itself never passes 2 GiB less 64 KiB per engine (int32 offsets). @default Infinity */
  readonly maxMemoryBytes?: number
  /** Bytes per slab, a power of two >= pageSize. Small slabs empty sooner under compaction. @default 1 MiB */
  readonly slabBytes?: number
  /**
   * Keep the frames in a SharedArrayBuffer, so a worker thread can hash them in place (the
   * worker scanner, `sksm/worker`). Word access costs the same. Gotchas: write translations
   * (`space.translate(addr, true)`) are Unsupported, because a shared buffer cannot be detached
   * to revoke them; where the runtime has no shared memory (a browser page without cross-origin
   * isolation) the engine cannot be made (Unsupported, with the reason). @default false
   */
  readonly sharedMemory?: boolean
}

/** {@link FramePoolOptions} validated, every field present. */
export interface ResolvedFramePoolOptions {
  readonly pageSize: number
  readonly maxMemoryBytes: number
  readonly slabBytes: number
  readonly sharedMemory: boolean
}

/** Validate the frame pool's fields of an options snapshot (InvalidArgument names the field). */
export function resolveFramePoolOptions(o: Readonly<Record<string, unknown>>): ResolvedFramePoolOptions {
  const pageSize = o["pageSize"] ?? 4096
  if (!isPowerOfTwoIn(pageSize, 512, 65536)) throw new InvalidArgument(`pageSize must be a power of two from 512 to 65536, got ${show(pageSize)}`)
  const maxMemoryBytes = o["maxMemoryBytes"] ?? Number.POSITIVE_INFINITY
  if (typeof maxMemoryBytes !== "number" || !(Number.isSafeInteger(maxMemoryBytes) || maxMemoryBytes === Number.POSITIVE_INFINITY) || maxMemoryBytes < pageSize) {
    throw new InvalidArgument(`maxMemoryBytes must be Infinity or a safe integer >= pageSize, got ${show(maxMemoryBytes)}`)
  }
  const slabBytes = o["slabBytes"] ?? Math.max(1 << 20, pageSize)
  if (!isPowerOfTwoIn(slabBytes, pageSize, 1 << 30)) throw new InvalidArgument(`slabBytes must be a power of two from pageSize to 1 GiB, got ${show(slabBytes)}`)
  const sharedMemory = o["sharedMemory"] ?? false
  if (typeof sharedMemory !== "boolean") throw new InvalidArgument(`sharedMemory must be a boolean, got ${show(sharedMemory)}`)
  if (sharedMemory) {
    const why = sharedMemoryAvailable()
    if (why !== null) throw new Unsupported(`sharedMemory: ${why}`)
  }
  return { pageSize, maxMemoryBytes, slabBytes, sharedMemory }
}

function isPowerOfTwoIn(v: unknown, lo: number, hi: number): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= lo && v <= hi && (v & (v - 1)) === 0
}

const EMPTY_I32 = new Int32Array(0)

/**
 * Placement classes of non-full slabs: 0 = empty, 1..31 = used fraction (finer at the low end
 * of nothing). Allocation takes the highest non-empty class, so frames go to the fullest slabs
 * and sparse slabs drain, which is what lets compaction release them with few moves.
 */
const CLASSES = 32

/**
 * Digests a hashing thread published for frames (the worker scanner): frame f's full checksum
 * `sum[f]`, unsalted table key `key[f]` and `zero[f]` (1 when every byte was 0: an exact
 * observation, not a hash) are valid while `Atomics.load(gen, f)` equals the pool's
 * `writeGen[f]`. Shared with the worker; only the worker writes them.
 * An equality certificate rides along: `rep[f]` is 1 + a frame r whose bytes the thread found
 * equal to f's (the kernel's memcmp, done on the thread), `repGen[f]` r's write generation as
 * the thread hashed it; it holds while f's digest is valid and `writeGen[r]` is still repGen[f]
 * (neither frame written since, so they are equal now). 0: none. See FramePool.equal.
 */
export interface FrameDigests {
  readonly gen: Int32Array
  readonly sum: Uint32Array
  readonly key: Uint32Array
  readonly zero: Uint8Array
  readonly rep: Int32Array
  readonly repGen: Int32Array
}

/**
 * Fills a fresh shared store for a coming shrink on another thread (the worker scanner's hashing
 * thread): copies the current store's first `copyBytes` into it and touches every other page, so
 * the shrink neither copies the live frames nor pays the first-touch page faults on the host's
 * thread (~2 µs per 4 KiB page to fault, ~0.3 µs to copy, here: a 128 MiB shrink was a 9-14 ms
 * pause). A pre-copy, as live migration does it: the pool write-protected every page and noted
 * each frame's write generation before asking, so at the shrink it copies again only the frames
 * written, freed or allocated since ({@link FramePool.prepareStore}). Asynchronous;
 * {@link prefaulted} tells when it is done.
 */
export interface StorePrefaulter {
  /**
   * Start filling `store`: copy the current store's first `copyBytes`, touch the rest, then copy
   * each pair of `moves` (frame `moves[2i]` of the current store to frame `moves[2i + 1]` of
   * `store`: the frames compaction will move, pre-moved). A later request replaces an unfinished one.
   */
  prefault(store: SharedArrayBuffer, copyBytes: number, moves: Int32Array | null): void
  /** Whether `store` (the last request) is filled. */
  prefaulted(store: SharedArrayBuffer): boolean
}

/** Told when the store's buffer changes (growth, shrink, revocation): re-read the views. */
export interface StoreUser {
  storeChanged(): void
}

/**
 * The largest store: 2 GiB less one largest page. The hot paths compute byte offsets as int32
 * (`frame << pageShift`), so every offset, and the store's size in frames << pageShift, must
 * stay below 2^31; past it they would wrap negative and reads/writes would miss the store.
 */
export const MAX_STORE_BYTES = 2 ** 31 - 65536

/**
 * A store above SMALL_STORE_BYTES is made at least MMAP_STORE_BYTES, the part past the slabs
 * needed left as headroom (never written, so never resident). glibc serves every allocation of
 * 32 MiB and more with a mapping of its own, which freeing the store unmaps: its dynamic mmap
 * threshold never rises past 32 MiB (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit). Below that, once the
 * threshold has risen (freeing a mapped block of up to 32 MiB raises it to the block's size, as
 * the store's own growth did at 27 MiB), stores come from the heap, whose free top is kept up to
 * twice the threshold: measured as 50-55 MiB still resident after dispose in 1 of 4 cycles of a
 * long-lived process. The stores up to SMALL_STORE_BYTES that may still land there add up to a
 * few MiB.
 */
const SMALL_STORE_BYTES = 4 << 20
const MMAP_STORE_BYTES = 32 << 20

/** Page tables kept for reuse: a fork or createSpace of the same size skips the first-touch faults of fresh memory. */
const RECYCLE_BYTES = 64 << 20

/**
 * The frame allocator over one flat store. Hot paths read the public typed arrays directly:
 * frame `f` is `bytes[f << pageShift ...]`, `words[f << (pageShift - 2) ...]`.
 */
export class FramePool {
  readonly pageSize: number
  readonly pageShift: number
  readonly slabShift: number
  readonly slabMask: number
  readonly framesPerSlab: number
  readonly maxMemoryBytes: number

  /** The store, as bytes. Replaced on growth, shrink and revocation (StoreUser is told). */
  bytes: Uint8Array = new Uint8Array(0)
  /** The store, as little-endian words (frame f's first word is f << (pageShift - 2)). */
  words: Uint32Array = new Uint32Array(0)
  /** The store, for unaligned and 16-bit access. */
  view: DataView = new DataView(new ArrayBuffer(0))
  /** Slabs in the store (slab s holds frames [s * framesPerSlab, ...)). */
  slabCount = 0
  /** Frames each slab may hand out (the last slab under maxMemoryBytes may be short). */
  slabFrames: number[] = []
  /** Frames in use per slab. */
  slabUsed: Int32Array = EMPTY_I32

  /** Page-table entries mapping each frame (the zero frame is not counted). */
  refcount: Int32Array = EMPTY_I32
  /** FRAME_* bits. */
  flags: Uint8Array = new Uint8Array(0)
  /** Merge-table entry of a FRAME_KSM frame (kernel: page->mapping -> stable node). */
  entry: Int32Array = EMPTY_I32

  /** Per slab: first free frame, or -1 (a free frame's `entry` links the slab's free list). */
  #slabFreeHead: Int32Array = EMPTY_I32
  /** Per slab: placement class it is listed under, or -1 (full). */
  #slabClass: Int8Array = new Int8Array(0)
  /** Per slab: neighbours in its class list (doubly linked, so relisting is O(1)). */
  #slabNext: Int32Array = EMPTY_I32
  #slabPrev: Int32Array = EMPTY_I32
  /** Per class: first slab, or -1. */
  #classHead: Int32Array = new Int32Array(CLASSES).fill(-1)
  /** Bit c set when class c has a slab: the allocator's O(1) "fullest non-full slab". */
  #classBits = 0
  #freeCount = 0
  #capacity = 0
  /** Frames of the listed slabs; the store's frames beyond them are headroom, not on any free list and never written. */
  #listed = 0
  #inUse = 0
  /** Frames returned to the free list since the pool was made (monotonic; the auto-compaction trigger reads it). */
  frees = 0
  /** Merge-placed zero-page PTEs across all spaces (kernel: ksm_zero_pages). */
  ksmZeroPages = 0
  /** Copy-on-write faults that copied a frame, all spaces. */
  cowFaults = 0
  /** Fault-injection hook for tests: called before every allocation point; throw to fail it. */
  failpoint: ((site: string) => void) | null = null
  observer: SharingObserver | null = null
  /**
   * A sole mapper writing to a merge-table frame takes the frame back in place (after it
   * leaves the table) instead of copying. Secure mode turns this off so every merged or
   * candidate page pays the same copy on its first write.
   */
  reuseSoleKsm = true
  /** How store bytes are allocated, compared and copied (the frame-backing seam). */
  readonly backing: FrameBacking
  /**
   * Write translations were handed out (space.translate(addr, true)) since the last
   * revocation: the next operation that may take a page's writability away, move or free a
   * frame must revoke them first ({@link revokeWrites}).
   */
  lentForWrite = false
  /** The store is a SharedArrayBuffer (sharedMemory): never detached, so write translations are not lent. */
  readonly shared: boolean
  /**
   * Per frame, odd, bumped by 2 whenever the frame's contents may change behind the engine's
   * back: a mapping of it became writable ({@link madeWritable}) or it was freed. A digest
   * published with the same value describes the frame's current bytes (the worker scanner's
   * write-protect-then-hash protocol). null unless digests are enabled.
   */
  writeGen: Int32Array | null = null
  /** Digests published by a hashing thread; null unless enabled ({@link enableDigests}). */
  digests: FrameDigests | null = null
  /** Bumped whenever the store's buffer or the digest arrays are replaced: a hashing thread must take the new ones. */
  sharedVersion = 0
  readonly #users = new Set<StoreUser>()
  /** Recycled page tables by page count (see takeTables). */
  readonly #recycled = new Map<number, { pte: Int32Array; pflags: Uint8Array }[]>()
  #recycledBytes = 0

  /** `options` must be validated already ({@link resolveFramePoolOptions}). */
  constructor(options: ResolvedFramePoolOptions, backing?: FrameBacking) {
    const { pageSize, maxMemoryBytes, slabBytes } = options
    this.backing = backing ?? (options.sharedMemory ? sharedBacking(pageSize) : heapBacking(pageSize))
    this.shared = this.backing.shared
    this.pageSize = pageSize
    this.pageShift = Math.log2(pageSize)
    this.framesPerSlab = slabBytes / pageSize
    this.slabShift = Math.log2(this.framesPerSlab)
    this.slabMask = this.framesPerSlab - 1
    this.maxMemoryBytes = Math.min(maxMemoryBytes, MAX_STORE_BYTES)
    // Frame 0 is the zero frame: allocate it now so it is always slab 0, offset 0.
    this.#reserve(1)
    const z = this.#pop()
    if (z !== ZERO_FRAME) throw new Error("zero frame must be frame 0")
    this.#inUse = 0 // the zero frame is not "in use" by any space
  }

  /** Frames handed out to pages (the zero frame excluded). */
  get framesInUse(): number {
    return this.#inUse
  }
  /** Frames on the free list (reserved, unused). */
  get framesFree(): number {
    return this.#freeCount
  }
  /**
   * Bytes of the store: what the engine holds for frames. The listed slabs (frames in use, free
   * frames, the zero frame) and the headroom beyond them: growth adds half the store at a time,
   * and slabs are listed from the headroom only as frames are needed. Headroom and free frames
   * never written cost the process no resident memory.
   */
  get bytesReserved(): number {
    return this.bytes.byteLength
  }
  /** Bytes of per-frame metadata (typed arrays), honest to their allocated length, and of a store being prefaulted. */
  get metadataBytes(): number {
    const perSlab = this.slabUsed.byteLength + this.#slabFreeHead.byteLength + this.#slabClass.byteLength + this.#slabNext.byteLength + this.#slabPrev.byteLength
    const d = this.digests
    const digestBytes = (this.writeGen?.byteLength ?? 0) + (d === null ? 0 : d.gen.byteLength + d.sum.byteLength + d.key.byteLength + d.zero.byteLength + d.rep.byteLength + d.repGen.byteLength)
    return this.refcount.byteLength + this.flags.byteLength + this.entry.byteLength + perSlab + this.#recycledBytes + digestBytes + (this.#spare?.byteLength ?? 0) + (this.#spareGen?.byteLength ?? 0) + (this.#spareTo?.byteLength ?? 0)
  }
  /** Slots in the per-frame arrays (highest frame id + 1 that may exist). */
  get capacity(): number {
    return this.#capacity
  }
  /** Frames the store holds (its byte length / pageSize). */
  get storeFrames(): number {
    return this.bytes.byteLength >>> this.pageShift
  }

  // ---------------------------------------------------------------- store users and revocation

  /** Prefaults stores for shrinks off this thread (set by an offloading scanner; shared stores only). */
  prefaulter: StorePrefaulter | null = null
  /** A smaller store allocated for a coming shrink and handed to the prefaulter. */
  #spare: Uint8Array | null = null
  /**
   * Per frame below the spare's copy limit: the write generation it had when the prefaulter was
   * asked to copy it (0: not copied: free, pinned, or no digests). Frames whose generation is
   * still that are in the spare as they are now; null: nothing pre-copied.
   */
  #spareGen: Int32Array | null = null
  /** sharedVersion when the pre-copy was asked for: a store replaced since voids it. */
  #spareVersion = -1
  /** Frames below this were pre-copied (the shrink's frames when it was asked for). */
  #spareLimit = 0
  /** Per frame: 1 + the frame of the spare the thread copies it to (a planned move), or 0. */
  #spareTo: Int32Array | null = null
  /** The frames {@link preMoved} placed in the spare only (copied back if the shrink does not come). */
  #premoved: number[] = []
  /** Frames the last shrink copied on this thread (the rest came pre-copied). */
  shrinkCopied = 0

  /**
   * A {@link shrink}(`slabs`) is coming. Without a {@link prefaulter} (or on an unshared
   * store) returns true: shrink now. With one, returns true once the store it will take has been
   * filled off this thread (the shrink then takes it), else starts that (allocating the store
   * now; replacing a spare of another size) and returns false: ask again later. If the store
   * cannot be allocated, returns true (the shrink reports OutOfMemory as before).
   * `protect` must write-protect every page of every space (so any later write to a frame goes
   * through PagedSpace.grantWrite and moves its write generation); it runs before the frames'
   * generations are noted, only when a new store is asked for. `planMoves` gives the moves
   * compaction will make before this shrink (pairs from, to; in a SharedArrayBuffer), for the
   * thread to copy too ({@link preMoved}); it too runs only then.
   */
  prepareStore(slabs: number, protect: () => void, planMoves: (() => Int32Array) | null = null): boolean {
    const pf = this.prefaulter
    if (pf === null || !this.shared) return true
    const bytes = this.#shrunkStoreFrames(slabs) << this.pageShift
    const limit = Math.min(slabs * this.framesPerSlab, bytes >>> this.pageShift, this.#capacity)
    const spare = this.#spare
    // The same store for the same frames (two shrinks may take stores of one size: the 32 MiB floor).
    if (spare !== null && spare.byteLength === bytes && this.#spareLimit === limit) return pf.prefaulted(spare.buffer as SharedArrayBuffer)
    this.dropSpare()
    let fresh: Uint8Array
    let gens: Int32Array | null = null
    const wg = this.writeGen
    let moves: Int32Array | null = null
    let dest: Int32Array | null = null
    try {
      fresh = this.backing.allocate(bytes)
      if (wg !== null) {
        // Over every frame: the moved ones come from above the limit.
        gens = new Int32Array(Math.min(this.#capacity, wg.length))
        if (planMoves !== null) {
          moves = planMoves()
          dest = new Int32Array(gens.length)
        }
      }
    } catch {
      return true
    }
    if (gens !== null && wg !== null) {
      protect()
      // Live, unpinned frames and the zero frame only: a free frame may be allocated and filled
      // without a generation change, and a pinned one written through the pin.
      const rc = this.refcount
      const fl = this.flags
      for (let f = 0; f < gens.length; f++) if ((rc[f]! > 0 || f === ZERO_FRAME) && (fl[f]! & FRAME_PINNED) === 0) gens[f] = wg[f]!
      if (moves !== null && dest !== null) for (let i = 0; i < moves.length; i += 2) dest[moves[i]!] = moves[i + 1]! + 1
    }
    this.#spare = fresh
    this.#spareGen = gens
    this.#spareTo = dest
    this.#spareVersion = this.sharedVersion
    this.#spareLimit = limit
    pf.prefault(fresh.buffer as SharedArrayBuffer, gens === null ? 0 : limit << this.pageShift, gens === null ? null : moves)
    return false
  }

  /** The spare is filled and describes this store: its pre-copied frames can be trusted (at their write generations). */
  get spareReady(): boolean {
    const spare = this.#spare
    return spare !== null && this.#spareGen !== null && this.sharedVersion === this.#spareVersion && this.prefaulter !== null && this.prefaulter.prefaulted(spare.buffer as SharedArrayBuffer)
  }

  /** {@link spareReady}, and the spare is the store {@link shrink}(`slabs`) takes, pre-copied for its frames. */
  spareReadyFor(slabs: number): boolean {
    const frames = this.#shrunkStoreFrames(slabs)
    return this.spareReady && this.#spare!.byteLength === frames << this.pageShift && this.#spareLimit === Math.min(slabs * this.framesPerSlab, frames, this.#capacity)
  }

  /**
   * Compaction moves frame `from` to `to` right before the shrink into the spare, which the caller
   * found ready for that shrink ({@link spareReadyFor}) in the same step: true if the thread
   * copied the frame there and `from` is unchanged since, so the move need not copy (the frame's
   * bytes are then in the spare only, and the shrink must follow in the same step;
   * {@link settlePremoved} copies them back if it does not).
   */
  preMoved(from: number, to: number): boolean {
    const dest = this.#spareTo
    const gens = this.#spareGen
    const wg = this.writeGen
    if (dest === null || gens === null || wg === null || from >= dest.length || to >= gens.length || dest[from] !== to + 1) return false
    if (gens[from] === 0 || gens[from] !== wg[from]) return false
    // The spare's frame `to` now holds the frame's bytes as they are: the shrink skips it.
    gens[to] = wg[to]!
    this.#premoved.push(to)
    return true
  }

  /** The shrink that pre-moved frames were for did not come: copy them from the spare into the store. */
  settlePremoved(): void {
    const spare = this.#spare
    const ps = this.pageShift
    for (const to of this.#premoved) if (spare !== null) this.bytes.set(spare.subarray(to << ps, (to + 1) << ps), to << ps)
    this.#premoved = []
  }

  /** The free frames of slab `s` in the order allocFrom takes them, written to `out` from `at` (at most `max`); returns how many. */
  freeFramesOf(s: number, out: Int32Array, at: number, max: number): number {
    let n = 0
    for (let f = this.#slabFreeHead[s]!; f !== -1 && n < max; f = this.entry[f]!) out[at + n++] = f
    return n
  }

  /** Whether a store for a coming shrink is being prefaulted (not done yet). */
  get prefaulting(): boolean {
    return this.#spare !== null && this.prefaulter !== null && !this.prefaulter.prefaulted(this.#spare.buffer as SharedArrayBuffer)
  }

  /** Drop a spare store (the prefaulter goes away, or the shrink it was for will not come). */
  dropSpare(): void {
    this.#spare = null
    this.#spareGen = null
    this.#spareTo = null
    this.#premoved = []
  }

  /** Register a user of the store's views (a space caches them for its hot paths). */
  addUser(user: StoreUser): void {
    this.#users.add(user)
  }
  removeUser(user: StoreUser): void {
    this.#users.delete(user)
  }

  /**
   * Revoke every write translation handed out: the store's buffer moves to a new ArrayBuffer
   * object (a transfer: no bytes are copied), which detaches every view of the old one, so a
   * host that kept a stale write translation writes into a detached view (the write is
   * dropped) instead of into a frame that is now shared, moved or someone else's. Every user
   * re-reads the views (and bumps its translation epoch). O(1) when nothing was lent.
   */
  revokeWrites(): void {
    if (!this.lentForWrite) return
    this.lentForWrite = false
    this.#install(detach(this.bytes.buffer as ArrayBuffer))
  }

  #install(buffer: ArrayBuffer): void {
    this.bytes = new Uint8Array(buffer)
    this.words = new Uint32Array(buffer)
    this.view = new DataView(buffer)
    this.sharedVersion++
    for (const u of this.#users) u.storeChanged()
  }

  /**
   * Reallocate the store to `frames` frames, copying the frames below `keep` (the frames still
   * in use are all below it). The old buffer is detached, so no view of it stays usable.
   * Throws OutOfMemory (through the backing) having changed nothing.
   */
  #reallocate(frames: number, keep: number): void {
    const bytes = frames << this.pageShift
    const spare = this.#spare
    const gens = this.#spareGen
    const ready = spare !== null && spare.byteLength === bytes && this.prefaulter !== null && this.prefaulter.prefaulted(spare.buffer as SharedArrayBuffer)
    // The pre-copy holds for this store only (growth, revocation or digests replaced it: copy all).
    const clean = ready && this.sharedVersion === this.#spareVersion ? gens : null
    const cleanLimit = this.#spareLimit
    // Pre-moved frames are in the spare only (preMoved checked it was ready): if it is not used as it is, bring them back first.
    if (this.#premoved.length > 0 && clean === null) this.settlePremoved()
    const fresh = ready ? spare : allocating(`a frame store of ${bytes} bytes`, () => this.backing.allocate(bytes))
    this.dropSpare()
    this.#copyLive(fresh, Math.min(keep, frames), clean, cleanLimit)
    const old = this.bytes.buffer as ArrayBuffer
    const lent = this.lentForWrite
    this.lentForWrite = false
    this.#install(fresh.buffer as ArrayBuffer)
    // Views a host kept of the old store must not take writes that no longer land anywhere; when
    // none were lent the old buffer is just dropped (a transfer would only delay its release).
    if (lent && old.byteLength > 0) detach(old)
  }

  /**
   * Copy the frames below `limit` that are not free into `fresh`, run by run, except those
   * below `cleanLimit` that `clean` says are there already (pre-copied at the write generation
   * they still have: pre-moved ones too). Free
   * frames are skipped: their contents do not matter, and leaving them unwritten in a fresh
   * store keeps them from becoming resident memory.
   */
  #copyLive(fresh: Uint8Array, limit: number, clean: Int32Array | null, cleanLimit = 0): void {
    // 1: skip (free, or pre-copied and unchanged since).
    const skip = new Uint8Array(limit)
    for (let s = 0; s < this.slabCount; s++) for (let f = this.#slabFreeHead[s]!; f !== -1; f = this.entry[f]!) if (f < limit) skip[f] = 1
    const wg = this.writeGen
    if (clean !== null && wg !== null) {
      const n = Math.min(limit, clean.length, cleanLimit)
      for (let f = 0; f < n; f++) if (clean[f] !== 0 && clean[f] === wg[f]) skip[f] = 1
    }
    const ps = this.pageShift
    let copied = 0
    for (let f = 0; f < limit; ) {
      if (skip[f] === 1) {
        f++
        continue
      }
      let end = f + 1
      while (end < limit && skip[end] === 0) end++
      fresh.set(this.bytes.subarray(f << ps, end << ps), f << ps)
      copied += end - f
      f = end
    }
    this.shrinkCopied = copied
  }

  // ---------------------------------------------------------------- page tables

  /**
   * A page table and flag array for `pages` pages, zero-filled: recycled from a disposed space
   * of the same size when there is one (its memory is resident already, so a fork or createSpace
   * does not pay the first-touch faults of fresh memory), else new.
   */
  takeTables(pages: number, zero: boolean): { pte: Int32Array; pflags: Uint8Array } {
    const list = this.#recycled.get(pages)
    const t = list?.pop()
    if (t === undefined) return { pte: new Int32Array(pages), pflags: new Uint8Array(pages) }
    if (list!.length === 0) this.#recycled.delete(pages)
    this.#recycledBytes -= pages * 5
    if (zero) {
      t.pte.fill(0)
      t.pflags.fill(0)
    }
    return t
  }

  /** Keep a disposed space's tables for reuse, up to a bound; beyond it they go to the GC. */
  recycleTables(pte: Int32Array, pflags: Uint8Array): void {
    const pages = pte.length
    if (pages === 0 || this.#recycledBytes + pages * 5 > RECYCLE_BYTES) return
    let list = this.#recycled.get(pages)
    if (list === undefined) this.#recycled.set(pages, (list = []))
    list.push({ pte, pflags })
    this.#recycledBytes += pages * 5
  }

  /**
   * Make sure `n` frames can be allocated without failing, growing the store if needed.
   * Throws OutOfMemory and changes nothing visible when that is impossible.
   * Call before any state change of an operation that allocates.
   */
  ensureFree(n: number, site = "alloc"): void {
    if (this.busy !== 0) this.assertIdle()
    if (n <= 0) return
    if (this.failpoint !== null) this.failpoint(site)
    if (this.#freeCount >= n) return
    this.#reserve(n)
  }

  /** Allocate a frame; its contents are whatever the frame last held. Call ensureFree first. */
  alloc(): number {
    if (this.#freeCount === 0) {
      // Unreserved: the caller skipped ensureFree. Fault injection fails it here to expose that.
      if (this.failpoint !== null) this.failpoint("unreserved")
      this.#reserve(1)
    }
    return this.#pop()
  }

  /** Allocate a frame and zero it. */
  allocZeroed(): number {
    const f = this.alloc()
    const off = f << this.pageShift
    this.bytes.fill(0, off, off + this.pageSize)
    return f
  }

  /** Return frame `f` to the free list. Its refcount must already be 0. */
  free(f: number): void {
    this.flags[f] = 0
    // Whatever the frame holds next is not what a digest of it described.
    if (this.writeGen !== null) this.writeGen[f] = (this.writeGen[f]! + 2) | 0
    const s = f >>> this.slabShift
    // A free frame has no table entry, so its `entry` slot links the slab's free list.
    this.entry[f] = this.#slabFreeHead[s]!
    this.#slabFreeHead[s] = f
    this.#freeCount++
    this.#inUse--
    this.frees++
    this.#relist(s, --this.slabUsed[s]!)
  }

  /**
   * A page mapping frame `f` became writable (PTE_WRITABLE set): writes may now change the frame
   * without the engine seeing them, so any digest of it is stale. PagedSpace.grantWrite, the one
   * place that sets PTE_WRITABLE, calls this.
   */
  madeWritable(f: number): void {
    if (this.writeGen !== null) this.writeGen[f] = (this.writeGen[f]! + 2) | 0
  }

  /**
   * Start keeping {@link writeGen} and shared {@link digests} (the worker scanner). Only on a
   * shared store. Idempotent.
   */
  enableDigests(): void {
    if (!this.shared) throw new Unsupported("digests need a shared frame store (new Engine({ sharedMemory: true }))")
    if (this.writeGen !== null) return
    const cap = Math.max(this.#capacity, this.storeFrames)
    this.writeGen = allocating("write generations", () => new Int32Array(cap).fill(1))
    this.digests = this.#newDigests(cap)
    this.sharedVersion++
  }

  /** Stop keeping digests (their memory goes). */
  disableDigests(): void {
    if (this.writeGen === null) return
    this.writeGen = null
    this.digests = null
    this.sharedVersion++
  }

  #newDigests(cap: number): FrameDigests {
    return allocating("frame digests", () => ({
      gen: new Int32Array(new SharedArrayBuffer(cap * 4)),
      sum: new Uint32Array(new SharedArrayBuffer(cap * 4)),
      key: new Uint32Array(new SharedArrayBuffer(cap * 4)),
      zero: new Uint8Array(new SharedArrayBuffer(cap)),
      rep: new Int32Array(new SharedArrayBuffer(cap * 4)),
      repGen: new Int32Array(new SharedArrayBuffer(cap * 4)),
    }))
  }

  /** Drop one page-table reference to `f`; frees it at zero. The zero frame is ignored. */
  decref(f: number): void {
    if (f === ZERO_FRAME) return
    if (--this.refcount[f]! === 0) this.free(f)
  }

  /** Copy frame `from` into frame `to`. */
  copy(from: number, to: number): void {
    const ps = this.pageShift
    this.bytes.copyWithin(to << ps, from << ps, (from + 1) << ps)
  }

  /** memcmp of two frames: 0 when identical. */
  compare(a: number, b: number): number {
    const ps = this.pageShift
    return this.backing.compare(this.bytes, a << ps, this.bytes, b << ps, this.pageSize)
  }
  /** Frame pairs {@link equal} found equal by the hashing thread's certificates (no compare here). */
  certified = 0

  /**
   * Whether frames `a` and `b` hold the same bytes: by the hashing thread's equality certificates
   * when they prove it (FrameDigests: a's or b's certificate names the other, or both name the
   * same frame, each at its current write generation, and both digests are valid), else by a
   * full compare. Exact either way: a certificate proves equality, it never guesses.
   */
  equal(a: number, b: number): boolean {
    const d = this.digests
    const wg = this.writeGen
    if (d !== null && wg !== null && Atomics.load(d.gen, a) === wg[a] && Atomics.load(d.gen, b) === wg[b]) {
      const ra = d.rep[a]! - 1
      const rb = d.rep[b]! - 1
      if ((ra === b && d.repGen[a] === wg[b]) || (rb === a && d.repGen[b] === wg[a]) || (ra >= 0 && ra === rb && d.repGen[a] === d.repGen[b] && d.repGen[a] === wg[ra])) {
        this.certified++
        return true
      }
    }
    return this.compare(a, b) === 0
  }


  /** True when frame `f` holds only zero bytes. */
  isZero(f: number): boolean {
    return this.backing.isZero(this.bytes, f << this.pageShift, this.pageSize)
  }

  /**
   * Take a free frame from the fullest non-full slab (highest placement class; within a slab,
   * the most recently freed frame). O(1): one clz32 and two list operations. Callers made
   * sure a frame is free.
   */
  #pop(): number {
    const s = this.#classHead[31 - Math.clz32(this.#classBits)]!
    return this.#popFrom(s)
  }

  #popFrom(s: number): number {
    const f = this.#slabFreeHead[s]!
    this.#slabFreeHead[s] = this.entry[f]!
    this.entry[f] = -1
    this.#freeCount--
    this.#inUse++
    this.#relist(s, ++this.slabUsed[s]!)
    return f
  }

  /** Placement class of a slab with `used` of `frames` frames in use; -1 when full. */
  #classOf(used: number, frames: number): number {
    if (used >= frames) return -1
    if (used === 0) return 0
    return 1 + (((used - 1) * (CLASSES - 1)) >>> this.slabShift)
  }

  /** Move slab `s` to the class list its new `used` count belongs to. */
  #relist(s: number, used: number): void {
    const c = this.#classOf(used, this.slabFrames[s]!)
    const old = this.#slabClass[s]!
    if (c === old) return
    if (old >= 0) this.#unlist(s, old)
    this.#slabClass[s] = c
    if (c < 0) return
    const h = this.#classHead[c]!
    this.#slabNext[s] = h
    this.#slabPrev[s] = -1
    if (h >= 0) this.#slabPrev[h] = s
    this.#classHead[c] = s
    this.#classBits |= 1 << c
  }

  #unlist(s: number, c: number): void {
    const n = this.#slabNext[s]!
    const p = this.#slabPrev[s]!
    if (p >= 0) this.#slabNext[p] = n
    else this.#classHead[c] = n
    if (n >= 0) this.#slabPrev[n] = p
    if (this.#classHead[c] === -1) this.#classBits &= ~(1 << c)
    this.#slabClass[s] = -1
  }

  /**
   * List more slabs until `n` frames are free, or throw OutOfMemory having changed nothing. Only
   * the slabs needed are listed, taken from the store's headroom; when that is not enough the
   * store grows by at least half its size (bounded by maxMemoryBytes), so populating memory
   * copies each byte O(1) times on average. The headroom is never written, and the per-frame
   * arrays grow with the listed frames, not with the store.
   */
  #reserve(n: number): void {
    const need = n - this.#freeCount
    const fps = this.framesPerSlab
    const maxFrames = Math.floor(this.maxMemoryBytes / this.pageSize)
    const listed = this.#listed
    if (listed + need > maxFrames) {
      const cap = this.maxMemoryBytes === MAX_STORE_BYTES ? `the frame store's limit (${MAX_STORE_BYTES} bytes, 2 GiB less 64 KiB)` : `maxMemoryBytes (${this.maxMemoryBytes})`
      throw new OutOfMemory(`${cap} reached: ${need} more frame(s) needed`)
    }
    // Whole slabs, never past the cap (the last slab may be short).
    const to = Math.min(maxFrames, Math.ceil((listed + need) / fps) * fps)
    const have = this.storeFrames
    if (this.failpoint !== null) this.failpoint("store")
    // The store grows by at least half.
    const size = to > have ? this.#storeSize(Math.max(to, have + (have >>> 1))) : have
    this.#growArrays(to, Math.ceil(to / fps), size)
    if (size > have) this.#reallocate(size, listed)
    this.#addSlabs(listed, to)
  }

  /** Frames of a new store for `frames` frames: whole slabs, at least MMAP_STORE_BYTES above SMALL_STORE_BYTES, never past the cap. */
  #storeSize(frames: number): number {
    const fps = this.framesPerSlab
    let n = Math.ceil(frames / fps) * fps
    if (n * this.pageSize > SMALL_STORE_BYTES) n = Math.max(n, Math.ceil(MMAP_STORE_BYTES / this.pageSize / fps) * fps)
    return Math.min(Math.floor(this.maxMemoryBytes / this.pageSize), n)
  }

  /** List the frames [from, to) of a grown store as free slabs (highest first: the lowest new slab heads the empty class). */
  #addSlabs(from: number, to: number): void {
    const fps = this.framesPerSlab
    const first = Math.ceil(from / fps)
    // A short last slab that grew (only under maxMemoryBytes): its new frames join its free list.
    if (from % fps !== 0) {
      const s = first - 1
      const end = Math.min(to, first * fps)
      for (let f = end - 1; f >= from; f--) {
        this.entry[f] = this.#slabFreeHead[s]!
        this.#slabFreeHead[s] = f
      }
      this.slabFrames[s] = end - s * fps
      this.#freeCount += end - from
      this.#relist(s, this.slabUsed[s]!)
    }
    const last = Math.ceil(to / fps)
    for (let s = last - 1; s >= first; s--) {
      const base = s * fps
      const frames = Math.min(fps, to - base)
      for (let i = 0; i < frames; i++) this.entry[base + i] = i + 1 < frames ? base + i + 1 : -1
      this.slabFrames[s] = frames
      this.slabUsed[s] = 0
      this.#slabFreeHead[s] = base
      this.#freeCount += frames
      this.#slabClass[s] = -1
      this.#relist(s, 0)
    }
    this.slabCount = last
    this.#listed = to
  }

  /** Grow the per-slab arrays to `slots`, the per-frame arrays to `frames` and the digests (if kept) to a store of `storeFrames`. */
  #growArrays(frames: number, slots: number, storeFrames: number): void {
    while (this.slabFrames.length < slots) this.slabFrames.push(0)
    if (this.slabUsed.length < slots) {
      const n = Math.max(slots, this.slabUsed.length * 2)
      const grow = (a: Int32Array): Int32Array => {
        const b = new Int32Array(n).fill(-1)
        b.set(a)
        return b
      }
      const u = new Int32Array(n)
      u.set(this.slabUsed)
      const cl = new Int8Array(n).fill(-1)
      cl.set(this.#slabClass)
      this.#slabFreeHead = grow(this.#slabFreeHead)
      this.#slabNext = grow(this.#slabNext)
      this.#slabPrev = grow(this.#slabPrev)
      this.#slabClass = cl
      this.slabUsed = u
    }
    // The digests cover the whole store, so they are replaced only when the store is (which
    // sends the hashing thread to the new buffers anyway), not each time slabs are listed.
    if (this.writeGen !== null && this.writeGen.length < storeFrames) {
      const wg = new Int32Array(storeFrames).fill(1)
      wg.set(this.writeGen)
      // Fresh digest arrays: copying the old ones while the worker writes them could pair one
      // frame's new gen with its old sum. Digests lost here are recomputed.
      const d = this.#newDigests(storeFrames)
      this.writeGen = wg
      this.digests = d
      this.sharedVersion++
    }
    if (frames <= this.#capacity) return
    // Grow by an eighth, not double: these arrays are most of the per-page metadata, and
    // copying them ~9x over the pool's life is cheap next to the frames they describe.
    const cap = Math.max(frames, Math.ceil((this.#capacity * 1.125) / this.framesPerSlab) * this.framesPerSlab)
    const rc = new Int32Array(cap)
    rc.set(this.refcount)
    const fl = new Uint8Array(cap)
    fl.set(this.flags)
    const en = new Int32Array(cap).fill(-1)
    en.set(this.entry)
    this.refcount = rc
    this.flags = fl
    this.entry = en
    this.#capacity = cap
  }

  /**
   * Shrink the store to its first `slabs` slabs, which must hold every frame in use (compaction
   * moved the rest down): the store is reallocated at that size (at least MMAP_STORE_BYTES above
   * SMALL_STORE_BYTES, the rest headroom), copying only what stays, and the old buffer goes back
   * to the runtime. Returns the bytes the store shrank by: 0 if nothing changed, and 0 too when
   * the new store is as large as the old (the slabs dropped become fresh headroom: their memory
   * still goes back). Throws OutOfMemory having changed nothing if the new store cannot be allocated.
   */
  shrink(slabs: number): number {
    if (slabs < 1 || slabs >= this.slabCount) return 0
    for (let s = slabs; s < this.slabCount; s++) if (this.slabUsed[s] !== 0) throw new Error(`shrink: slab ${s} still holds frames`)
    const frames = slabs * this.framesPerSlab
    const before = this.bytes.byteLength
    this.#reallocate(this.#shrunkStoreFrames(slabs), frames)
    for (let s = slabs; s < this.slabCount; s++) {
      if (this.#slabClass[s]! >= 0) this.#unlist(s, this.#slabClass[s]!)
      this.#freeCount -= this.slabFrames[s]!
      this.#slabFreeHead[s] = -1
      this.slabFrames[s] = 0
    }
    this.slabCount = slabs
    this.#listed = Math.min(this.#listed, frames)
    return before - this.bytes.byteLength
  }

  /** Frames of the store {@link shrink}(`slabs`) reallocates. */
  #shrunkStoreFrames(slabs: number): number {
    return Math.min(this.#storeSize(slabs * this.framesPerSlab), this.storeFrames)
  }

  /**
   * Take frame `f` off the free list (a caller that must place a frame at one address).
   * Returns false if `f` is not free. O(free frames in its slab); compaction uses allocFrom.
   */
  takeFree(f: number): boolean {
    const s = f >>> this.slabShift
    if (s >= this.slabCount) return false
    let p = -1
    for (let q = this.#slabFreeHead[s]!; q !== -1; q = this.entry[q]!) {
      if (q === f) {
        if (p === -1) this.#slabFreeHead[s] = this.entry[q]!
        else this.entry[p] = this.entry[q]!
        this.entry[q] = -1
        this.#freeCount--
        this.#inUse++
        this.#relist(s, ++this.slabUsed[s]!)
        return true
      }
      p = q
    }
    return false
  }

  /**
   * Allocate a free frame of slab `s`, or return -1 if it has none (never grows the pool).
   * Compaction uses it to place moved frames in the slabs it keeps. O(1).
   */
  allocFrom(s: number): number {
    if (s < 0 || s >= this.slabCount || this.#slabFreeHead[s]! < 0) return -1
    return this.#popFrom(s)
  }

  /** Free frames of slab `s`. */
  slabFree(s: number): number {
    return s >= this.slabCount ? 0 : this.slabFrames[s]! - this.slabUsed[s]!
  }

  /**
   * User callbacks of this engine running now (an injected checksum, called mid-merge). While
   * one runs, every call that may change state throws Busy: the merge that called it holds
   * frame ids and table positions the call could invalidate.
   */
  busy = 0

  /** Throw Busy if a user callback of this engine is running (see {@link busy}). */
  assertIdle(): void {
    if (this.busy !== 0) throw new Busy("sksm was called from inside its own callback (an injected checksum); such callbacks must not call the engine")
  }

  /** Generator behind {@link allocRandom}: xoshiro128** with a secret seed; tests may replace it. */
  random: RandomU32 = makeRandom()

  /**
   * Secure mode's allocator (VUsion's randomised pool): a frame drawn uniformly from all free
   * frames, so where copy-on-write and merging put a page cannot be predicted or steered by
   * freeing frames in a chosen order. Optionally zeroed. Call ensureFree first. Expected O(1)
   * probes while a fair share of frames is free, else O(slabs + framesPerSlab); the default
   * path (alloc) never pays for it.
   */
  allocRandom(zeroed: boolean): number {
    if (this.#freeCount === 0) {
      if (this.failpoint !== null) this.failpoint("unreserved")
      this.#reserve(1)
    }
    let f = -1
    // Rejection sampling over frame ids: uniform over the free frames when it hits.
    for (let t = 0; t < 8 && f < 0; t++) {
      const c = 1 + (this.random() % (this.#capacity - 1))
      const s = c >>> this.slabShift
      if (s < this.slabCount && (c & this.slabMask) < this.slabFrames[s]! && this.refcount[c] === 0 && this.takeFree(c)) f = c
    }
    if (f < 0) {
      // Few free frames: take the r-th free frame, counting slab by slab (still uniform).
      let r = this.random() % this.#freeCount
      for (let s = 0; s < this.slabCount; s++) {
        const n = this.slabFree(s)
        if (r >= n) {
          r -= n
          continue
        }
        let c = this.#slabFreeHead[s]!
        while (r-- > 0) c = this.entry[c]!
        this.takeFree(c)
        f = c
        break
      }
    }
    if (zeroed) {
      const o = f << this.pageShift
      this.bytes.fill(0, o, o + this.pageSize)
    }
    return f
  }

  /** The free list, for inspection (a copy, slab by slab). Cold. */
  freeFrames(): Int32Array {
    const out = new Int32Array(this.#freeCount)
    let k = 0
    for (let s = 0; s < this.slabCount; s++) {
      for (let f = this.#slabFreeHead[s]!; f !== -1; f = this.entry[f]!) out[k++] = f
    }
    return out
  }
}
