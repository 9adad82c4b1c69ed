/**
 * A paged address space: a page table (page -> frame and the writable bit, PTE_WRITABLE) and
 * one flag byte per page, over a shared {@link FramePool}. Reads and writes from the host go
 * through the page table; a write to a page that is not writable takes a fault that gives the
 * page a private frame (copy-on-write), exactly once.
 *
 * This is the memory layer: it knows frames, page tables, copy-on-write, pins and
 * write tracking, and nothing about merging beyond the PAGE_MERGED bit it must honour.
 */
import { allocating, InvalidArgument, OutOfBounds, PageFetchFailed, PinnedPage, SpaceDisposed, Unsupported } from "../errors.ts"
import { checkAlignedRange, checkBool, checkBytes, checkInt, checkIntIn, checkRange, checkRangeToEnd, errorText, readOptions, show } from "../validate.ts"
import { FRAME_KSM, FRAME_PINNED, type FramePool, ZERO_FRAME } from "./frames.ts"
import {
  PAGE_FAULT_CLEARS,
  PAGE_KSM_ZERO,
  PAGE_MERGEABLE,
  PAGE_MERGED,
  PAGE_PINNED,
  PAGE_SOFT_DIRTY,
  PAGE_UFFD_REG,
  PAGE_UFFD_WP,
  PTE_FRAME,
  PTE_WRITABLE,
} from "./flags.ts"
import { type MissingPageHandler, MissingSet } from "./missing.ts"
import { pagemapScan, type PagemapScanArgs, type PagemapScanResult } from "./pagemap.ts"

/** Options of `engine.createSpace`. */
export interface SpaceOptions {
  /** Size in bytes; a positive multiple of the page size. */
  readonly size: number
  /** A label for stats and tools. @default "space-<id>" */
  readonly name?: string
  /** Merge domain: pages merge only within one domain unless the engine allows crossing. @default "default" */
  readonly domain?: string
}

/** The keys of {@link SpaceOptions}. */
const SPACE_KEYS = ["size", "name", "domain"] as const

/** {@link SpaceOptions} read once and validated (except `size` against a page size). */
export interface ResolvedSpaceOptions {
  readonly size: number
  readonly name: string | undefined
  readonly domain: string
}

/**
 * Read `engine.createSpace(options)` once into a validated snapshot (InvalidArgument names the
 * field; unknown keys are refused with the nearest valid one).
 */
export function resolveSpaceOptions(options: unknown, pageSize: number): ResolvedSpaceOptions {
  if (options === undefined) throw new InvalidArgument("createSpace needs options { size, name?, domain? }")
  const o = readOptions("createSpace()", options, SPACE_KEYS)
  const size = o["size"]
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size <= 0) {
    throw new InvalidArgument(`size must be a positive safe integer, got ${show(size)}`)
  }
  if (size % pageSize !== 0) throw new InvalidArgument(`size ${size} is not a multiple of the page size ${pageSize}`)
  if (size / pageSize > 0x7fffffff) throw new InvalidArgument(`size ${size} needs more than 2^31-1 pages`)
  const name = o["name"]
  if (name !== undefined && typeof name !== "string") throw new InvalidArgument(`name must be a string, got ${show(name)}`)
  const domain = o["domain"] === undefined ? "default" : o["domain"]
  if (typeof domain !== "string" || domain.length === 0) throw new InvalidArgument(`domain must be a non-empty string, got ${show(domain)}`)
  return Object.freeze({ size, name, domain })
}

const EMPTY_I32 = new Int32Array(0)
const EMPTY_U8 = new Uint8Array(0)
const EMPTY_U32 = new Uint32Array(0)
const EMPTY_DV = new DataView(new ArrayBuffer(0))
/** The Uint32Array fast paths read words in the host's byte order; sksm's words are little-endian. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1
/** Captured once: a caller's Uint32Array is recognised and copied by intrinsics, never by its own methods. */
const TA_SLICE = Uint32Array.prototype.slice
const TA_TAG = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint32Array.prototype) as object, Symbol.toStringTag)!.get!

/** A caller's page list (an array or a Uint32Array of page indices), read once and checked against `pages`. */
function readPageList(value: unknown, pages: number): Uint32Array {
  let list: Uint32Array
  if (Array.isArray(value)) {
    const n = value.length
    list = allocating(`a list of ${n} pages`, () => new Uint32Array(n))
    for (let i = 0; i < n; i++) {
      const p: unknown = value[i]
      if (typeof p !== "number" || !Number.isInteger(p) || p < 0 || p >= pages) throw new InvalidArgument(`pages[${i}] must be a page index from 0 to ${pages - 1}, got ${show(p)}`)
      list[i] = p
    }
    return list
  }
  // The toStringTag getter answers "Uint32Array" only for a real Uint32Array (brand check).
  if (typeof value !== "object" || value === null || Reflect.apply(TA_TAG, value, []) !== "Uint32Array") throw new InvalidArgument(`pages must be an array or a Uint32Array of page indices, got ${show(value)}`)
  try {
    list = Reflect.apply(TA_SLICE, value, []) as Uint32Array
  } catch (cause) {
    throw new InvalidArgument(`pages: copying it failed (${errorText(cause)})`, { cause })
  }
  for (let i = 0; i < list.length; i++) if (list[i]! >= pages) throw new InvalidArgument(`pages[${i}] must be a page index from 0 to ${pages - 1}, got ${list[i]}`)
  return list
}

let nextSpaceId = 1

/** The memory-model half of an address space. Use {@link AddressSpace}, which adds merging. */
export class PagedSpace {
  /** Unique id of this space within the process. */
  readonly id: number
  readonly size: number
  readonly pageSize: number
  readonly name: string
  readonly domain: string
  /** Number of pages. */
  readonly pages: number

  /**
   * Page -> its frame's first word in the store (PTE_FRAME: `frame << pageShift - 2`; 0, the zero
   * frame, when unpopulated or merge-placed zero), with PTE_WRITABLE (bit 31) on a writable page.
   * Private: nothing outside reads an entry as a frame number (frameAt converts).
   */
  #pte: Int32Array = EMPTY_I32
  /** @internal PAGE_* bits per page. */
  pflags: Uint8Array = EMPTY_U8
  /** @internal merge-placed zero pages in this space (kernel: mm->ksm_zero_pages). */
  ksmZeroPages = 0
  /** Copy-on-write faults that copied a frame in this space. */
  cowFaults = 0
  /**
   * Whether this space's domain runs in secure mode (the engine's `secure` / `secureDomains`),
   * fixed at creation: its merged and candidate pages always copy on their first write, its
   * copy-on-write frames come from random free frames, and merging waits for idle pages.
   */
  readonly secure: boolean
  /**
   * @internal secure mode's idle counts: 0 = not armed, else 1 + merge passes that found the
   * page unwritten since it was armed. Every write fault and every path that makes a page
   * writable without a fault resets it. Null outside secure mode.
   */
  idle: Uint8Array | null

  /** @internal the frame pool; shared by every space of one engine. */
  readonly pool: FramePool
  #pins: Map<number, number> = new Map()
  #disposed = false
  // Hot-path state: private fields initialised with their final numeric types, so V8 keeps
  // them in-object and never checks or untags a Smi on the hot path.
  #shift = 12
  /** pageShift - 2: frame number to its first word (a PTE's PTE_FRAME bits); cold paths only. */
  #wshift = 10
  #mask = 4095
  #end = 0
  #lastU32 = -1
  /** Last address of an aligned word the Uint32Array fast paths may serve: size - 4, or -1 on a big-endian host. */
  #lastAligned = -1
  #lastU16 = -1
  /** The pool's store views, cached here (one load on the hot path); refreshed by storeChanged(). */
  #u8: Uint8Array = EMPTY_U8
  #u32: Uint32Array = EMPTY_U32
  #dv: DataView = EMPTY_DV
  /** Translation epoch: bumped whenever a translation this space handed out may be stale. */
  #epoch = 0
  // Missing pages (registerMissing). Cold: only the slow paths read these. While pages are
  // missing, the fast paths' bounds (#end, #lastU32, #lastAligned, #lastU16) stop at #prefix,
  // the first missing page, so an access at or above it takes a slow path, which fills a missing
  // page before touching it. No fast path tests anything it did not test before.
  #missing: MissingSet | null = null
  /** The handler's `fill`, read once at registration, and the handler (its `this`). */
  #fillFn: ((pageIndex: number, page: Uint8Array) => void) | null = null
  #fillThis: unknown = null
  /** One page the handler writes into; copied into a frame after it returns. */
  #scratch: Uint8Array = EMPTY_U8
  /** The first missing page (pages while none is missing). */
  #prefix = 0

  /** `options` come from {@link resolveSpaceOptions}. `secure`: the domain runs in secure mode. */
  constructor(pool: FramePool, options: ResolvedSpaceOptions, secure: boolean) {
    const size = options.size
    this.id = nextSpaceId++
    this.pool = pool
    this.size = size
    this.pageSize = pool.pageSize
    this.pages = size / pool.pageSize
    this.name = options.name ?? `space-${this.id}`
    this.domain = options.domain
    pool.assertIdle()
    // Page tables are an allocation point too (createSpace, fork): fault injection can fail it.
    if (pool.failpoint !== null) pool.failpoint("space")
    const tables = pool.takeTables(this.pages, true)
    this.#pte = tables.pte
    this.pflags = tables.pflags
    this.secure = secure === true
    this.idle = this.secure ? new Uint8Array(this.pages) : null
    this.#shift = pool.pageShift
    this.#wshift = pool.pageShift - 2
    this.#mask = pool.pageSize - 1
    this.#setBounds(size)
    this.#prefix = this.pages
    this.#u8 = pool.bytes
    this.#u32 = pool.words
    this.#dv = pool.view
    pool.addUser(this)
  }

  /** The fast paths serve addresses below `limit` (the size, or the filled prefix while pages are missing). */
  #setBounds(limit: number): void {
    this.#end = limit
    this.#lastU32 = limit - 4
    this.#lastAligned = LITTLE_ENDIAN ? limit - 4 : -1
    this.#lastU16 = limit - 2
  }

  /** StoreUser: the pool's store moved (growth, shrink, revocation): re-read its views. */
  storeChanged(): void {
    this.#u8 = this.pool.bytes
    this.#u32 = this.pool.words
    this.#dv = this.pool.view
    this.#epoch++
  }

  /** A PTE of this space changed or a frame it maps moved: translations may be stale. */
  invalidate(): void {
    this.#epoch++
  }

  /**
   * PR_SET_MEMORY_MERGE state: every page of the space is a candidate for the background
   * scanner (the per-page alternative is PAGE_MERGEABLE). Lives here, beside the page flags it
   * widens, so the scanner reads it from the memory model. Inherited by fork().
   */
  mergeAny = false

  /** True once dispose() ran. */
  get disposed(): boolean {
    return this.#disposed
  }

  /** Bytes of page-table metadata this space holds. */
  get metadataBytes(): number {
    return this.#pte.byteLength + this.pflags.byteLength + (this.idle?.byteLength ?? 0) + (this.#missing?.bytes ?? 0) + this.#scratch.byteLength
  }

  // ---------------------------------------------------------------- word access

  // The fast paths test `typeof addr === "number"` before `(addr >>> 0) === addr` (an integer in
  // [0, 2^32)): `>>>` would convert a BigInt, Symbol or object (running the caller's valueOf),
  // so anything but a number falls to the slow path unconverted and gets a typed error there.

  /** Read one byte. */
  readU8(addr: number): number {
    if (typeof addr === "number" && (addr >>> 0) === addr && addr < this.#end) return this.#u8[(this.#pte[addr >>> this.#shift]! << 2) | (addr & this.#mask)]!
    return this.#slowRead(addr, 1) >>> 0
  }

  /** Read a little-endian u16; any alignment, may straddle pages. */
  readU16(addr: number): number {
    if (typeof addr === "number" && (addr >>> 0) === addr && addr <= this.#lastU16 && (addr & this.#mask) !== this.#mask) {
      return this.#dv.getUint16((this.#pte[addr >>> this.#shift]! << 2) | (addr & this.#mask), true)
    }
    return this.#slowRead(addr, 2) >>> 0
  }

  /** Read a little-endian u32; any alignment, may straddle pages. */
  readU32(addr: number): number {
    if (typeof addr === "number" && (addr >>> 0) === addr) {
      // Aligned: one Uint32Array load (#lastAligned is -1 on a big-endian host: DataView below).
      if ((addr & 3) === 0 && addr <= this.#lastAligned) return this.#u32[(this.#pte[addr >>> this.#shift]! & 0x7fffffff) | ((addr & this.#mask) >>> 2)]!
      const off = addr & this.#mask
      if (addr <= this.#lastU32 && off <= this.#mask - 3) return this.#dv.getUint32((this.#pte[addr >>> this.#shift]! << 2) | off, true)
    }
    // `>>> 0` (a no-op on its uint32 result) keeps the method's result an unboxed uint32 in the
    // caller's optimised code: without it, once the slow path has run, every result above
    // 2^31 - 1 is boxed into a new HeapNumber.
    return this.#slowRead(addr, 4) >>> 0
  }

  /** Write one byte: the low 8 bits of `value`, a safe integer (NaN, fractions, Infinity: InvalidArgument). */
  writeU8(addr: number, value: number): void {
    if (typeof addr === "number" && (addr >>> 0) === addr && addr < this.#end && typeof value === "number" && ((value >>> 0) === value || (value | 0) === value)) {
      // One load: a writable page's entry is negative (PTE_WRITABLE), and `<< 2` shifts the bit out.
      const e = this.#pte[addr >>> this.#shift]!
      if (e < 0) {
        this.#u8[(e << 2) | (addr & this.#mask)] = value
        return
      }
    }
    this.#writeWord(addr, value, 1)
  }

  /** Write a little-endian u16: the low 16 bits of `value`, a safe integer. */
  writeU16(addr: number, value: number): void {
    this.#writeWord(addr, value, 2)
  }

  /**
   * Write a little-endian u32: the low 32 bits of `value`, a safe integer (so -1 writes
   * 0xffffffff). NaN, fractions, Infinity and unsafe integers (past 2^53) are InvalidArgument.
   * The u32/i32 tests come first, so the usual value costs no Number.isSafeInteger call.
   */
  writeU32(addr: number, value: number): void {
    // Fast path: an aligned address below 2^32 in a writable page, an int32/uint32 value.
    if (typeof addr === "number" && (addr >>> 0) === addr && (addr & 3) === 0 && addr <= this.#lastAligned && typeof value === "number" && ((value >>> 0) === value || (value | 0) === value)) {
      const e = this.#pte[addr >>> this.#shift]!
      if (e < 0) {
        this.#u32[(e & 0x7fffffff) | ((addr & this.#mask) >>> 2)] = value
        return
      }
    }
    this.#writeWord(addr, value, 4)
  }

  /**
   * Read-modify-write of a little-endian u32, translated once: stores `(old + delta) mod 2^32`
   * and returns the new value. `delta` is a safe integer. The page faults for writing (copy-on-
   * write) only if it is not writable yet.
   */
  addU32(addr: number, delta: number): number {
    if (typeof addr === "number" && (addr >>> 0) === addr && (addr & 3) === 0 && addr <= this.#lastAligned && typeof delta === "number" && ((delta >>> 0) === delta || (delta | 0) === delta)) {
      const e = this.#pte[addr >>> this.#shift]!
      if (e < 0) {
        const i = (e & 0x7fffffff) | ((addr & this.#mask) >>> 2)
        const u32 = this.#u32
        return (u32[i] = (u32[i]! + delta) >>> 0)
      }
    }
    return this.#updateSlow(addr, delta, null) >>> 0
  }

  /**
   * Read-modify-write of a little-endian u32, translated once: stores the low 32 bits of
   * `fn(old)` (a safe integer, else InvalidArgument and nothing changes) and returns it. `fn`
   * runs before anything changes; it must not call this engine (Busy).
   */
  updateU32(addr: number, fn: (old: number) => number): number {
    if (typeof fn !== "function") {
      this.#live()
      throw new InvalidArgument(`fn must be a function, got ${show(fn)}`)
    }
    if (typeof addr === "number" && (addr >>> 0) === addr && (addr & 3) === 0 && addr <= this.#lastAligned) {
      const e = this.#pte[addr >>> this.#shift]!
      if (e < 0) {
        const i = (e & 0x7fffffff) | ((addr & this.#mask) >>> 2)
        const next = this.#callUpdate(fn, this.#u32[i]!)
        return (this.#u32[i] = next)
      }
    }
    return this.#updateSlow(addr, 0, fn) >>> 0
  }

  /** Run the caller's update with the engine marked busy (it cannot change the mapping); its result, checked. */
  #callUpdate(fn: (old: number) => number, old: number): number {
    let next: number
    this.pool.busy++
    try {
      next = fn(old)
    } finally {
      this.pool.busy--
    }
    if (typeof next !== "number" || ((next | 0) !== next && !Number.isSafeInteger(next))) this.#badValue(next)
    return next >>> 0
  }

  #updateSlow(addr: number, delta: number, fn: ((old: number) => number) | null): number {
    // The true bounds: the fast paths' may stop short of them while pages are missing.
    if (!(typeof addr === "number" && (addr >>> 0) === addr && addr <= this.size - 4)) this.#badAddr(addr, 4)
    this.#live()
    if (fn === null && typeof delta !== "number") this.#badValue(delta)
    const old = this.readU32(addr)
    let next: number
    if (fn === null) {
      next = delta
      if ((next | 0) !== next && !Number.isSafeInteger(next)) this.#badValue(next)
      next = (old + next) >>> 0
    } else {
      next = this.#callUpdate(fn, old)
    }
    this.writeU32(addr, next)
    return next
  }

  /** The checked store behind the word writes' slow paths: validate, straddle or fault, store. */
  #writeWord(addr: number, value: number, width: 1 | 2 | 4): void {
    if (!(Number.isInteger(addr) && addr >= 0 && addr <= this.size - width)) this.#badAddr(addr, width)
    if (typeof value !== "number" || ((value | 0) !== value && !Number.isSafeInteger(value))) this.#badValue(value)
    this.#live()
    const off = addr & this.#mask
    if (off > this.#mask - (width - 1)) return this.#writeStraddle(addr, value, width)
    const pi = (addr - off) / this.pageSize
    if (this.#pte[pi]! >= 0) this.#faultOne(pi)
    const o = (this.#pte[pi]! << 2) | off
    if (width === 1) this.#u8[o] = value
    else if (width === 2) this.#dv.setUint16(o, value, true)
    else this.#dv.setUint32(o, value, true)
  }

  /** The checked load behind the word reads' slow paths: validate, then straddle or load. */
  #slowRead(addr: number, width: 1 | 2 | 4): number {
    if (!(Number.isInteger(addr) && addr >= 0 && addr <= this.size - width)) this.#badAddr(addr, width)
    this.#live()
    const off = addr & this.#mask
    if (off > this.#mask - (width - 1)) return width === 2 ? this.readU8(addr) | (this.readU8(addr + 1) << 8) : this.#readU32Straddle(addr)
    const pi = (addr - off) / this.pageSize
    if (this.#missing !== null && this.#missing.has(pi)) this.#fetch(pi)
    const o = (this.#pte[pi]! << 2) | off
    return width === 1 ? this.#u8[o]! : width === 2 ? this.#dv.getUint16(o, true) : this.#dv.getUint32(o, true)
  }

  // ---------------------------------------------------------------- direct access

  /**
   * The engine's frame store, for hosts with their own hot loops (a software TLB): `bytes`,
   * `words` (little-endian u32) and `view` over the same memory. Use with {@link translate};
   * re-read it whenever {@link tlbEpoch} changes (the store can move).
   */
  get memory(): { readonly bytes: Uint8Array; readonly words: Uint32Array; readonly view: DataView } {
    this.#live()
    return { bytes: this.#u8, words: this.#u32, view: this.#dv }
  }

  /**
   * Translate `addr` to the byte offset, in {@link memory}`.bytes`, of the start of the frame
   * that maps its page. With `forWrite`, the page is first made private and writable exactly as
   * a write would (populate, copy-on-write), and the translation may be written through until
   * {@link tlbEpoch} changes. Without it, the frame may be shared (with other spaces, or the
   * zero frame): read only. A stale write translation cannot reach a frame that became shared,
   * moved or someone else's: every such change first detaches the store's buffer (views kept by
   * the host stop working) and bumps the epoch.
   */
  translate(addr: number, forWrite: boolean = false): number {
    // Fast path (a host's TLB miss): a live, idle space (#end is 0 once disposed) and a page
    // that needs no fault. Everything else, errors included, takes the checked path below.
    if (typeof addr === "number" && (addr >>> 0) === addr && addr < this.#end && this.pool.busy === 0) {
      const e = this.#pte[addr >>> this.#shift]!
      if (forWrite === false) return e << 2
      if (forWrite === true && e < 0 && !this.pool.shared) {
        this.pool.lentForWrite = true
        return e << 2
      }
    }
    return this.#translateChecked(addr, forWrite)
  }

  #translateChecked(addr: number, forWrite: boolean): number {
    if (!(typeof addr === "number" && (addr >>> 0) === addr && addr < this.size)) this.#badAddr(addr, 1)
    this.#live()
    if (typeof forWrite !== "boolean") throw new InvalidArgument(`forWrite must be a boolean, got ${typeof forWrite}`)
    const pi = addr >>> this.#shift
    // A missing page is filled before any translation of it is lent.
    if (this.#missing !== null && this.#missing.has(pi)) this.#fetch(pi)
    if (forWrite) {
      if (this.pool.shared) throw new Unsupported("translate(addr, true): write translations cannot be revoked over a shared frame store (sharedMemory); write through the word or bulk API")
      if (this.#pte[pi]! >= 0) this.#faultOne(pi)
      this.pool.lentForWrite = true
    }
    return this.#pte[pi]! << 2
  }

  /**
   * Changes whenever a translation this space handed out may be stale: a write fault or other
   * change of one of its pages, a merge, unmerge, discard, fork or dispose, a compaction or a
   * move of the engine's store. A host re-translates (and re-reads {@link memory}) when it changes.
   */
  get tlbEpoch(): number {
    return this.#epoch
  }

  #readU32Straddle(addr: number): number {
    return (this.readU8(addr) | (this.readU8(addr + 1) << 8) | (this.readU8(addr + 2) << 16) | (this.readU8(addr + 3) << 24)) >>> 0
  }

  #writeStraddle(addr: number, value: number, n: number): void {
    // Both pages fault (and reserve) before any byte lands: no partial write.
    const p0 = Math.floor(addr / this.pageSize)
    const p1 = Math.floor((addr + n - 1) / this.pageSize)
    this.#faultRange(p0, p1 + 1)
    for (let k = 0; k < n; k++) this.writeU8(addr + k, (value >>> (8 * k)) & 0xff)
  }

  #badAddr(addr: number, width: number): never {
    this.#live()
    checkInt("addr", addr)
    throw new OutOfBounds(`address ${addr} (+${width}) is beyond the space size ${this.size}`)
  }

  #badValue(value: unknown): never {
    this.#live()
    if (typeof value !== "number") throw new InvalidArgument(`value must be a number, got ${typeof value}`)
    throw new InvalidArgument(`value must be a safe integer (its low bits are written), got ${show(value)}`)
  }

  // ---------------------------------------------------------------- bulk access

  /** Read `length` bytes at `addr` into a new Uint8Array (a copy). */
  read(addr: number, length: number): Uint8Array {
    this.#live()
    checkRange(addr, length, this.size)
    // V8 caps one typed array (2^32 bytes in Node 20 on 64-bit hosts): past it, read in chunks with readInto.
    const out = allocating(`a Uint8Array of ${length} bytes for read(${addr}, ${length}) (read in chunks with readInto)`, () => new Uint8Array(length))
    this.#copyOut(addr, out)
    return out
  }

  /** Read `target.length` bytes at `addr` into `target`. */
  readInto(addr: number, target: Uint8Array): void {
    this.#live()
    const view = checkBytes("target", target)
    checkRange(addr, view.length, this.size)
    this.#copyOut(addr, view)
  }

  /** Write `bytes` at `addr`. All-or-nothing: frames are reserved before any byte lands. */
  write(addr: number, bytes: Uint8Array): void {
    this.#live()
    // A private view: the caller's length, subarray or getters are never consulted again.
    const view = checkBytes("bytes", bytes)
    checkRange(addr, view.length, this.size)
    const n = view.length
    if (n === 0) return
    const ps = this.pageSize
    this.#faultRange(Math.floor(addr / ps), Math.ceil((addr + n) / ps), addr, addr + n)
    let done = 0
    while (done < n) {
      const a = addr + done
      const off = a % ps
      const take = Math.min(ps - off, n - done)
      this.#u8.set(view.subarray(done, done + take), (this.#pte[(a - off) / ps]! << 2) + off)
      done += take
    }
  }

  /** Fill `length` bytes at `addr` with `byte` (0..255). */
  fill(addr: number, length: number, byte: number): void {
    this.#live()
    checkRange(addr, length, this.size)
    checkIntIn("byte", byte, 0, 255)
    if (length === 0) return
    const ps = this.pageSize
    const end = addr + length
    // Like memset, filling populates every page, zeros included (the zero-page selftests rely on it).
    this.#faultRange(Math.floor(addr / ps), Math.ceil(end / ps), addr, end)
    let a = addr
    while (a < end) {
      const off = a % ps
      const take = Math.min(ps - off, end - a)
      const o = (this.#pte[(a - off) / ps]! << 2) + off
      this.#u8.fill(byte, o, o + take)
      a += take
    }
  }

  #copyOut(addr: number, out: Uint8Array): void {
    const ps = this.pageSize
    const n = out.length
    if (this.#missing !== null && n > 0) this.#fetchRange(Math.floor(addr / ps), Math.ceil((addr + n) / ps))
    let done = 0
    while (done < n) {
      const a = addr + done
      const off = a % ps
      const take = Math.min(ps - off, n - done)
      const o = (this.#pte[(a - off) / ps]! << 2) + off
      out.set(this.#u8.subarray(o, o + take), done)
      done += take
    }
  }

  // ---------------------------------------------------------------- faults

  /**
   * Fault page `pi` for writing. Reserves its frame first, so it fails before changing anything.
   * Callers have checked #live() already (ensureFree re-checks Busy).
   */
  #faultOne(pi: number): void {
    if (this.#missing !== null && this.#missing.has(pi)) this.#fetch(pi)
    this.pool.ensureFree(this.#needsFrame(pi) ? 1 : 0, "cow")
    this.#fault(pi, false)
  }

  /**
   * Fault pages [p0, p1) for writing: reserve every frame needed, then fault each.
   * `lo..hi` is the byte range being written: a page it covers whole needs no zeroing/copy.
   */
  #faultRange(p0: number, p1: number, lo = -1, hi = -1): void {
    const pte = this.#pte
    const ps = this.pageSize
    // Missing pages the write covers only in part are filled first; those it covers whole need
    // no contents: they stop being missing just before their fault, once the frames are reserved.
    for (let pi = this.#nextMissing(p0, p1); pi < p1; pi = this.#nextMissing(pi + 1, p1)) {
      if (!(lo <= pi * ps && (pi + 1) * ps <= hi)) this.#fetch(pi)
    }
    let need = 0
    for (let pi = p0; pi < p1; pi++) {
      if (pte[pi]! >= 0 && this.#needsFrame(pi)) need++
    }
    this.pool.ensureFree(need, "cow")
    for (let pi = p0; pi < p1; pi++) {
      if (pte[pi]! >= 0) {
        if (this.#missing !== null) this.#forget(pi)
        this.#fault(pi, lo <= pi * ps && (pi + 1) * ps <= hi)
      }
    }
  }

  /** Would a write fault on page `pi` allocate a frame (rather than reuse its own)? */
  #needsFrame(pi: number): boolean {
    const f = this.frameAt(pi)
    if (f === ZERO_FRAME) return true
    if (this.pool.refcount[f]! > 1) return true
    // A sole mapper reuses its frame; a merge-table frame only if the pool allows it (not in secure mode).
    return (this.pool.flags[f]! & FRAME_KSM) !== 0 && (this.secure || !this.pool.reuseSoleKsm)
  }

  /**
   * The write fault (do_wp_page / do_anonymous_page): give page `pi` a private,
   * unprotected frame. `whole`: the caller overwrites the whole page, skip zero/copy.
   * Never fails: callers reserved the frame.
   */
  #fault(pi: number, whole: boolean): void {
    const pool = this.pool
    const fl = this.pflags[pi]!
    const f = this.frameAt(pi)
    const wasKsm = (pool.flags[f]! & FRAME_KSM) !== 0
    // A merged page leaves sharing first, so the table sees it go before the frame may be freed.
    if ((fl & PAGE_MERGED) !== 0) pool.observer?.mergedPageLeft(f)
    if (f === ZERO_FRAME) {
      // do_anonymous_page, or the write fault on a merge-placed zero page.
      if ((fl & PAGE_KSM_ZERO) !== 0) {
        this.ksmZeroPages--
        pool.ksmZeroPages--
      }
      const nf = this.secure ? pool.allocRandom(!whole) : whole ? pool.alloc() : pool.allocZeroed()
      pool.refcount[nf] = 1
      this.setFrame(pi, nf)
      this.#epoch++
    } else if (pool.refcount[f] === 1 && (pool.flags[f]! & FRAME_KSM) === 0 && (!wasKsm || (pool.reuseSoleKsm && !this.secure))) {
      // Sole mapper of a private frame: reuse in place (wp_can_reuse_anon_folio).
    } else {
      const nf = this.secure ? pool.allocRandom(false) : pool.alloc()
      if (!whole) pool.copy(f, nf)
      pool.refcount[nf] = 1
      this.setFrame(pi, nf)
      this.#epoch++
      pool.decref(f)
      this.cowFaults++
      pool.cowFaults++
    }
    this.grantWrite(pi, (fl & ~PAGE_FAULT_CLEARS) | PAGE_SOFT_DIRTY)
    // Secure mode: a write ends the page's idle period.
    if (this.idle !== null) this.idle[pi] = 0
  }

  // ---------------------------------------------------------------- madvise-like

  /**
   * MADV_DONTNEED: drop the pages in a page-aligned range; they read as zeros again.
   * Throws PinnedPage (and drops nothing) if any page in the range is pinned.
   */
  discard(addr: number, length: number): void {
    this.#live()
    checkAlignedRange(addr, length, this.size, this.pageSize)
    const p0 = addr / this.pageSize
    const p1 = p0 + length / this.pageSize
    for (let pi = p0; pi < p1; pi++) {
      if ((this.pflags[pi]! & PAGE_PINNED) !== 0) throw new PinnedPage(`page at ${pi * this.pageSize} is pinned; unpin it before discarding`)
    }
    for (let pi = p0; pi < p1; pi++) {
      // MADV_DONTNEED on a missing page: it becomes an ordinary (zero) page, never filled.
      if (this.#missing !== null) this.#forget(pi)
      this.#zap(pi)
    }
  }

  /** Unmap page `pi` (zap_pte_range). Keeps VMA-like bits; counts as a write for uffd-wp. */
  #zap(pi: number): void {
    const fl = this.pflags[pi]!
    const f = this.frameAt(pi)
    // The frame may go to another space: no write translation of it may survive.
    if (f !== ZERO_FRAME) {
      this.pool.revokeWrites()
      this.#epoch++
    }
    if ((fl & PAGE_MERGED) !== 0) this.pool.observer?.mergedPageLeft(f)
    if ((fl & PAGE_KSM_ZERO) !== 0) {
      this.ksmZeroPages--
      this.pool.ksmZeroPages--
    }
    if (f !== ZERO_FRAME) this.pool.decref(f)
    this.setFrame(pi, ZERO_FRAME)
    // MADV_DONTNEED counts as dirtying under uffd-wp async; the registration stays.
    this.pflags[pi] = fl & (PAGE_MERGEABLE | PAGE_UFFD_REG)
  }

  /**
   * Pin a range (pin_user_pages with FOLL_WRITE|FOLL_LONGTERM): each page gets a private,
   * populated frame that is never merged, moved or discarded until unpinned. Pins nest.
   */
  pin(addr: number, length: number): void {
    this.#live()
    checkRange(addr, length, this.size)
    if (length === 0) return
    const ps = this.pageSize
    const p0 = Math.floor(addr / ps)
    const p1 = Math.ceil((addr + length) / ps)
    this.#faultRange(p0, p1)
    for (let pi = p0; pi < p1; pi++) {
      const n = this.#pins.get(pi) ?? 0
      if (n === 0xffffffff) throw new InvalidArgument("pin count overflow")
      this.#pins.set(pi, n + 1)
      this.pflags[pi]! |= PAGE_PINNED
      this.pool.flags[this.frameAt(pi)]! |= FRAME_PINNED
    }
  }

  /** Drop one pin from each page of a range. Throws InvalidArgument (and changes nothing) if a page is not pinned. */
  unpin(addr: number, length: number): void {
    this.#live()
    checkRange(addr, length, this.size)
    if (length === 0) return
    const ps = this.pageSize
    const p0 = Math.floor(addr / ps)
    const p1 = Math.ceil((addr + length) / ps)
    for (let pi = p0; pi < p1; pi++) {
      if (!this.#pins.has(pi)) throw new InvalidArgument(`page at ${pi * ps} is not pinned`)
    }
    for (let pi = p0; pi < p1; pi++) {
      const n = this.#pins.get(pi)! - 1
      if (n > 0) {
        this.#pins.set(pi, n)
        continue
      }
      this.#pins.delete(pi)
      this.pflags[pi]! &= ~PAGE_PINNED
      this.pool.flags[this.frameAt(pi)]! &= ~FRAME_PINNED
    }
  }

  /** Pages pinned right now. */
  get pinnedPages(): number {
    return this.#pins.size
  }

  // ---------------------------------------------------------------- write tracking

  /**
   * UFFDIO_WRITEPROTECT on a range registered in async mode (UFFD_FEATURE_WP_ASYNC with
   * WP_UNPOPULATED): `enable` protects every page, so its next write just clears the bit
   * (no fault is delivered) and pagemapScan reports it WRITTEN; `enable = false` unprotects.
   * The first call on a page registers it (PAGE_IS_WPALLOWED; UFFDIO_REGISTER folded in).
   * What clears the protection: any write (including a copy-on-write fault on a merged page
   * and pin(), which faults for writing) and discard() (MADV_DONTNEED counts as a write).
   * What keeps it: reads, merge, unmerge (an unshare, not a write). A fork child is not registered.
   */
  writeProtect(addr: number, length: number, enable: boolean = true): void {
    this.#live()
    checkAlignedRange(addr, length, this.size, this.pageSize)
    if (typeof enable !== "boolean") throw new InvalidArgument(`enable must be a boolean, got ${typeof enable}`)
    const p0 = addr / this.pageSize
    const p1 = p0 + length / this.pageSize
    this.protectPages(p0, p1, enable)
  }

  // ---------------------------------------------------------------- page-table entries
  // Everything outside the word-access paths reads and changes PTEs through these: an entry
  // carries PTE_WRITABLE, which no caller may take for part of a frame number.

  /** @internal the frame page `pi` maps (0: the zero frame). */
  frameAt(pi: number): number {
    return (this.#pte[pi]! & PTE_FRAME) >>> this.#wshift
  }

  /** @internal whether page `pi` is writable (private frame, no protection: writes need no fault). */
  isWritable(pi: number): boolean {
    return this.#pte[pi]! < 0
  }

  /** @internal page `pi` maps frame `f`, not writable (a write faults first). */
  setFrame(pi: number, f: number): void {
    this.#pte[pi] = f << this.#wshift
  }

  /** @internal compaction moved page `pi`'s frame to `f`: same mapping, writable bit kept. */
  moveFrame(pi: number, f: number): void {
    this.#pte[pi] = (this.#pte[pi]! & PTE_WRITABLE) | (f << this.#wshift)
  }

  /** @internal write-protect page `pi` (clear PTE_WRITABLE): its next write faults. */
  revokeWrite(pi: number): void {
    this.#pte[pi] = this.#pte[pi]! & PTE_FRAME
  }

  /** @internal write-protect every page (a store's pre-copy: any later write moves its frame's write generation). */
  revokeWriteAll(): void {
    const pte = this.#pte
    for (let i = 0; i < pte.length; i++) if (pte[i]! < 0) pte[i] = pte[i]! & PTE_FRAME
  }

  /**
   * @internal Page `pi`, its frame already in the PTE, becomes writable with flags `fl`: the one
   * place PTE_WRITABLE is granted, so the frame's write generation moves with it (a hashing
   * thread's digest of it is stale from now on; src/policy/offload.ts).
   */
  grantWrite(pi: number, fl: number): void {
    this.pflags[pi] = fl
    this.#pte[pi] = this.#pte[pi]! | PTE_WRITABLE
    this.pool.madeWritable(this.frameAt(pi))
  }

  /** @internal a copy of the page table as frame numbers (tests, tools): cold. */
  frameTable(): Int32Array {
    const wshift = this.#wshift
    return this.#pte.slice(0, this.pages).map((e) => (e & PTE_FRAME) >>> wshift)
  }

  /** @internal set or clear uffd-wp on pages [p0, p1); a protected page is never writable. */
  protectPages(p0: number, p1: number, enable: boolean): void {
    const pflags = this.pflags
    const pte = this.#pte
    if (enable) {
      this.pool.revokeWrites()
      for (let pi = p0; pi < p1; pi++) {
        pflags[pi] = pflags[pi]! | PAGE_UFFD_WP | PAGE_UFFD_REG
        pte[pi] = pte[pi]! & PTE_FRAME
      }
    } else {
      for (let pi = p0; pi < p1; pi++) {
        const fl = (pflags[pi]! & ~PAGE_UFFD_WP) | PAGE_UFFD_REG
        if (this.#privateFrame(pi)) this.grantWrite(pi, fl)
        else pflags[pi] = fl
      }
      // Pages may turn writable without a fault: secure mode's idle counts restart.
      if (this.idle !== null) this.idle.fill(0, p0, p1)
    }
  }

  /**
   * ioctl(PAGEMAP_SCAN) on /proc/self/pagemap: report the runs of pages in `[start, end)` whose
   * categories (PageCategory) match, optionally write-protecting the matched WRITTEN pages in
   * the same pass (wpMatching). The usual tracking loop is `writeProtect` once, then
   * `pagemapScan({ start, end, categoryMask: WRITTEN, returnMask: WRITTEN, wpMatching: true })`.
   * Rules and differences from the kernel: {@link pagemapScan} in memory/pagemap.ts.
   */
  pagemapScan(args: PagemapScanArgs): PagemapScanResult {
    // wpMatching may protect pages: lent write translations go first (a no-op if none were lent).
    this.pool.revokeWrites()
    return pagemapScan(this, args)
  }

  /** @internal pagemapScan's hook before its walk: missing pages of the range are filled (one is never reported as absent). */
  prepareScan(p0: number, p1: number): void {
    if (this.#missing !== null) this.#fetchRange(p0, p1)
  }

  /** Page `pi` maps a frame only it maps and that is not in the merge table. */
  #privateFrame(pi: number): boolean {
    const f = this.frameAt(pi)
    return f !== ZERO_FRAME && this.pool.refcount[f] === 1 && (this.pool.flags[f]! & FRAME_KSM) === 0 && (this.pflags[pi]! & PAGE_MERGED) === 0
  }

  // ---------------------------------------------------------------- missing pages (userfaultfd MISSING)

  /**
   * userfaultfd(UFFDIO_REGISTER_MODE_MISSING), in process: pages whose contents live elsewhere
   * until first touched. Each listed page (default: every page) that is unpopulated becomes
   * missing; a populated page is left as it is (as the kernel only faults on `pte_none`). The
   * first access of any kind to a missing page (a word read or write, a bulk read, write or fill,
   * translate, pin) calls `handler.fill(pageIndex, page)` synchronously, installs what it wrote
   * (UFFDIO_COPY; an all-zero page stays unpopulated), then does the access. Pages can also be
   * installed ahead of their fault with {@link copyMissing} or {@link fetchMissing}; once none is
   * missing the registration is dropped. Returns how many pages became missing.
   *
   * When to use: a space that must be usable before its contents have arrived (lazy snapshot
   * restore: `SnapshotStore.restore(name, engine, { lazy: true })` does all of this).
   * The word-access fast paths stay as they are: while pages are missing, their bounds stop at
   * the first missing page, so accesses above it take the (slower) checked path until the
   * pages below are filled, and a filler that goes in address order speeds up the whole space.
   *
   * Gotchas: `handler.fill` is read once, here; it must not call the engine (Busy), must not keep
   * `page`, and what it throws makes the access throw PageFetchFailed (the page stays missing,
   * nothing changed). merge(), unmerge() and the scanner skip missing pages (they are neither
   * zero nor mergeable until filled: merge again afterwards); pagemapScan() and fork() fill the
   * missing pages they cover first; discard() makes a missing page an ordinary zero page.
   * One registration at a time (InvalidArgument while pages are still missing).
   */
  registerMissing(handler: MissingPageHandler, pages?: Uint32Array | readonly number[]): number {
    this.#live()
    if (this.#missing !== null) throw new InvalidArgument(`space ${this.name} still has ${this.#missing.count} missing pages registered`)
    if ((typeof handler !== "object" && typeof handler !== "function") || handler === null) throw new InvalidArgument(`handler must be an object with a fill(pageIndex, page) method, got ${show(handler)}`)
    let fill: unknown
    try {
      fill = handler.fill
    } catch (cause) {
      throw new InvalidArgument(`handler.fill: reading it threw (${errorText(cause)})`, { cause })
    }
    if (typeof fill !== "function") throw new InvalidArgument(`handler.fill must be a function, got ${show(fill)}`)
    const list = pages === undefined ? null : readPageList(pages, this.pages)
    const set = allocating(`the missing-page bitmap of a ${this.pages}-page space`, () => new MissingSet(this.pages))
    const pte = this.#pte
    const pflags = this.pflags
    const n = list === null ? this.pages : list.length
    for (let i = 0; i < n; i++) {
      const pi = list === null ? i : list[i]!
      // Only unpopulated pages can be missing: no frame, not a merge-placed zero page.
      if ((pte[pi]! & PTE_FRAME) === ZERO_FRAME && (pflags[pi]! & (PAGE_KSM_ZERO | PAGE_PINNED)) === 0) set.add(pi)
    }
    if (set.count === 0) return 0
    this.#missing = set
    this.#fillFn = fill as (pageIndex: number, page: Uint8Array) => void
    this.#fillThis = handler
    this.#scratch = new Uint8Array(this.pageSize)
    this.#prefix = set.next(0, this.pages)
    this.#setBounds(this.#prefix * this.pageSize)
    // A read translation of a page now missing (the zero frame) must not be used again.
    this.#epoch++
    return set.count
  }

  /**
   * UFFDIO_COPY: install `bytes` (whole pages, at page-aligned `addr`) as the contents of the
   * missing pages of `[addr, addr + bytes.length)`; the pages of the range that are not missing
   * are left alone (the kernel's EEXIST, here no error: a filler racing the faults just skips
   * what a fault filled first). Returns how many pages it installed. All-or-nothing: the frames
   * are reserved first (OutOfMemory changes nothing).
   */
  copyMissing(addr: number, bytes: Uint8Array): number {
    this.#live()
    const view = checkBytes("bytes", bytes)
    const length = view.length
    checkAlignedRange(addr, length, this.size, this.pageSize)
    if (this.#missing === null || length === 0) return 0
    const ps = this.pageSize
    const p0 = addr / ps
    const p1 = p0 + length / ps
    let need = 0
    for (let pi = this.#nextMissing(p0, p1); pi < p1; pi = this.#nextMissing(pi + 1, p1)) need++
    this.pool.ensureFree(need, "missing")
    // A view of the engine's own store is detached if the reservation moved it.
    if (view.length !== length) throw new InvalidArgument("bytes was detached while frames were reserved (a view of the engine's own memory?)")
    let n = 0
    for (let pi = this.#nextMissing(p0, p1); pi < p1; pi = this.#nextMissing(pi + 1, p1)) {
      this.#install(pi, view, (pi - p0) * ps)
      n++
    }
    return n
  }

  /**
   * MADV_POPULATE_READ for missing pages: fill the missing pages of `[addr, addr+length)`
   * (default: to the end) through the handler now, in address order. Returns how many it filled.
   * A handler error throws PageFetchFailed; the pages filled before it stay filled.
   */
  fetchMissing(addr: number = 0, length?: number): number {
    this.#live()
    const n = checkRangeToEnd(addr, length, this.size)
    if (this.#missing === null || n === 0) return 0
    const ps = this.pageSize
    return this.#fetchRange(Math.floor(addr / ps), Math.ceil((addr + n) / ps))
  }

  /** Pages still missing (0 once every page is filled or discarded, and after dispose). */
  get missingPages(): number {
    return this.#missing?.count ?? 0
  }

  /** Whether the page holding `addr` is missing (registered and not filled yet). */
  isMissing(addr: number): boolean {
    this.#live()
    checkRange(addr, 1, this.size)
    return this.#missing !== null && this.#missing.has(Math.floor(addr / this.pageSize))
  }

  /** The first missing page in [p0, p1), or p1. */
  #nextMissing(p0: number, p1: number): number {
    return this.#missing === null ? p1 : this.#missing.next(p0, p1)
  }

  /** Fill the missing pages of [p0, p1) through the handler; how many. */
  #fetchRange(p0: number, p1: number): number {
    let n = 0
    for (let pi = this.#nextMissing(p0, p1); pi < p1; pi = this.#nextMissing(pi + 1, p1)) {
      this.#fetch(pi)
      n++
    }
    return n
  }

  /**
   * The MISSING fault of page `pi`: reserve a frame, have the handler fill the scratch page (the
   * engine busy: it cannot call back), then install it. Throws (changing nothing) on OutOfMemory
   * or PageFetchFailed.
   */
  #fetch(pi: number): void {
    const pool = this.pool
    const ps = this.pageSize
    pool.ensureFree(1, "missing")
    const page = this.#scratch
    page.fill(0)
    pool.busy++
    try {
      Reflect.apply(this.#fillFn!, this.#fillThis, [pi, page])
    } catch (cause) {
      throw new PageFetchFailed(pi, `page ${pi} (address ${pi * ps}) of space ${this.name} could not be filled: ${errorText(cause)}`, { cause })
    } finally {
      pool.busy--
    }
    if (page.length !== ps) {
      this.#scratch = new Uint8Array(ps)
      throw new PageFetchFailed(pi, `page ${pi} (address ${pi * ps}) of space ${this.name} could not be filled: the handler detached its page buffer`)
    }
    this.#install(pi, page, 0)
  }

  /**
   * UFFDIO_COPY of one page: `src[at, at + pageSize)` becomes page `pi`'s contents. A frame was
   * reserved (all-zero contents take none: the page stays unpopulated). Never fails.
   */
  #install(pi: number, src: Uint8Array, at: number): void {
    const pool = this.pool
    const ps = this.pageSize
    if (!pool.backing.isZero(src, at, ps)) {
      const nf = this.secure ? pool.allocRandom(false) : pool.alloc()
      // Read the store's view after alloc (it cannot move after the reservation, but be exact).
      this.#u8.set(src.subarray(at, at + ps), nf << this.#shift)
      pool.refcount[nf] = 1
      this.setFrame(pi, nf)
      const fl = this.pflags[pi]!
      // Private and writable, unless uffd-wp protects it (filling is not a write: no soft-dirty).
      if ((fl & PAGE_UFFD_WP) === 0) this.grantWrite(pi, fl)
      if (this.idle !== null) this.idle[pi] = 0
    }
    this.#forget(pi)
    this.#epoch++
  }

  /** Page `pi` is no longer missing (if it was): move the fast paths' bounds past the filled prefix. */
  #forget(pi: number): void {
    const set = this.#missing!
    if (!set.delete(pi)) return
    if (set.count === 0) {
      // The last one: an ordinary space again.
      this.#missing = null
      this.#fillFn = null
      this.#fillThis = null
      this.#scratch = EMPTY_U8
      this.#prefix = this.pages
      this.#setBounds(this.size)
    } else if (pi === this.#prefix) {
      this.#prefix = set.next(pi + 1, this.pages)
      this.#setBounds(this.#prefix * this.pageSize)
    }
  }

  // ---------------------------------------------------------------- fork / dispose

  /**
   * @internal the page-table half of fork(): make `child` map every frame this space maps,
   * copy-on-write for both. Pinned pages are copied eagerly (as the kernel does for
   * pinned anon pages). Merge-placed zero pages stay merge-placed in the child;
   * PAGE_MERGED is not inherited (the child's ksmMergingPages starts at 0).
   */
  forkInto(child: PagedSpace): void {
    this.#live()
    // fork() fills missing pages before making the child (MergeableSpace.fork): the child gets contents, not a registration.
    if (this.#missing !== null) throw new Error("internal: forkInto on a space with missing pages")
    // Every page of the parent becomes copy-on-write: no write translation may survive.
    this.pool.revokeWrites()
    const pool = this.pool
    const pte = this.#pte
    const pflags = this.pflags
    const cpte = child.#pte
    const cfl = child.pflags
    const rc = pool.refcount
    const n = this.pages
    // What survives into the child: merge-placed zero marks, madvise state and soft-dirty
    // (copy_present_pte keeps the PTE's soft-dirty bit); not uffd registration (no EVENT_FORK).
    const keep = PAGE_KSM_ZERO | PAGE_MERGEABLE | PAGE_SOFT_DIRTY
    const wshift = this.#wshift
    for (let pi = 0; pi < n; pi++) {
      // The entry without PTE_WRITABLE: the child's, and the parent's unless the page is pinned.
      const e = pte[pi]! & PTE_FRAME
      const f = e >>> wshift
      const fl = pflags[pi]!
      cfl[pi] = fl & keep
      cpte[pi] = e
      if (f === ZERO_FRAME) continue
      if ((fl & PAGE_PINNED) !== 0) {
        // Pinned: the parent keeps its frame writable; the child gets a copy now.
        const nf = pool.alloc()
        pool.copy(f, nf)
        rc[nf] = 1
        cpte[pi] = nf << wshift
        child.grantWrite(pi, fl & keep)
        continue
      }
      rc[f]!++
      pte[pi] = e
    }
    child.ksmZeroPages = this.ksmZeroPages
    child.mergeAny = this.mergeAny
    pool.ksmZeroPages += this.ksmZeroPages
  }

  /** @internal pinned pages, for fork's reservation. */
  pinnedCount(): number {
    return this.#pins.size
  }

  /**
   * Release every frame reference this space holds; any later call throws SpaceDisposed.
   * Idempotent.
   */
  dispose(): void {
    if (this.#disposed) return
    this.pool.assertIdle()
    const n = this.pages
    for (let pi = 0; pi < n; pi++) {
      const f = this.frameAt(pi)
      const fl = this.pflags[pi]!
      if (f === ZERO_FRAME && (fl & PAGE_KSM_ZERO) === 0) continue
      if ((fl & PAGE_PINNED) !== 0) this.pool.flags[f]! &= ~FRAME_PINNED
      this.#zap(pi)
    }
    this.#pins.clear()
    // The missing-page registration goes with the space (its handler is never called again).
    this.#missing = null
    this.#fillFn = null
    this.#fillThis = null
    this.#scratch = EMPTY_U8
    this.#disposed = true
    // Zapped pages are all zero-frame entries with no flags: the tables are clean for reuse.
    this.pool.recycleTables(this.#pte, this.pflags.fill(0))
    this.pool.removeUser(this)
    this.#pte = EMPTY_I32
    this.pflags = EMPTY_U8
    this.idle = null
    this.#u8 = EMPTY_U8
    this.#u32 = EMPTY_U32
    this.#dv = EMPTY_DV
    this.#epoch++
    // Make every fast path fail its bounds check, so the slow path reports SpaceDisposed.
    this.#setBounds(0)
  }

  /** @internal throw SpaceDisposed if disposed. */
  live(): void {
    this.#live()
  }

  #live(): void {
    if (this.#disposed) throw new SpaceDisposed(`space ${this.name} was disposed`)
    if (this.pool.busy !== 0) this.pool.assertIdle()
  }
}
