/**
 * The engine: owns the frames (one {@link FramePool}), the merge core, every address space and
 * the scanner. It is the composition root: the only module that wires the layers together.
 * Spaces and scanners reach it only through the narrow interfaces they declare (SpaceHost,
 * ScanHost), implemented here by private objects; nothing internal is reachable from its type.
 */
import { MergeCore, MERGE_CORE_KEYS, type MergeCoreOptions, resolveMergeCoreOptions } from "../core/merge.ts"
import { InvalidArgument } from "../errors.ts"
import { type AutoCompactOptions, type AutoCompactSettings, type CompactionTotals, Compactor, type CompactReport, readCompactOptions } from "../memory/compact.ts"
import { FramePool, type FramePoolOptions, resolveFramePoolOptions } from "../memory/frames.ts"
import { resolveSpaceOptions, type SpaceOptions } from "../memory/space.ts"
import { createScanner, type ScannerOptions } from "../policy/registry.ts"
import type { ScanHost, Scanner, ScannerBase, Slot } from "../policy/scanner.ts"
import type { OptionSpecs } from "../policy/options.ts"
import type { AddressSpace } from "../space/address-space.ts"
import { type MergeableSpace, newSpace, type SpaceHost } from "../space/mergeable-space.ts"
import { readOptions, show } from "../validate.ts"

/** Options of `new Engine(...)`; every field is optional. */
export interface EngineOptions extends FramePoolOptions, MergeCoreOptions {
  /**
   * Automatic compaction after calls that free frames (see {@link AutoCompactOptions} for the
   * thresholds and their defaults); `false` turns it off. @default true
   */
  readonly autoCompact?: boolean | AutoCompactOptions
}

// Set by Engine's static block: the one door to its private fields (see _internals).
let internalsOf: (engine: Engine) => EngineInternals

/** The keys of {@link EngineOptions}. */
const ENGINE_KEYS = ["pageSize", "maxMemoryBytes", "slabBytes", "sharedMemory", ...MERGE_CORE_KEYS, "autoCompact"] as const

/** engine.memory(): where the process's memory for this engine goes. */
export interface MemoryReport {
  readonly pageSize: number
  /** Frames mapped by at least one page (the zero frame excluded). */
  readonly framesInUse: number
  /** Frames reserved in slabs but unused. */
  readonly framesFree: number
  /**
   * Bytes of the frame store the engine holds: what the process really holds for frames.
   * Always `bytesInUse + bytesFree + pageSize` (the zero frame) plus the store's headroom:
   * the store grows by half again at a time (and a store above 4 MiB is at least 32 MiB, so
   * glibc maps it apart from its heap), and its slabs are listed as free frames only as they
   * are needed; the headroom past them is never written, so it costs no resident memory.
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
  readonly #pool: FramePool
  readonly #core: MergeCore
  readonly #spaces = new Set<MergeableSpace>()
  #scanner: (ScannerBase<Slot, OptionSpecs> & Scanner) | null = null
  readonly #compactor: Compactor
  /** What spaces see of the engine. */
  readonly #spaceHost: SpaceHost
  /** What the scanner sees of the engine. */
  readonly #scanHost: ScanHost

  constructor(options: EngineOptions = {}) {
    // Every option read exactly once into a frozen snapshot, validated, then used alone.
    const o = readOptions("new Engine()", options, ENGINE_KEYS)
    const pool = new FramePool(resolveFramePoolOptions(o))
    const core = new MergeCore(pool, resolveMergeCoreOptions(o))
    this.#compactor = new Compactor(pool, () => this.#spaces, o["autoCompact"] ?? true)
    this.#pool = pool
    this.#core = core
    this.pageSize = pool.pageSize
    this.#spaceHost = {
      pool,
      core,
      adopt: (space) => {
        this.#spaces.add(space)
        this.#scanner?.spaceAdded(space)
      },
      release: (space) => {
        this.#spaces.delete(space)
        this.#scanner?.spaceReleased(space)
      },
      maybeCompact: () => this.#compactor.maybeCompact(),
      scanItemsOf: (space) => core.scan?.rmapItemsOf(space) ?? 0,
    }
    this.#scanHost = { core, spaces: () => [...this.#spaces], maybeCompact: () => this.#compactor.maybeCompact() }
  }

  /** mmap(MAP_PRIVATE|MAP_ANONYMOUS): a new, unpopulated space of `options.size` bytes. */
  createSpace(options: SpaceOptions): AddressSpace {
    this.#pool.assertIdle()
    return newSpace(this.#spaceHost, resolveSpaceOptions(options, this.pageSize))
  }

  /** Live spaces, in creation order. */
  spaces(): readonly AddressSpace[] {
    return [...this.#spaces]
  }

  /** Where the engine's memory goes. */
  memory(): MemoryReport {
    const pool = this.#pool
    let tables = 0
    for (const s of this.#spaces) tables += s.metadataBytes
    const metadata = tables + pool.metadataBytes + this.#core.metadataBytes
    return {
      pageSize: this.pageSize,
      framesInUse: pool.framesInUse,
      framesFree: pool.framesFree,
      bytesReserved: pool.bytesReserved,
      bytesInUse: pool.framesInUse * this.pageSize,
      bytesFree: pool.framesFree * this.pageSize,
      bytesTotal: pool.bytesReserved + metadata,
      slabs: pool.slabCount,
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
    this.#pool.assertIdle()
    return this.#compactor.compact(readCompactOptions(options))
  }

  /**
   * Run one automatic compaction step if the policy says so (see {@link AutoCompactOptions});
   * returns its report, or null when it declined (O(1) then). The engine runs the same check
   * after merge, unmerge, discard, dispose and unmergeAll, and a background scanner after a
   * pass, but leaves the store's final shrink (one copy of every live frame) to a later turn
   * of the event loop, so a burst of frees and allocations does not pay it each time (with a
   * worker scanner, a turn after its thread has prefaulted the smaller store, waiting at most
   * 250 ms, so the copy does not pay the first-touch page faults on this thread). A host calls
   * this when it is idle (the kernel's kcompactd wake-up check): here the shrink runs now.
   */
  maybeCompact(): CompactReport | null {
    this.#core.tidy()
    return this.#compactor.maybeCompact(true)
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
    const core = this.#core
    const pool = this.#pool
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
      ksmZeroPages: pool.ksmZeroPages,
      generalProfit: (core.pagesSharing + pool.ksmZeroPages) * this.pageSize - core.metadataBytes,
      profitReturned: Math.max(0, (core.pagesSharing + pool.ksmZeroPages - pool.framesFree) * this.pageSize),
      stableNodeChains: chains,
      stableNodeDups: dups,
      pagesUnique: core.pagesUnique,
      cowFaults: pool.cowFaults,
      mergeCalls: core.mergeCalls,
    }
  }

  /** `echo 2 > /sys/kernel/mm/ksm/run`: unmerge every page of every space now; reset full_scans. */
  unmergeAll(): void {
    this.#pool.assertIdle()
    this.#core.unmergeAll([...this.#spaces])
    this.#compactor.maybeCompact()
  }

  /** /sys/kernel/mm/ksm/max_page_sharing. */
  get maxPageSharing(): number {
    return this.#core.maxPageSharing
  }
  /** Set max_page_sharing: InvalidArgument for n < 2, Busy while pages are shared. */
  setMaxPageSharing(n: number): void {
    this.#core.setMaxPageSharing(n)
  }

  /** /sys/kernel/mm/ksm/use_zero_pages. */
  get useZeroPages(): boolean {
    return this.#core.useZeroPages
  }
  /** Set use_zero_pages; affects future merges only. */
  setUseZeroPages(on: boolean): void {
    this.#core.setUseZeroPages(on)
  }

  /**
   * ksmd: the background scanner (policy "ksm", mm/ksm.c) or the SKSM thread's write-tracking
   * scanner (policy "tracked"), driving this engine's merge core. Every option is optional and
   * defaults to the kernel's /sys/kernel/mm/ksm values. One active scanner per engine: a new
   * call detaches the previous one (its tick/start/set then throw ScannerDetached). Throws
   * InvalidArgument, leaving the previous scanner attached, if an option is invalid.
   */
  scanner(options: ScannerOptions = {}): Scanner {
    this.#pool.assertIdle()
    const next = createScanner(this.#scanHost, options)
    this.#scanner?.detach()
    this.#scanner = next
    this.#core.scan = next
    if (next.offloadChannel() === null) this.#pool.disableDigests()
    return next
  }

  static {
    internalsOf = (e) => ({ pool: e.#pool, core: e.#core, spaces: () => [...e.#spaces], scanner: () => e.#scanner })
  }
}

/** What tests and tools inside the repository may see of an engine (not part of the package's API). */
export interface EngineInternals {
  readonly pool: FramePool
  readonly core: MergeCore
  /** Live spaces with their internals (page tables, flags). */
  spaces(): MergeableSpace[]
  /** The active scanner, or null. */
  scanner(): (ScannerBase<Slot, OptionSpecs> & Scanner) | null
}

/** The internals of `engine` (fast-check's `_internals` convention: for tests, benchmarks and tools of this repository). */
export function _internals(engine: Engine): EngineInternals {
  if (!(engine instanceof Engine)) throw new InvalidArgument(`not an Engine: ${show(engine)}`)
  return internalsOf(engine)
}
