/**
 * The public face of an address space: what a host may call. The engine's implementation
 * (MergeableSpace) has more, for the layers below; none of it is reachable from this type.
 */
import type { MergeReport } from "../core/merge.ts"
import type { MissingPageHandler } from "../memory/missing.ts"
import type { PagemapScanArgs, PagemapScanResult } from "../memory/pagemap.ts"

/** Bytes sksm charges per rmap item in `ksmProcessProfit` (the kernel charges sizeof(struct ksm_rmap_item), 64). */
export const RMAP_ITEM_BYTES = 16

/** Per-space statistics: the fields of /proc/<pid>/ksm_stat, plus copy-on-write faults. */
export interface SpaceStats {
  /** Pages with merge state: merged pages plus pages the scanner tracks. */
  ksmRmapItems: number
  /** Merge-placed zero pages still mapped. */
  ksmZeroPages: number
  /** Pages mapped through merging on a shared frame (the kernel's ksm_merging_pages). */
  ksmMergingPages: number
  /** (ksmMergingPages + ksmZeroPages) * pageSize - ksmRmapItems * RMAP_ITEM_BYTES. */
  ksmProcessProfit: number
  /** PR_GET_MEMORY_MERGE. */
  ksmMergeAny: boolean
  /** Any page is MADV_MERGEABLE (or mergeAny is on). */
  ksmMergeable: boolean
  /** Copy-on-write faults that copied a frame in this space. */
  cowFaults: number
}

/**
 * A paged address space with copy-on-write and merging: `engine.createSpace({ size })` (mmap of
 * anonymous private memory) or `space.fork()`. Each method names the kernel call it mirrors.
 *
 * When to use: one per guest, instance or snapshot whose memory sksm should hold.
 * Gotchas: every method throws SpaceDisposed after dispose(); a failed call changes nothing
 * (no partial write, no leaked frame, no counter moved). Addresses are byte offsets from 0;
 * words are little-endian at any alignment and may straddle pages. This is a type only: spaces
 * come from their engine (there is no constructor to call).
 */
export interface AddressSpace {
  /** Unique id of this space within the process. */
  readonly id: number
  /** Size in bytes (a multiple of the page size). */
  readonly size: number
  readonly pageSize: number
  /** Number of pages. */
  readonly pages: number
  /** A label for stats and tools. */
  readonly name: string
  /** Merge domain: pages merge only within one domain unless the engine allows crossing. */
  readonly domain: string
  /** Whether the space's domain runs in secure mode (fixed at creation). */
  readonly secure: boolean
  /** True once dispose() ran. */
  readonly disposed: boolean
  /** Copy-on-write faults that copied a frame in this space. */
  readonly cowFaults: number
  /** Pages pinned right now. */
  readonly pinnedPages: number
  /** PR_GET_MEMORY_MERGE: whether every page is mergeable for the scanner. Inherited by fork(). */
  readonly mergeAny: boolean
  /** Bytes of page-table metadata this space holds. */
  readonly metadataBytes: number

  /** Load one byte. */
  readU8(addr: number): number
  /** Load a little-endian u16. */
  readU16(addr: number): number
  /** Load a little-endian u32. */
  readU32(addr: number): number
  /** Store the low 8 bits of `value` (a safe integer; NaN, fractions, Infinity are InvalidArgument). */
  writeU8(addr: number, value: number): void
  /** Store the low 16 bits of `value`, little-endian. */
  writeU16(addr: number, value: number): void
  /** Store the low 32 bits of `value`, little-endian (so -1 writes 0xffffffff). */
  writeU32(addr: number, value: number): void
  /**
   * Read-modify-write of a little-endian u32, translated once: stores `(old + delta) mod 2^32`
   * and returns it. The page faults for writing (copy-on-write) only if it is not writable yet.
   */
  addU32(addr: number, delta: number): number
  /**
   * Read-modify-write of a little-endian u32, translated once: stores the low 32 bits of
   * `fn(old)` (a safe integer, else InvalidArgument and nothing changes) and returns them. `fn`
   * must not call the engine (Busy).
   */
  updateU32(addr: number, fn: (old: number) => number): number
  /** Read `length` bytes at `addr` into a new Uint8Array (a copy). */
  read(addr: number, length: number): Uint8Array
  /** Read `target.length` bytes at `addr` into `target`. */
  readInto(addr: number, target: Uint8Array): void
  /** Write `bytes` at `addr`; all-or-nothing (frames are reserved before any byte lands). */
  write(addr: number, bytes: Uint8Array): void
  /** memset: fill `length` bytes at `addr` with `byte` (0..255); populates every page it covers. */
  fill(addr: number, length: number, byte: number): void

  /**
   * Direct access for hosts with their own hot loops (a software TLB): the engine's frame store
   * as bytes, little-endian words and a DataView over one memory. Pair with {@link translate};
   * re-read it when {@link tlbEpoch} changes.
   *
   * The epoch only changes while a call into this engine runs (on any of its spaces, `translate`
   * included, or a background scanner's turn), so a host checks it after each such call and on
   * entry to each block of its own code, not on every access:
   *
   * ```ts
   * let epoch = space.tlbEpoch, page = -1, base = 0, words = space.memory.words
   * function enterBlock(): void {                      // after any other call into the engine
   *   if (space.tlbEpoch !== epoch) { page = -1; epoch = space.tlbEpoch; words = space.memory.words }
   * }
   * function load(addr: number): number {              // aligned u32 load through the TLB
   *   if (addr >>> 12 !== page) {
   *     base = space.translate(addr); page = addr >>> 12 // a TLB of several entries flushes them
   *     if (space.tlbEpoch !== epoch) { epoch = space.tlbEpoch; words = space.memory.words } // if this changed
   *   }
   *   return words[(base + (addr & 4095)) >>> 2]!
   * }
   * ```
   */
  readonly memory: { readonly bytes: Uint8Array; readonly words: Uint32Array; readonly view: DataView }
  /**
   * The byte offset, in `memory.bytes`, of the frame that maps `addr`'s page. With `forWrite` the
   * page is made private and writable first (populate, copy-on-write) and may be written through
   * until `tlbEpoch` changes; without it the frame may be shared: read only. A write translation
   * that went stale can never reach a frame that became shared, moved or another space's: the
   * store's buffer is detached first, so the old views stop working.
   */
  translate(addr: number, forWrite?: boolean): number
  /**
   * Changes whenever a translation this space handed out may be stale: a copy-on-write or other
   * remap of one of its pages, merge, unmerge, discard, fork, compaction, dispose, or a move of
   * the engine's store. It changes only during a call into the engine: check it after each call
   * (and on entry to a block of host code) before using cached translations.
   */
  readonly tlbEpoch: number

  /** MADV_DONTNEED on a page-aligned range: the pages read as zeros again. PinnedPage if one is pinned. */
  discard(addr: number, length: number): void
  /** pin_user_pages(FOLL_WRITE | FOLL_LONGTERM): private, populated, never merged, moved or discarded. Pins nest. */
  pin(addr: number, length: number): void
  /** unpin_user_pages: drop one pin from each page; InvalidArgument if a page is not pinned. */
  unpin(addr: number, length: number): void
  /**
   * UFFDIO_WRITEPROTECT in async mode on a page-aligned range: a protected page's next write just
   * clears the bit, and pagemapScan reports it WRITTEN. The first call registers the pages.
   */
  writeProtect(addr: number, length: number, enable?: boolean): void
  /** ioctl(PAGEMAP_SCAN): report the runs of pages whose categories match; optionally re-protect them. */
  pagemapScan(args: PagemapScanArgs): PagemapScanResult

  /**
   * userfaultfd(UFFDIO_REGISTER_MODE_MISSING), in process: the listed pages (default: all) that
   * are unpopulated become missing; the first access of any kind to one calls
   * `handler.fill(pageIndex, page)` synchronously, installs what it wrote, then does the access.
   * Returns how many pages became missing. When to use: a space that must run before its contents
   * arrive (lazy snapshot restore). The word fast paths are unchanged: their bounds stop at the
   * first missing page, so accesses above it take the checked path until the pages below are
   * filled (fill in address order). Gotchas: the handler must read synchronously and must not
   * call the engine (Busy); what it throws becomes PageFetchFailed with nothing changed. merge(),
   * unmerge() and the scanner skip missing pages (merge after the fill); fork() and pagemapScan()
   * fill the pages they cover first; discard() turns a missing page into a zero page. One
   * registration at a time; it is dropped when no page is missing any more.
   */
  registerMissing(handler: MissingPageHandler, pages?: Uint32Array | readonly number[]): number
  /**
   * UFFDIO_COPY: install `bytes` (whole pages at page-aligned `addr`) into the missing pages of
   * that range; pages not missing are skipped (a fault got there first). Returns how many were
   * installed. All-or-nothing (frames reserved first).
   */
  copyMissing(addr: number, bytes: Uint8Array): number
  /** MADV_POPULATE_READ for missing pages: fill those of the range (default: to the end) through the handler now; returns how many. */
  fetchMissing(addr?: number, length?: number): number
  /** Pages still missing: 0 when none was registered, once all are filled, and after dispose. */
  readonly missingPages: number
  /** Whether the page holding `addr` is missing (registered and not filled yet). */
  isMissing(addr: number): boolean

  /**
   * MADV_MERGE (SKSM): merge the pages of `[addr, addr+length)` now (default: from `addr` to the
   * end). The range is widened to whole pages; an empty range merges nothing. Pinned and
   * never-touched pages are skipped. A later write unshares by copy-on-write.
   */
  merge(addr?: number, length?: number): MergeReport
  /**
   * break_ksm, the unsharing half of MADV_UNMERGEABLE: every merged page, merge-placed zero page
   * and page mapping a table frame in the range gets a private copy. Returns how many.
   */
  unmerge(addr?: number, length?: number): number
  /** madvise(MADV_MERGEABLE / MADV_UNMERGEABLE) on a page-aligned range, for the background scanner. */
  advise(addr: number, length: number, advice: "mergeable" | "unmergeable"): void
  /** PR_SET_MEMORY_MERGE: `true` makes every page mergeable; `false` unmerges everything and clears MADV_MERGEABLE. */
  setMergeAny(on: boolean): void
  /** /proc/<pid>/ksm_stat for this space. */
  ksmStat(): SpaceStats
  /** fork(): a copy-on-write clone; copies no data (pinned pages excepted; missing pages are filled first). */
  fork(): AddressSpace
  /** munmap: release every frame and table reference; later calls throw SpaceDisposed. Idempotent. */
  dispose(): void
}
