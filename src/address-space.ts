/**
 * The public address space: the memory model of {@link PagedSpace} plus the calls that
 * reach the merge core (merge, unmerge, advise, ksmStat). Each method names the kernel
 * call it mirrors.
 */
import type { MergeReport } from "./core/merge.ts"
import type { Engine } from "./engine.ts"
import { InvalidArgument } from "./errors.ts"
import { FRAME_SHARED, ZERO_FRAME } from "./memory/frames.ts"
import { PAGE_MERGEABLE, PAGE_MERGED } from "./memory/flags.ts"
import { PagedSpace, type SpaceOptions } from "./memory/space.ts"
import { checkAlignedRange, checkBool, checkRange, show } from "./memory/validate.ts"

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
 * A paged address space with copy-on-write and merging. Create one with
 * `engine.createSpace({ size })`.
 *
 * When to use: one per guest, instance or snapshot whose memory sksm should hold.
 * Gotchas: every method throws SpaceDisposed after dispose(); a failed call changes nothing.
 */
export class AddressSpace extends PagedSpace {
  readonly #engine: Engine
  #mergeAny = false

  /** @internal use engine.createSpace(). */
  constructor(engine: Engine, options: SpaceOptions) {
    // Secure mode is a property of the domain (validated by PagedSpace; anything odd is "default").
    const domain = typeof options === "object" && options !== null && options.domain !== undefined ? options.domain : "default"
    super(engine.pool, options, engine.core.isSecureDomain(domain))
    this.#engine = engine
  }

  /** The engine that owns this space. */
  get engine(): Engine {
    return this.#engine
  }

  /**
   * MADV_MERGE (SKSM): merge the pages of `[addr, addr+length)` now. Populated all-zero
   * pages map the zero frame (with useZeroPages); other pages merge with an identical
   * table frame or enter the table write-protected. A later write unshares by copy-on-write.
   * The range is widened to whole pages. Pinned and never-touched pages are skipped.
   */
  merge(addr: number = 0, length: number = this.size - addr): MergeReport {
    this.live()
    checkRange(addr, length, this.size)
    const ps = this.pageSize
    const report = this.#engine.core.merge(this, Math.floor(addr / ps), Math.ceil((addr + length) / ps))
    this.#engine.maybeCompact()
    return report
  }

  /**
   * MADV_UNMERGEABLE's unsharing half (break_ksm): every merged page, merge-placed zero
   * page and page mapping a table frame in the range gets a private copy. Returns how many.
   * Throws OutOfMemory (changing nothing) if the copies do not fit.
   */
  unmerge(addr: number = 0, length: number = this.size - addr): number {
    this.live()
    checkRange(addr, length, this.size)
    const ps = this.pageSize
    const n = this.#engine.core.unmerge(this, Math.floor(addr / ps), Math.ceil((addr + length) / ps))
    this.#engine.maybeCompact()
    return n
  }

  /**
   * MADV_DONTNEED: drop the pages in a page-aligned range; they read as zeros again.
   * Throws PinnedPage (and drops nothing) if any page in the range is pinned. The frames
   * freed may trigger automatic compaction.
   */
  override discard(addr: number, length: number): void {
    super.discard(addr, length)
    this.#engine.maybeCompact()
  }

  /**
   * madvise(MADV_MERGEABLE / MADV_UNMERGEABLE) on a page-aligned range: mark it for the
   * background scanner, or unmark it and unmerge it.
   */
  advise(addr: number, length: number, advice: "mergeable" | "unmergeable"): void {
    this.live()
    checkAlignedRange(addr, length, this.size, this.pageSize)
    if (advice !== "mergeable" && advice !== "unmergeable") throw new InvalidArgument(`advice must be "mergeable" or "unmergeable", got ${show(advice)}`)
    const p0 = addr / this.pageSize
    const p1 = p0 + length / this.pageSize
    if (advice === "unmergeable") this.#engine.core.unmerge(this, p0, p1)
    const fl = this.pflags
    if (advice === "mergeable") for (let pi = p0; pi < p1; pi++) fl[pi]! |= PAGE_MERGEABLE
    else for (let pi = p0; pi < p1; pi++) fl[pi]! &= ~PAGE_MERGEABLE
  }

  /** PR_GET_MEMORY_MERGE: whether every page of this space is mergeable. Inherited by fork(). */
  get mergeAny(): boolean {
    return this.#mergeAny
  }

  /**
   * PR_SET_MEMORY_MERGE: `true` makes the whole space mergeable for the scanner; `false`
   * unmerges every page and clears MADV_MERGEABLE everywhere, as the kernel does.
   */
  setMergeAny(on: boolean): void {
    this.live()
    checkBool("on", on)
    if (on === this.#mergeAny) return
    if (!on) {
      this.#engine.core.unmerge(this, 0, this.pages)
      const fl = this.pflags
      for (let pi = 0; pi < this.pages; pi++) fl[pi]! &= ~PAGE_MERGEABLE
    }
    this.#mergeAny = on
  }

  /** Whether page `pi` is a candidate for the background scanner. @internal */
  isMergeable(pi: number): boolean {
    return this.#mergeAny || (this.pflags[pi]! & PAGE_MERGEABLE) !== 0
  }

  /** /proc/<pid>/ksm_stat for this space. */
  ksmStat(): SpaceStats {
    this.live()
    const pool = this.pool
    let merged = 0
    let merging = 0
    let mergeable = this.#mergeAny
    const pte = this.pte
    const fl = this.pflags
    for (let pi = 0; pi < this.pages; pi++) {
      const b = fl[pi]!
      if ((b & PAGE_MERGEABLE) !== 0) mergeable = true
      if ((b & PAGE_MERGED) === 0) continue
      merged++
      const f = pte[pi]!
      if (f !== ZERO_FRAME && (pool.flags[f]! & FRAME_SHARED) !== 0) merging++
    }
    const scanItems = this.#engine.scanItemsOf(this)
    const rmap = merged + scanItems
    return {
      ksmRmapItems: rmap,
      ksmZeroPages: this.ksmZeroPages,
      ksmMergingPages: merging,
      ksmProcessProfit: (merging + this.ksmZeroPages) * this.pageSize - rmap * RMAP_ITEM_BYTES,
      ksmMergeAny: this.#mergeAny,
      ksmMergeable: mergeable,
      cowFaults: this.cowFaults,
    }
  }

  /**
   * fork(): a copy-on-write clone. O(pages), copies no data (pinned pages excepted: the
   * child gets its own copy of those, as the kernel does). The child maps the parent's
   * merged frames but its ksmMergingPages starts at 0; mergeAny is inherited.
   */
  fork(): AddressSpace {
    this.live()
    this.pool.ensureFree(this.pinnedCount(), "fork")
    let child: AddressSpace
    try {
      child = new AddressSpace(this.#engine, { size: this.size, name: `${this.name}-fork`, domain: this.domain })
    } catch (cause) {
      throw this.#engine.outOfMemory(cause)
    }
    this.forkInto(child)
    child.#mergeAny = this.#mergeAny
    this.#engine.adopt(child)
    return child
  }

  /** Release every frame and table reference; later calls throw SpaceDisposed. Idempotent. */
  override dispose(): void {
    if (this.disposed) return
    super.dispose()
    this.#engine.release(this)
    this.#engine.maybeCompact()
  }
}
