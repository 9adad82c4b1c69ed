/**
 * Physical memory: frames of `pageSize` bytes carved out of slabs, with per-frame
 * metadata in typed arrays and a free list. This is the `struct page` array and the
 * buddy allocator of sksm, reduced to what a userspace host needs.
 *
 * Frame 0 is the engine's zero frame (ZERO_PAGE): never written, never freed,
 * never moved. Every unpopulated page and every merge-placed zero page maps it.
 */
import { InvalidArgument, OutOfMemory } from "../errors.ts"

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
  /** Cap on the bytes of frame memory reserved (slabs). @default Infinity */
  readonly maxMemoryBytes?: number
  /** Bytes per slab, a power of two >= pageSize. Small slabs empty sooner under compaction. @default 1 MiB */
  readonly slabBytes?: number
}

const EMPTY_I32 = new Int32Array(0)

/**
 * The frame allocator. Hot paths read the public typed arrays directly:
 * `slabs[f >>> slabShift]` holds frame `f` at byte `(f & slabMask) << pageShift`.
 */
export class FramePool {
  readonly pageSize: number
  readonly pageShift: number
  readonly slabShift: number
  readonly slabMask: number
  readonly framesPerSlab: number
  readonly maxMemoryBytes: number

  /** Slab buffers (Buffer so the core can memcmp without allocating views); `null` once released. */
  slabs: (Buffer | null)[] = []
  /** One DataView per slab, for the word accessors. */
  views: (DataView | null)[] = []
  /** One Uint32Array per slab, for checksums. */
  words: (Uint32Array | null)[] = []
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

  /** Free frames, a stack. */
  #free: Int32Array = EMPTY_I32
  #freeCount = 0
  #capacity = 0
  #bytesReserved = 0
  #inUse = 0
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
  readonly zeroPage: Buffer

  constructor(options: FramePoolOptions = {}) {
    const pageSize = options.pageSize ?? 4096
    if (typeof pageSize !== "number" || !Number.isInteger(pageSize) || pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
      throw new InvalidArgument(`pageSize must be a power of two from 512 to 65536, got ${String(pageSize)}`)
    }
    const maxMemoryBytes = options.maxMemoryBytes ?? Number.POSITIVE_INFINITY
    if (typeof maxMemoryBytes !== "number" || Number.isNaN(maxMemoryBytes) || maxMemoryBytes < pageSize) {
      throw new InvalidArgument(`maxMemoryBytes must be a number >= pageSize, got ${String(maxMemoryBytes)}`)
    }
    const slabBytes = options.slabBytes ?? Math.max(1 << 20, pageSize)
    if (typeof slabBytes !== "number" || !Number.isInteger(slabBytes) || slabBytes < pageSize || slabBytes > 1 << 30 || (slabBytes & (slabBytes - 1)) !== 0) {
      throw new InvalidArgument(`slabBytes must be a power of two from pageSize to 1 GiB, got ${String(slabBytes)}`)
    }
    this.pageSize = pageSize
    this.pageShift = Math.log2(pageSize)
    this.framesPerSlab = slabBytes / pageSize
    this.slabShift = Math.log2(this.framesPerSlab)
    this.slabMask = this.framesPerSlab - 1
    this.maxMemoryBytes = maxMemoryBytes
    this.zeroPage = Buffer.alloc(pageSize)
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
  /** Bytes of slab memory this pool holds. */
  get bytesReserved(): number {
    return this.#bytesReserved
  }
  /** Bytes of per-frame metadata (typed arrays), honest to their allocated length. */
  get metadataBytes(): number {
    return this.refcount.byteLength + this.flags.byteLength + this.entry.byteLength + this.#free.byteLength + this.slabUsed.byteLength
  }
  /** Slots in the per-frame arrays (highest frame id + 1 that may exist). */
  get capacity(): number {
    return this.#capacity
  }

  /**
   * Make sure `n` frames can be allocated without failing, growing slabs if needed.
   * Throws OutOfMemory and changes nothing visible when that is impossible.
   * Call before any state change of an operation that allocates.
   */
  ensureFree(n: number, site = "alloc"): void {
    if (n <= 0) return
    if (this.failpoint !== null) this.failpoint(site)
    if (this.#freeCount >= n) return
    this.#reserve(n)
  }

  /** Allocate a frame; its contents are whatever the frame last held. Call ensureFree first. */
  alloc(): number {
    if (this.#freeCount === 0) this.#reserve(1)
    return this.#pop()
  }

  /** Allocate a frame and zero it. */
  allocZeroed(): number {
    const f = this.alloc()
    const s = this.slabs[f >>> this.slabShift]!
    const off = (f & this.slabMask) << this.pageShift
    s.fill(0, off, off + this.pageSize)
    return f
  }

  /** Return frame `f` to the free list. Its refcount must already be 0. */
  free(f: number): void {
    this.flags[f] = 0
    this.entry[f] = -1
    this.#free[this.#freeCount++] = f
    this.slabUsed[f >>> this.slabShift]!--
    this.#inUse--
  }

  /** Drop one page-table reference to `f`; frees it at zero. The zero frame is ignored. */
  decref(f: number): void {
    if (f === ZERO_FRAME) return
    if (--this.refcount[f]! === 0) this.free(f)
  }

  /** Copy frame `from` into frame `to`. */
  copy(from: number, to: number): void {
    const ps = this.pageShift
    const src = this.slabs[from >>> this.slabShift]!
    const dst = this.slabs[to >>> this.slabShift]!
    const so = (from & this.slabMask) << ps
    src.copy(dst, (to & this.slabMask) << ps, so, so + this.pageSize)
  }

  /** memcmp of two frames: 0 when identical. */
  compare(a: number, b: number): number {
    const ps = this.pageShift
    const sa = this.slabs[a >>> this.slabShift]!
    const sb = this.slabs[b >>> this.slabShift]!
    const oa = (a & this.slabMask) << ps
    const ob = (b & this.slabMask) << ps
    return sa.compare(sb, ob, ob + this.pageSize, oa, oa + this.pageSize)
  }

  /** True when frame `f` holds only zero bytes. */
  isZero(f: number): boolean {
    const s = this.slabs[f >>> this.slabShift]!
    const o = (f & this.slabMask) << this.pageShift
    return this.zeroPage.compare(s, o, o + this.pageSize) === 0
  }

  /** The slab holding frame `f` and the byte offset of the frame in it. */
  slabOf(f: number): Buffer {
    return this.slabs[f >>> this.slabShift]!
  }
  offsetOf(f: number): number {
    return (f & this.slabMask) << this.pageShift
  }

  /** Pop the free stack, preferring nothing in particular (LIFO keeps recycled frames hot). */
  #pop(): number {
    const f = this.#free[--this.#freeCount]!
    this.slabUsed[f >>> this.slabShift]!++
    this.#inUse++
    return f
  }

  /** Add slabs until `n` frames are free, or throw OutOfMemory having added none. */
  #reserve(n: number): void {
    const need = n - this.#freeCount
    const fps = this.framesPerSlab
    const slabBytes = fps * this.pageSize
    let plan = 0
    const sizes: number[] = []
    // Plan first (no state change), so a refusal leaves everything as it was.
    let reserved = this.#bytesReserved
    while (plan < need) {
      const room = this.maxMemoryBytes - reserved
      if (room < this.pageSize) {
        throw new OutOfMemory(`maxMemoryBytes (${this.maxMemoryBytes}) reached: ${need - plan} more frame(s) needed`)
      }
      const bytes = Math.min(slabBytes, Math.floor(room / this.pageSize) * this.pageSize)
      sizes.push(bytes)
      reserved += bytes
      plan += bytes / this.pageSize
    }
    let buffers: Buffer[]
    try {
      buffers = sizes.map((b) => Buffer.alloc(b))
    } catch (cause) {
      throw new OutOfMemory(`the runtime refused ${sizes.length} slab(s): ${String(cause)}`)
    }
    // Refill slots that compaction released first, so frame ids stay dense.
    const newSlots: number[] = []
    for (let s = 1; s < this.slabs.length && newSlots.length < buffers.length; s++) if (this.slabs[s] === null) newSlots.push(s)
    let next = this.slabs.length
    while (newSlots.length < buffers.length) newSlots.push(next++)
    const maxSlot = Math.max(this.slabs.length - 1, ...newSlots)
    this.#growArrays((maxSlot + 1) * fps, maxSlot + 1)
    for (let k = 0; k < buffers.length; k++) {
      const slot = newSlots[k]!
      const buf = buffers[k]!
      this.slabs[slot] = buf
      this.views[slot] = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
      this.words[slot] = new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength >>> 2)
      const frames = buf.byteLength / this.pageSize
      this.slabFrames[slot] = frames
      this.slabUsed[slot] = 0
      this.#bytesReserved += buf.byteLength
      // Push highest first so the lowest frame pops first.
      const base = slot * fps
      for (let i = frames - 1; i >= 0; i--) this.#free[this.#freeCount++] = base + i
    }
  }

  #growArrays(frames: number, slots: number): void {
    while (this.slabs.length < slots) {
      this.slabs.push(null)
      this.views.push(null)
      this.words.push(null)
      this.slabFrames.push(0)
    }
    if (this.slabUsed.length < slots) {
      const u = new Int32Array(Math.max(slots, this.slabUsed.length * 2))
      u.set(this.slabUsed)
      this.slabUsed = u
    }
    if (frames <= this.#capacity) return
    const cap = Math.max(frames, this.#capacity * 2)
    const rc = new Int32Array(cap)
    rc.set(this.refcount)
    const fl = new Uint8Array(cap)
    fl.set(this.flags)
    const en = new Int32Array(cap).fill(-1)
    en.set(this.entry)
    const fr = new Int32Array(cap)
    fr.set(this.#free.subarray(0, this.#freeCount))
    this.refcount = rc
    this.flags = fl
    this.entry = en
    this.#free = fr
    this.#capacity = cap
  }

  /**
   * Release slab `s` if no frame in it is in use: its frames leave the free list and the
   * pool drops its buffer. Used by compaction. Returns the bytes released.
   */
  releaseSlab(s: number): number {
    const buf = this.slabs[s]
    if (buf === null || buf === undefined || this.slabUsed[s] !== 0 || s === 0) return 0
    const fps = this.framesPerSlab
    const lo = s * fps
    const hi = lo + fps
    let w = 0
    for (let r = 0; r < this.#freeCount; r++) {
      const f = this.#free[r]!
      if (f < lo || f >= hi) this.#free[w++] = f
    }
    this.#freeCount = w
    this.slabs[s] = null
    this.views[s] = null
    this.words[s] = null
    this.slabFrames[s] = 0
    this.#bytesReserved -= buf.byteLength
    return buf.byteLength
  }

  /** Take frame `f` off the free list (compaction picks its destination). Returns false if not free. */
  takeFree(f: number): boolean {
    for (let r = this.#freeCount - 1; r >= 0; r--) {
      if (this.#free[r] === f) {
        this.#free[r] = this.#free[--this.#freeCount]!
        this.slabUsed[f >>> this.slabShift]!++
        this.#inUse++
        return true
      }
    }
    return false
  }

  /** The free list, for inspection (a copy). */
  freeFrames(): Int32Array {
    return this.#free.slice(0, this.#freeCount)
  }
}
