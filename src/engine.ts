/**
 * The engine: owns the frames (one {@link FramePool}), the merge core, and every address
 * space. It is the composition root: the only module that wires the layers together.
 */
import { AddressSpace } from "./address-space.ts"
import { MergeCore, type MergeCoreOptions } from "./core/merge.ts"
import { InvalidArgument, OutOfMemory } from "./errors.ts"
import { type AutoCompactOptions, type AutoCompactSettings, type CompactionTotals, Compactor, type CompactReport } from "./memory/compact.ts"
import { FramePool, type FramePoolOptions } from "./memory/frames.ts"
import type { SpaceOptions } from "./memory/space.ts"
import { createScanner } from "./policy/create.ts"
import type { ScannerOptions } from "./policy/options.ts"
import type { Scanner } from "./policy/scanner.ts"

/** Options of `new Engine(...)`; every field is optional. */
export interface EngineOptions extends FramePoolOptions, MergeCoreOptions {
  /**
   * Automatic compaction after calls that free frames (see {@link AutoCompactOptions} for the
   * thresholds and their defaults); `false` turns it off. @default true
   */
  readonly autoCompact?: boolean | AutoCompactOptions
}

/** engine.memory(): where the process's memory for this engine goes. */
export interface MemoryReport {
  readonly pageSize: number
  /** Frames mapped by at least one page (the zero frame excluded). */
  readonly framesInUse: number
  /** Frames reserved in slabs but unused. */
  readonly framesFree: number
  /**
   * Bytes of slab memory the engine holds: what the process really holds for frames.
   * Always `bytesInUse + bytesFree + pageSize` (the zero frame).
   */
  readonly bytesReserved: number
  /** Bytes of frames mapped by pages (framesInUse * pageSize). */
  readonly bytesInUse: number
  /** Bytes of reserved but unused frames (framesFree * pageSize): what compaction can give back, slab by slab. */
  readonly bytesFree: number
  /** bytesReserved + metadataBytes: every byte of ArrayBuffer memory the engine holds. */
  readonly bytesTotal: number
  /** Slabs held. */
  readonly slabs: number
  /** Compaction since the engine was made (explicit and automatic). */
  readonly compaction: CompactionTotals
  /** Bytes of page tables, per-frame metadata, the merge table and scanner state. */
  readonly metadataBytes: number
  /** Live address spaces. */
  readonly spaces: number
}

/** engine.stats(): /sys/kernel/mm/ksm, same names in camelCase, plus sksm's own. */
export interface EngineStats {
  /** Shared frames in use (stable nodes with at least one merged page). */
  readonly pagesShared: number
  /** Further pages mapping them: how much merging saves. */
  readonly pagesSharing: number
  /** Scanner pages waiting in the unstable index. */
  readonly pagesUnshared: number
  /** Scanner pages that changed too fast to merge. */
  readonly pagesVolatile: number
  /** Pages the scanner compared (kernel pages_scanned). */
  readonly pagesScanned: number
  /** Pages smart scan skipped. */
  readonly pagesSkipped: number
  /** Completed scanner passes. */
  readonly fullScans: number
  /** Merge-placed zero pages still mapped. */
  readonly ksmZeroPages: number
  /** (pagesSharing + ksmZeroPages) * pageSize - bytes of merge metadata actually held. A claim about frames. */
  readonly generalProfit: number
  /**
   * sksm: bytes of merged-away frames the process no longer holds:
   * max(0, (pagesSharing + ksmZeroPages) * pageSize - memory().bytesFree). Merging frees frames
   * into slabs; only compaction turns them into memory the process gives back. Free frames are
   * all charged to merging, so this never overstates what was returned.
   */
  readonly profitReturned: number
  /** Contents that needed more than one shared frame (max_page_sharing). */
  readonly stableNodeChains: number
  /** Shared frames under those chains. */
  readonly stableNodeDups: number
  /** sksm: write-protected table pages that found no partner (what the SKSM thread warns costs a COW). */
  readonly pagesUnique: number
  /** sksm: copy-on-write faults that copied a frame. */
  readonly cowFaults: number
  /** sksm: merge() calls. */
  readonly mergeCalls: number
}

/**
 * The engine: create one per process (or per isolation boundary), then spaces in it.
 *
 * ```ts
 * const engine = new Engine({ pageSize: 4096 })
 * const a = engine.createSpace({ size: 1 << 20 })
 * a.write(0, bytes); a.merge()
 * ```
 * Gotchas: spaces of one engine share frames; spaces of two engines never do.
 */
export class Engine {
  readonly pageSize: number
  /** @internal */
  readonly pool: FramePool
  /** @internal */
  readonly core: MergeCore
  readonly #spaces = new Set<AddressSpace>()
  #scanner: Scanner | null = null
  readonly #compactor: Compactor

  constructor(options: EngineOptions = {}) {
    if (typeof options !== "object" || options === null) throw new InvalidArgument("options must be an object")
    this.pool = new FramePool(options)
    this.core = new MergeCore(this.pool, options)
    this.pageSize = this.pool.pageSize
    this.#compactor = new Compactor(this.pool, () => this.#spaces, options.autoCompact)
  }

  /** mmap(MAP_PRIVATE|MAP_ANONYMOUS): a new, unpopulated space of `size` bytes. */
  createSpace(options: SpaceOptions): AddressSpace {
    let space: AddressSpace
    try {
      space = new AddressSpace(this, options)
    } catch (cause) {
      throw this.outOfMemory(cause)
    }
    this.adopt(space)
    return space
  }

  /** Live spaces, in creation order. */
  spaces(): readonly AddressSpace[] {
    return [...this.#spaces]
  }

  /** Where the engine's memory goes. */
  memory(): MemoryReport {
    let tables = 0
    for (const s of this.#spaces) tables += s.metadataBytes
    const metadata = tables + this.pool.metadataBytes + this.core.metadataBytes
    return {
      pageSize: this.pageSize,
      framesInUse: this.pool.framesInUse,
      framesFree: this.pool.framesFree,
      bytesReserved: this.pool.bytesReserved,
      bytesInUse: this.pool.framesInUse * this.pageSize,
      bytesFree: this.pool.framesFree * this.pageSize,
      bytesTotal: this.pool.bytesReserved + metadata,
      slabs: this.pool.slabs.reduce((n, s) => (s === null ? n : n + 1), 0),
      metadataBytes: metadata,
      spaces: this.#spaces.size,
      compaction: this.#compactor.totals,
    }
  }

  /**
   * Compact frames now: move live frames out of sparse slabs into free frames of dense ones,
   * rewrite the page-table entries that map them, and release the slabs left empty, so the
   * process stops holding memory that merging or discarding freed (mirrors
   * `echo 1 > /proc/sys/vm/compact_memory`, with page migration). Moves at most `budgetPages` frames
   * (default: as many as it takes); call again while `!report.done` to spread the pause.
   * Each call with moves sweeps every page table once (O(pages of all spaces)), so prefer
   * budgets of thousands of pages over tiny ones. Pinned frames and the zero frame never move.
   * Throws OutOfMemory having changed nothing if its plan does not fit.
   */
  compact(options: { readonly budgetPages?: number } = {}): CompactReport {
    this.pool.assertIdle()
    if (typeof options !== "object" || options === null) throw new InvalidArgument("options must be an object { budgetPages? }")
    return this.#compactor.compact(options.budgetPages ?? Number.POSITIVE_INFINITY)
  }

  /**
   * Run one automatic compaction step if the policy says so (see {@link AutoCompactOptions});
   * returns its report, or null when it declined (O(1) then). The engine calls it after
   * merge, unmerge, discard, dispose and unmergeAll; a background scanner calls it after a
   * pass; a host may call it whenever it is idle (the kernel's kcompactd wake-up check).
   */
  maybeCompact(): CompactReport | null {
    return this.#compactor.maybeCompact()
  }

  /** The automatic compaction policy in force. */
  get autoCompact(): AutoCompactSettings {
    return this.#compactor.settings
  }
  /** Change the automatic compaction policy (`false` turns it off); InvalidArgument changes nothing. */
  setAutoCompact(options: boolean | AutoCompactOptions): void {
    this.#compactor.configure(options)
  }

  /** /sys/kernel/mm/ksm/* as one object. */
  stats(): EngineStats {
    const core = this.core
    const scan = core.scanCounters()
    const { chains, dups } = core.chains()
    return {
      pagesShared: core.pagesShared,
      pagesSharing: core.pagesSharing,
      pagesUnshared: scan.pagesUnshared,
      pagesVolatile: scan.pagesVolatile,
      pagesScanned: scan.pagesScanned,
      pagesSkipped: scan.pagesSkipped,
      fullScans: scan.fullScans,
      ksmZeroPages: this.pool.ksmZeroPages,
      generalProfit: (core.pagesSharing + this.pool.ksmZeroPages) * this.pageSize - core.metadataBytes,
      profitReturned: Math.max(0, (core.pagesSharing + this.pool.ksmZeroPages - this.pool.framesFree) * this.pageSize),
      stableNodeChains: chains,
      stableNodeDups: dups,
      pagesUnique: core.pagesUnique,
      cowFaults: this.pool.cowFaults,
      mergeCalls: core.mergeCalls,
    }
  }

  /** `echo 2 > /sys/kernel/mm/ksm/run`: unmerge every page of every space now; reset full_scans. */
  unmergeAll(): void {
    this.core.unmergeAll(this.spaces())
    this.maybeCompact()
  }

  /** /sys/kernel/mm/ksm/max_page_sharing. */
  get maxPageSharing(): number {
    return this.core.maxPageSharing
  }
  /** Set max_page_sharing: InvalidArgument for n < 2, Busy while pages are shared. */
  setMaxPageSharing(n: number): void {
    this.core.setMaxPageSharing(n)
  }

  /** /sys/kernel/mm/ksm/use_zero_pages. */
  get useZeroPages(): boolean {
    return this.core.useZeroPages
  }
  /** Set use_zero_pages; affects future merges only. */
  setUseZeroPages(on: boolean): void {
    this.core.setUseZeroPages(on)
  }

  /** @internal rmap items the scanner holds for `space`'s unmerged pages. */
  scanItemsOf(space: AddressSpace): number {
    const scan = this.core.scan as { rmapItemsOf?: (s: AddressSpace) => number } | null
    return scan?.rmapItemsOf?.(space) ?? 0
  }

  /**
   * ksmd: the background scanner (policy "ksm", mm/ksm.c) or the SKSM thread's write-tracking
   * scanner (policy "tracked"), driving this engine's merge core. Every option is optional and
   * defaults to the kernel's /sys/kernel/mm/ksm values. One active scanner per engine: a new
   * call detaches the previous one (its tick/start/set then throw ScannerDetached). Throws
   * InvalidArgument, leaving the previous scanner attached, if an option is invalid.
   */
  scanner(options: ScannerOptions = {}): Scanner {
    const next = createScanner(this, options)
    this.#scanner?.detach()
    this.#scanner = next
    this.core.scan = next
    return next
  }

  /** @internal register a new space. */
  adopt(space: AddressSpace): void {
    this.#spaces.add(space)
    this.#scanner?.spaceAdded(space)
  }

  /** @internal forget a disposed space. */
  release(space: AddressSpace): void {
    this.#spaces.delete(space)
    this.#scanner?.spaceReleased(space)
  }

  /** @internal wrap a runtime allocation failure as OutOfMemory; rethrow anything else. */
  outOfMemory(cause: unknown): Error {
    if (cause instanceof RangeError) return new OutOfMemory(`allocation failed: ${cause.message}`)
    return cause as Error
  }
}
