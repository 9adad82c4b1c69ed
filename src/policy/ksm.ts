/**
 * Policy "ksm": ksmd's algorithm (mm/ksm.c as in Linux 6.18), page by page over the engine's
 * spaces, on the shared merge core.
 *
 * Per page (rmap item), in typed arrays owned by this policy, 8 bytes a page, allocated for a
 * space only once it has a page to track:
 *   meta[4*pi]   state: ITEM (an rmap item exists) | UNSTABLE (in the unstable index)
 *   meta[4*pi+1] age (smart scan), meta[4*pi+2] remaining_skips, meta[4*pi+3] seqnr of the
 *   unstable insertion; sum[pi] oldchecksum.
 * A merged page's rmap item is the core's (PAGE_MERGED): this policy's item ends when the page
 * merges, but its oldchecksum, age and skips are kept (state KEPT), as 6.18 keeps them while the
 * item is stable, so an unshared page resumes from them. `resetOnUnshare` zeroes them instead,
 * as the newer mm tree does.
 *
 * cmp_and_merge_page, in the kernel's order:
 * 1. a page mapping a table frame: already an rmap entry -> nothing; else (inherited by fork)
 *    join that frame, past maxPageSharing if need be (max_page_sharing_bypass);
 * 2. leave the unstable index; full checksum; changed since the last visit -> remember it, stop
 *    (so a page merges only once its checksum was stable across two visits);
 * 3. useZeroPages and the zero page's checksum and really all zero -> map the zero frame;
 * 4. a stable hit (the table, salted key, full compare) -> merge into it at once;
 * 5. else search the unstable index: an identical page seen earlier this pass -> turn this
 *    page into a table frame and merge the other into it; none -> insert this page.
 * Nothing is write-protected before two identical pages were found (step 5) or a stable
 * frame was (step 4): unique pages never pay a copy-on-write.
 */
import { Outcome } from "../core/merge.ts"
import { OutOfMemory } from "../errors.ts"
import { FRAME_KSM, ZERO_FRAME } from "../memory/frames.ts"
import { PAGE_MERGEABLE, PAGE_MERGED, PAGE_PINNED } from "../memory/flags.ts"
import type { PagedSpace } from "../memory/space.ts"
import type { OptionSpecs } from "./options.ts"
import { Await, type PolicyParams, type ScanHost, ScannerBase, Slot } from "./scanner.ts"

/** meta state bit: an rmap item exists for the page. */
const ITEM = 1
/** meta state bit: the item is in the unstable index (UNSTABLE_FLAG). */
const UNSTABLE = 2
/**
 * meta state bit: no item of this policy's, but the page merged and its item's oldchecksum, age
 * and remaining_skips are kept (Linux 6.18 keeps them while the item is stable), so the page
 * resumes from them if it is unshared. Cleared (with the fields) when the page goes away.
 */
const KEPT = 4

/** skip_age(): how many visits smart scan skips after a scan of a page of this age. */
function skipAge(age: number): number {
  return age <= 3 ? 1 : age <= 5 ? 2 : age <= 8 ? 4 : 8
}

/** A space's rmap items (ksm_mm_slot + its rmap_list). */
export class KsmSlot extends Slot {
  /** 4 bytes per page: state, age, remaining_skips, seqnr; null until the first item. */
  meta: Uint8Array | null = null
  /** oldchecksum per page; null until the first item. */
  sum: Uint32Array | null = null
  /** Pages in KEPT state: merged, their item's fields kept (the arrays stay while any are). */
  kept = 0

  override get bytes(): number {
    return (this.meta?.byteLength ?? 0) + (this.sum?.byteLength ?? 0)
  }
}

/** The "ksm" policy's own options (beside the common tunables). */
export const KSM_OPTIONS = {
  /**
   * Reset a page's rmap item (oldchecksum, smart-scan age and skips) when the page merges, as the
   * newer mm tree does (its item's fields share a union with vm_pgoff while stable). `false` is
   * Linux 6.18: the fields survive, so a merged page rewritten with the bytes it held rejoins its
   * KSM page at the next visit, and smart scan's age goes on. Fixed at creation. @default false
   */
  resetOnUnshare: { kind: "bool", default: false, fixed: true },
} as const satisfies OptionSpecs

/**
 * The ksm policy. Create with `engine.scanner({ policy: "ksm" })`.
 * Counters follow the kernel: pagesScanned counts pages handed to the merge step (skipped
 * pages excluded), pagesUnshared items inserted in the unstable index (dropped lazily when
 * next visited), pagesVolatile the other items.
 */
export class KsmScanner extends ScannerBase<KsmSlot, typeof KSM_OPTIONS> {
  readonly policy = "ksm" as const
  protected readonly keepsScanned = true
  protected readonly sameFrameStops = true

  constructor(host: ScanHost, params: PolicyParams<typeof KSM_OPTIONS>) {
    super(host, params)
    this.init()
  }

  protected newSlot(space: PagedSpace, salt: number): KsmSlot {
    return new KsmSlot(space, salt)
  }

  protected clearSlot(s: KsmSlot): void {
    s.meta = null
    s.sum = null
    s.items = 0
    s.unstable = 0
    s.kept = 0
  }

  protected pagesMergedElsewhere(s: KsmSlot, p0: number, p1: number): void {
    const meta = s.meta
    if (meta === null) return
    const fl = s.space.pflags
    for (let pi = p0; pi < p1; pi++) if ((fl[pi]! & PAGE_MERGED) !== 0 && (meta[pi * 4]! & ITEM) !== 0) this.#toCore(s, pi)
  }

  /**
   * Walk the slot under the cursor from `pos`, handing pages to cmp_and_merge_page until the
   * budget runs out (cursor stays after the last page handed out) or the slot ends (cursor
   * moves to the next slot). Returns the budget left.
   */
  protected walkSlot(slot: KsmSlot, budget: number): number {
    const space = slot.space
    const pool = this.pool
    const fflags = pool.flags
    const fl = space.pflags
    const pages = space.pages
    const any = space.mergeAny
    const smart = this.t.smartScan
    // offload: pages this thread would hash wait for the hashing thread's digest instead.
    const offload = this.offload !== null && !space.secure
    let meta = slot.meta
    let pi = this.pos
    for (; pi < pages; pi++) {
      const b = fl[pi]!
      const f = space.frameAt(pi)
      // Only present pages of mergeable ranges are visited (zero-frame PTEs, merge-placed
      // zero pages included, are not); an item on any other page is freed on the way.
      if (f === ZERO_FRAME || (!any && (b & PAGE_MERGEABLE) === 0)) {
        if (meta !== null && meta[pi * 4] !== 0) this.#dropItem(slot, pi)
        continue
      }
      const m = pi * 4
      if ((b & PAGE_MERGED) !== 0) {
        // A KSM page already on its stable node: never skipped, nothing to do.
        if (meta !== null && (meta[m]! & ITEM) !== 0) this.#toCore(slot, pi)
        this.pos = pi + 1
        this.rScanned++
        if (--budget === 0) return 0
        continue
      }
      // A page smart scan will skip needs no digest; any other, not ready yet, ends the batch
      // here, before its item changes, so the next batch takes it up exactly as this one would.
      if (offload && (fflags[f]! & FRAME_KSM) === 0 && (b & PAGE_PINNED) === 0 && !(smart && meta !== null && meta[m + 1]! >= 3 && meta[m + 2]! !== 0)) {
        const w = this.awaitDigest(space, pi, f)
        if (w !== Await.Go) {
          this.pos = pi
          if (w === Await.Missed) {
            // What the prefetch covered went stale (writes, compaction moved frames): queue the
            // window ahead of this page again, so the thread gets it in one go.
            this.#pfSlot = null
            this.prefetch(Math.max(2 * this.t.pagesToScan, 256))
          }
          return 0
        }
      }
      if (meta === null) {
        meta = this.#ensure(slot)
        // alloc_rmap_item failed: the batch ends here; this page is visited again next time.
        if (meta === null) return 0
      }
      let st = meta[m]!
      if ((st & ITEM) === 0) {
        // get_next_rmap_item: a new item (zeroed, or resuming the fields a merge kept: KEPT).
        if ((st & KEPT) !== 0) slot.kept--
        meta[m] = st = ITEM
        slot.items++
        this.items++
      }
      if (smart && (fflags[f]! & FRAME_KSM) === 0) {
        // should_skip_rmap_item.
        const age = meta[m + 1]!
        if (age !== 255) meta[m + 1] = age + 1
        if (age >= 3) {
          const rs = meta[m + 2]!
          if (rs === 0) {
            meta[m + 2] = skipAge(age)
          } else {
            meta[m + 2] = rs - 1
            this.rSkipped++
            if ((st & UNSTABLE) !== 0) this.#leaveIndex(slot, pi)
            continue
          }
        }
      }
      this.pos = pi + 1
      this.#cmpAndMerge(slot, pi, f, b, meta)
      this.rScanned++
      if (--budget === 0) return 0
    }
    // End of this space: items past the last visited page were freed in the loop above.
    if (slot.items === 0 && slot.kept === 0 && slot.meta !== null) this.clearSlot(slot)
    this.nextSlot()
    return budget
  }

  // offload: where the last prefetch stopped (slot, page, pass), so a batch walks only new pages.
  #pfSlot: KsmSlot | null = null
  #pfPos = 0
  #pfPass = 0

  /**
   * offload: queue the pages the walk will hash next, up to `window` pages ahead of the cursor
   * (wrapping into the next pass), continuing where the last prefetch stopped; bounded by the
   * ring's room.
   */
  protected override prefetch(window: number): void {
    const slots = this.slots
    if (slots.length === 0) return
    // Ordinals in page units from the start of the current pass: where the scan is, where the prefetch is.
    let total = 0
    let scanOrd = 0
    let pfOrd = -1
    let pfSi = -1
    const scanSi = this.atHead ? 0 : this.cur
    for (let i = 0; i < slots.length; i++) {
      if (i === scanSi) scanOrd = total + (this.atHead ? 0 : this.pos)
      if (slots[i] === this.#pfSlot) {
        pfSi = i
        pfOrd = total + this.#pfPos
      }
      total += slots[i]!.space.pages
    }
    let si: number
    let pi: number
    let pass: number
    if (pfSi >= 0 && this.#pfPass === this.seqnr + 1) pfOrd += total
    if (pfSi < 0 || this.#pfPass < this.seqnr || this.#pfPass > this.seqnr + 1 || pfOrd < scanOrd) {
      si = scanSi
      pi = this.atHead ? 0 : this.pos
      pass = this.seqnr
      pfOrd = scanOrd
    } else {
      si = pfSi
      pi = this.#pfPos
      pass = this.#pfPass
    }
    let left = window - (pfOrd - scanOrd)
    let room = true
    while (left > 0 && room) {
      if (si >= slots.length) {
        if (pass > this.seqnr) break
        si = 0
        pi = 0
        pass++
        continue
      }
      const space = slots[si]!.space
      if (space.disposed || space.secure || pi >= space.pages) {
        left -= Math.max(0, space.pages - pi)
        si++
        pi = 0
        continue
      }
      const fl = space.pflags
      const any = space.mergeAny
      const end = Math.min(space.pages, pi + left)
      const from = pi
      for (; pi < end; pi++) {
        // Only the mergeable pages the walk visits; prequeue knows which of them are hashed.
        if ((any || (fl[pi]! & PAGE_MERGEABLE) !== 0) && !(room = this.prequeue(space, pi))) break
      }
      left -= pi - from
    }
    this.#pfSlot = si < slots.length ? slots[si]! : null
    this.#pfPos = pi
    this.#pfPass = pass
    // Past the last slot: the next prefetch starts the next pass from its first slot.
    if (si >= slots.length && pass === this.seqnr) {
      this.#pfSlot = slots[0]!
      this.#pfPos = 0
      this.#pfPass = pass + 1
    }
  }

  #cmpAndMerge(slot: KsmSlot, pi: number, f: number, b: number, meta: Uint8Array): void {
    const core = this.core
    const space = slot.space
    if ((this.pool.flags[f]! & FRAME_KSM) !== 0) {
      // A KSM page inherited by fork: joined before any checksum (max_page_sharing_bypass).
      this.stableStep(slot, pi, f, false)
      this.#toCore(slot, pi)
      return
    }
    if ((meta[pi * 4]! & UNSTABLE) !== 0) this.#leaveIndex(slot, pi)
    const sums = slot.sum!
    const sum = core.checksumOf(f)
    if (sum !== sums[pi]) {
      // Changed since the last visit (or first visit): too volatile to index this time.
      sums[pi] = sum
      this.rVolatile++
      return
    }
    if (space.secure) {
      const o = this.secureCandidate(slot, pi)
      if (o === Outcome.Merged || o === Outcome.Inserted || o === Outcome.Crowded) this.#toCore(slot, pi)
      return
    }
    // write_protect_page refuses a page with extra references (a pin): it can be indexed, never merged.
    const pinned = (b & PAGE_PINNED) !== 0
    const o = this.stableStep(slot, pi, f, pinned, sum)
    // A zero-mapped page's item stays until the next pass frees it (the kernel's zero-page PTE
    // is not visited), counted as volatile meanwhile, as in the kernel.
    if (o === Outcome.Merged) this.#toCore(slot, pi)
    if (o !== -1) return
    // unstable_tree_search_insert over the full checksum (salted), then the pair's table key.
    this.pairSearch(slot, pi, f, pinned, (sum ^ slot.salt) >>> 0, core.lastKey)
  }

  protected inIndex(ts: KsmSlot, tpi: number, seq: number): boolean {
    const tmeta = ts.meta
    return tmeta !== null && (tmeta[tpi * 4]! & UNSTABLE) !== 0 && tmeta[tpi * 4 + 3] === seq
  }

  protected partnerUsable(ts: KsmSlot, tpi: number, tb: number): boolean {
    return ts.space.mergeAny || (tb & PAGE_MERGEABLE) !== 0
  }

  protected indexed(slot: KsmSlot, pi: number, seq: number): void {
    const meta = slot.meta!
    meta[pi * 4] = meta[pi * 4]! | UNSTABLE
    meta[pi * 4 + 3] = seq
  }

  protected paired(keep: KsmSlot, kpi: number, join: KsmSlot, jpi: number): void {
    this.#toCore(join, jpi)
    this.#toCore(keep, kpi)
  }

  /** remove_rmap_item_from_tree for an UNSTABLE item (pages_unshared--). */
  #leaveIndex(slot: KsmSlot, pi: number): void {
    const meta = slot.meta!
    meta[pi * 4] = meta[pi * 4]! & ~UNSTABLE
    slot.unstable--
    this.unshared--
  }

  /**
   * Page `pi` merged: its rmap item now lives in the core (PAGE_MERGED). The policy's item ends;
   * its oldchecksum, age and skips are kept for the page's return (6.18), unless resetOnUnshare.
   */
  #toCore(slot: KsmSlot, pi: number): void {
    if (this.o.resetOnUnshare) return this.#dropItem(slot, pi)
    const meta = slot.meta!
    this.#endItem(slot, meta[pi * 4]!)
    slot.kept++
    meta[pi * 4] = KEPT
  }

  /** The counts of an item in state `st` leave with it (a KEPT page's count too). */
  #endItem(slot: KsmSlot, st: number): void {
    if ((st & KEPT) !== 0) slot.kept--
    if ((st & UNSTABLE) !== 0) {
      slot.unstable--
      this.unshared--
    }
    if ((st & ITEM) !== 0) {
      slot.items--
      this.items--
    }
  }

  /** Free page `pi`'s item (zeroed, so a new one starts from scratch). */
  #dropItem(slot: KsmSlot, pi: number): void {
    const meta = slot.meta!
    const m = pi * 4
    this.#endItem(slot, meta[m]!)
    meta[m] = 0
    meta[m + 1] = 0
    meta[m + 2] = 0
    meta[m + 3] = 0
    slot.sum![pi] = 0
  }

  /** Allocate a space's item arrays; null if the runtime refuses the memory. */
  #ensure(slot: KsmSlot): Uint8Array | null {
    const n = slot.space.pages
    try {
      if (this.pool.failpoint !== null) this.pool.failpoint("scan")
      slot.sum = new Uint32Array(n)
      slot.meta = new Uint8Array(n * 4)
    } catch (err) {
      if (!(err instanceof RangeError || err instanceof OutOfMemory)) throw err
      slot.sum = null
      slot.meta = null
      return null
    }
    return slot.meta
  }
}

/** The "ksm" policy's registry entry. */
export const ksmPolicy = {
  name: "ksm",
  summary: "ksmd's algorithm (mm/ksm.c): a page merges once its checksum was stable across two visits",
  options: KSM_OPTIONS,
  create: (host: ScanHost, params: PolicyParams<typeof KSM_OPTIONS>) => new KsmScanner(host, params),
} as const
