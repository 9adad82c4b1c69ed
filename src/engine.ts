/**
 * The engine: owns the frames (one {@link FramePool}), the merge core, and every address
 * space. It is the composition root: the only module that wires the layers together.
 */
import { AddressSpace } from "./address-space.ts"
import { MergeCore, type MergeCoreOptions } from "./core/merge.ts"
import { OutOfMemory } from "./errors.ts"
import { FramePool, type FramePoolOptions } from "./memory/frames.ts"
import type { SpaceOptions } from "./memory/space.ts"

/** Options of `new Engine(...)`; every field is optional. */
export interface EngineOptions extends FramePoolOptions, MergeCoreOptions {}

/** engine.memory(): where the process's memory for this engine goes. */
export interface MemoryReport {
  readonly pageSize: number
  /** Frames mapped by at least one page (the zero frame excluded). */
  readonly framesInUse: number
  /** Frames reserved in slabs but unused. */
  readonly framesFree: number
  /** Bytes of slab memory the engine holds: what the process really holds for frames. */
  readonly bytesReserved: number
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
  /** (pagesSharing + ksmZeroPages) * pageSize - bytes of merge metadata actually held. */
  readonly generalProfit: number
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

  constructor(options: EngineOptions = {}) {
    if (typeof options !== "object" || options === null) throw new TypeError("options must be an object")
    this.pool = new FramePool(options)
    this.core = new MergeCore(this.pool, options)
    this.pageSize = this.pool.pageSize
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
    return {
      pageSize: this.pageSize,
      framesInUse: this.pool.framesInUse,
      framesFree: this.pool.framesFree,
      bytesReserved: this.pool.bytesReserved,
      metadataBytes: tables + this.pool.metadataBytes + this.core.metadataBytes,
      spaces: this.#spaces.size,
    }
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

  /** @internal register a new space. */
  adopt(space: AddressSpace): void {
    this.#spaces.add(space)
  }

  /** @internal forget a disposed space. */
  release(space: AddressSpace): void {
    this.#spaces.delete(space)
  }

  /** @internal wrap a runtime allocation failure as OutOfMemory; rethrow anything else. */
  outOfMemory(cause: unknown): Error {
    if (cause instanceof RangeError) return new OutOfMemory(`allocation failed: ${cause.message}`)
    return cause as Error
  }
}
