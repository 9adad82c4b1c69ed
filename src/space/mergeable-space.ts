/**
 * The engine's address space: the memory model of {@link PagedSpace} plus the calls that reach
 * the merge core (merge, unmerge, advise, ksmStat). Hosts see it as {@link AddressSpace}.
 *
 * It depends on its engine only through {@link SpaceHost}, an interface declared here and
 * implemented by the engine, so this layer never imports the engine.
 */
import type { MergeCore, MergeReport } from "../core/merge.ts"
import { allocating, InvalidArgument } from "../errors.ts"
import { FRAME_SHARED, type FramePool, ZERO_FRAME } from "../memory/frames.ts"
import { PAGE_MERGEABLE, PAGE_MERGED } from "../memory/flags.ts"
import { PagedSpace, type ResolvedSpaceOptions } from "../memory/space.ts"
import { checkAlignedRange, checkBool, checkRangeToEnd, show } from "../validate.ts"
import { type AddressSpace, RMAP_ITEM_BYTES, type SpaceStats } from "./address-space.ts"

/** What a space needs from the engine that owns it. */
export interface SpaceHost {
  readonly pool: FramePool
  readonly core: MergeCore
  /** Register a new space (the scanner learns of it). */
  adopt(space: MergeableSpace): void
  /** Forget a disposed space. */
  release(space: MergeableSpace): void
  /** The automatic compaction check after a call that freed frames. */
  maybeCompact(): unknown
  /** rmap items the scanner holds for `space`'s unmerged pages. */
  scanItemsOf(space: MergeableSpace): number
}

// Set only while newSpace() constructs: the constructor refuses every other caller.
let constructing = false

/**
 * Create a space for `host` (the engine's createSpace and fork). The only way to construct one:
 * a space the engine does not track would keep frames compaction cannot see.
 */
export function newSpace(host: SpaceHost, options: ResolvedSpaceOptions): MergeableSpace {
  const space = construct(host, options)
  host.adopt(space)
  return space
}

function construct(host: SpaceHost, options: ResolvedSpaceOptions): MergeableSpace {
  constructing = true
  try {
    return allocating(`the page table of a ${options.size}-byte space`, () => new MergeableSpace(host, options))
  } finally {
    constructing = false
  }
}

/**
 * An address space of an engine. Use `engine.createSpace()`; the constructor throws
 * InvalidArgument when called any other way.
 */
export class MergeableSpace extends PagedSpace implements AddressSpace {
  readonly #host: SpaceHost

  constructor(host: SpaceHost, options: ResolvedSpaceOptions) {
    if (!constructing) throw new InvalidArgument("address spaces come from engine.createSpace() or space.fork()")
    constructing = false
    super(host.pool, options, host.core.isSecureDomain(options.domain))
    this.#host = host
  }

  /** MADV_MERGE (SKSM): see {@link AddressSpace.merge}. */
  merge(addr: number = 0, length?: number): MergeReport {
    this.live()
    const n = checkRangeToEnd(addr, length, this.size)
    const report = this.#host.core.merge(this, ...this.#pages(addr, n))
    this.#host.maybeCompact()
    return report
  }

  /** break_ksm: see {@link AddressSpace.unmerge}. Throws OutOfMemory (changing nothing) if the copies do not fit. */
  unmerge(addr: number = 0, length?: number): number {
    this.live()
    const n = checkRangeToEnd(addr, length, this.size)
    const [p0, p1] = this.#pages(addr, n)
    const unshared = this.#host.core.unmerge(this, p0, p1)
    this.#host.maybeCompact()
    return unshared
  }

  /** The pages `[addr, addr+length)` touches; none for an empty range, wherever it starts. */
  #pages(addr: number, length: number): [number, number] {
    const ps = this.pageSize
    const p0 = Math.floor(addr / ps)
    return [p0, length === 0 ? p0 : Math.ceil((addr + length) / ps)]
  }

  /** MADV_DONTNEED; the frames freed may trigger automatic compaction. */
  override discard(addr: number, length: number): void {
    super.discard(addr, length)
    this.#host.maybeCompact()
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
    if (advice === "unmergeable") this.#host.core.unmerge(this, p0, p1)
    const fl = this.pflags
    if (advice === "mergeable") for (let pi = p0; pi < p1; pi++) fl[pi]! |= PAGE_MERGEABLE
    else for (let pi = p0; pi < p1; pi++) fl[pi]! &= ~PAGE_MERGEABLE
  }

  /**
   * PR_SET_MEMORY_MERGE: `true` makes the whole space mergeable for the scanner; `false`
   * unmerges every page and clears MADV_MERGEABLE everywhere, as the kernel does.
   */
  setMergeAny(on: boolean): void {
    this.live()
    checkBool("on", on)
    if (on === this.mergeAny) return
    if (!on) {
      this.#host.core.unmerge(this, 0, this.pages)
      const fl = this.pflags
      for (let pi = 0; pi < this.pages; pi++) fl[pi]! &= ~PAGE_MERGEABLE
    }
    this.mergeAny = on
  }

  /** /proc/<pid>/ksm_stat for this space. */
  ksmStat(): SpaceStats {
    this.live()
    const pool = this.pool
    let merged = 0
    let merging = 0
    let mergeable = this.mergeAny
    const fl = this.pflags
    for (let pi = 0; pi < this.pages; pi++) {
      const b = fl[pi]!
      if ((b & PAGE_MERGEABLE) !== 0) mergeable = true
      if ((b & PAGE_MERGED) === 0) continue
      merged++
      const f = this.frameAt(pi)
      if (f !== ZERO_FRAME && (pool.flags[f]! & FRAME_SHARED) !== 0) merging++
    }
    const rmap = merged + this.#host.scanItemsOf(this)
    return {
      ksmRmapItems: rmap,
      ksmZeroPages: this.ksmZeroPages,
      ksmMergingPages: merging,
      ksmProcessProfit: (merging + this.ksmZeroPages) * this.pageSize - rmap * RMAP_ITEM_BYTES,
      ksmMergeAny: this.mergeAny,
      ksmMergeable: mergeable,
      cowFaults: this.cowFaults,
    }
  }

  /**
   * fork(): a copy-on-write clone. O(pages), copies no data (pinned pages excepted: the
   * child gets its own copy of those, as the kernel does). The child maps the parent's
   * merged frames but its ksmMergingPages starts at 0; mergeAny is inherited. Missing pages
   * (registerMissing) are filled first, through the handler.
   */
  fork(): MergeableSpace {
    this.live()
    // Missing pages are filled first: the child gets their contents, not a registration
    // (PageFetchFailed, OutOfMemory: no child, the pages filled so far stay filled).
    if (this.missingPages > 0) this.fetchMissing()
    this.pool.ensureFree(this.pinnedCount(), "fork")
    const host = this.#host
    // Adopted only once its page table is complete: the scanner never sees a half-forked space.
    const child = construct(host, { size: this.size, name: `${this.name}-fork`, domain: this.domain })
    this.forkInto(child)
    host.adopt(child)
    return child
  }

  /** Release every frame and table reference; later calls throw SpaceDisposed. Idempotent. */
  override dispose(): void {
    if (this.disposed) return
    super.dispose()
    this.#host.release(this)
    this.#host.maybeCompact()
  }
}
