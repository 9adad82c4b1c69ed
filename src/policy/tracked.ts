/**
 * Policy "tracked": the userspace scanner sketched in the SKSM thread (seed 003; Desnoyers,
 * 2025-03-03), with the two answers to Hildenbrand's objections built in.
 *
 * Per pass, range by range (rangePages pages each) over the mergeable pages of every space:
 * 1. pages seen for the first time are registered and write-protected (UFFDIO_WRITEPROTECT in
 *    async mode, `space.protectPages`): from now on a write just clears their protection;
 * 2. `pagemapScan({ categoryMask: WRITTEN, returnMask: WRITTEN, wpMatching: true })` reads back
 *    the pages written since the last pass and re-protects them in the same walk;
 * 3. a page unwritten for `stablePasses` passes in a row is invariant: a candidate. Write
 *    tracking replaces ksmd's checksum-twice test, so no page is hashed in full until then;
 * 4. a candidate merges only when a second identical page exists: a stable hit in the shared
 *    table, the zero page (useZeroPages), or another candidate of this pass (the candidate
 *    index, rebuilt every pass like ksmd's unstable tree). A candidate with no partner is only
 *    remembered, never inserted into the table: unique pages never pay a copy-on-write
 *    ("write-protect only when we are fairly sure that we can deduplicate");
 * 5. a range whose merged pages keep getting unshared by writes backs off: when at least
 *    `thrashUnshares` pages this policy merged in it were written in one pass, it is left
 *    alone (not read back, not merged) for 1, 2, 4, ... up to `maxBackoffPasses` passes; each
 *    clean stretch as long as the current back-off takes one step off again.
 *
 * The uffd-wp protection of step 1 is tracking, not merging: a write to a protected private
 * page just clears the bit (no copy). The policy owns uffd-wp on the mergeable pages it
 * tracks; a host that also uses writeProtect() there will see its protection re-armed.
 * smartScan does not apply (back-off plays its part). Per page 3 bytes, per range 9 bytes.
 */
import { Outcome } from "../core/merge.ts"
import { OutOfMemory } from "../errors.ts"
import { ZERO_FRAME } from "../memory/frames.ts"
import { PAGE_KSM_ZERO, PAGE_MERGEABLE, PAGE_MERGED, PAGE_PINNED, PAGE_UFFD_WP } from "../memory/flags.ts"
import { PageCategory, pagemapWalk } from "../memory/pagemap.ts"
import type { PagedSpace } from "../memory/space.ts"
import type { OptionSpecs } from "./options.ts"
import { type PolicyParams, type ScanHost, ScannerBase, Slot } from "./scanner.ts"

/** st bit: the page is tracked (registered and protected by this policy): an rmap item. */
const ITEM = 1
/** st bit: the item is held by the core (the page is merged or a merge-placed zero page). */
const HELD = 2
/** st bit: merged by this policy; its unsharing counts towards its range's back-off. */
const OURS = 4
/** st bit: in this pass's candidate index. */
const CAND = 8
/** st bit (transient within a range): first seen this pass. */
const FRESH = 16
/** st bit (transient within a range): reported WRITTEN this pass. */
const WRITTEN_NOW = 32

const WRITTEN = PageCategory.WRITTEN

/** A space's tracking state. */
export class TrackedSlot extends Slot {
  /** Per page: ITEM | HELD | OURS | CAND bits; null until the space has a mergeable page. */
  st: Uint8Array | null = null
  /** Per page: passes in a row the page stayed unwritten (saturates at 255). */
  quiet: Uint8Array | null = null
  /** Per page: pass (low byte) of its candidate-index entry. */
  seq: Uint8Array | null = null
  /** Per range: back-offs in a row. */
  strikes: Uint8Array | null = null
  /** Per range: first pass (seqnr) it is scanned again. */
  until: Int32Array | null = null
  /** Per range: clean passes since the last back-off. */
  clean: Uint16Array | null = null
  /** Per range: pages this policy merged that were unshared by writes, this pass. */
  unsh: Uint16Array | null = null

  override get bytes(): number {
    return (
      (this.st?.byteLength ?? 0) +
      (this.quiet?.byteLength ?? 0) +
      (this.seq?.byteLength ?? 0) +
      (this.strikes?.byteLength ?? 0) +
      (this.until?.byteLength ?? 0) +
      (this.clean?.byteLength ?? 0) +
      (this.unsh?.byteLength ?? 0)
    )
  }
}

/** The "tracked" policy's own options (beside the common tunables). */
export const TRACKED_OPTIONS = {
  /** Passes a page must stay unwritten before it counts as invariant. @default 2 */
  stablePasses: { kind: "int", min: 1, max: 255, default: 2 },
  /** Merged pages of one range unshared by writes in one pass that make it back off. @default 2 */
  thrashUnshares: { kind: "int", min: 1, max: 0xffff, default: 2 },
  /** Longest back-off of a thrashing range, in passes. @default 64 */
  maxBackoffPasses: { kind: "int", min: 1, max: 1 << 20, default: 64 },
  /** Pages per back-off range; fixed when the scanner is created. @default 64 */
  rangePages: { kind: "int", min: 1, max: 1 << 20, default: 64, fixed: true },
} as const satisfies OptionSpecs

/**
 * The tracked policy. Create with `engine.scanner({ policy: "tracked", stablePasses?, rangePages?,
 * thrashUnshares?, maxBackoffPasses? })` (defaults 2, 64, 2, 64). pagesToScan counts the
 * mergeable pages of the ranges read back; a batch always finishes the range it started.
 * A duplicate first merges during pass number `stablePasses` (counting from 0): after
 * `stablePasses + 1` full scans.
 */
export class TrackedScanner extends ScannerBase<TrackedSlot, typeof TRACKED_OPTIONS> {
  readonly policy = "tracked" as const
  protected readonly keepsScanned = false
  protected readonly sameFrameStops = false
  /** Pages per back-off range. */
  readonly rangePages: number

  constructor(host: ScanHost, params: PolicyParams<typeof TRACKED_OPTIONS>) {
    super(host, params)
    this.rangePages = this.o.rangePages
    this.init()
  }

  protected newSlot(space: PagedSpace, salt: number): TrackedSlot {
    return new TrackedSlot(space, salt)
  }

  protected clearSlot(s: TrackedSlot): void {
    s.st = s.quiet = s.seq = null
    s.strikes = null
    s.until = null
    s.clean = s.unsh = null
    s.items = 0
    s.unstable = 0
  }

  protected pagesMergedElsewhere(s: TrackedSlot, p0: number, p1: number): void {
    const st = s.st
    if (st === null) return
    const fl = s.space.pflags
    for (let pi = p0; pi < p1; pi++) {
      const b = st[pi]!
      if ((b & ITEM) === 0 || (b & HELD) !== 0 || (fl[pi]! & (PAGE_MERGED | PAGE_KSM_ZERO)) === 0) continue
      if ((b & CAND) !== 0) {
        st[pi] = b & ~CAND
        s.unstable--
        this.unshared--
      }
      this.#hold(s, pi, false)
    }
  }

  /** Process whole ranges of the slot under the cursor until the budget is spent or the slot ends. */
  protected walkSlot(slot: TrackedSlot, budget: number): number {
    const space = slot.space
    const ranges = Math.ceil(space.pages / this.rangePages)
    while (this.pos < ranges) {
      const r = this.pos++
      budget -= this.#range(slot, r)
      if (budget <= 0) return 0
    }
    if (slot.items === 0 && slot.st !== null && !this.#anyState(slot)) this.clearSlot(slot)
    this.nextSlot()
    return budget
  }

  /** Read back and merge range `r` of `slot`. Returns the pages it examined (the budget used). */
  #range(slot: TrackedSlot, r: number): number {
    const space = slot.space
    const fl = space.pflags
    const any = space.mergeAny
    const p0 = r * this.rangePages
    const p1 = Math.min(space.pages, p0 + this.rangePages)
    let st = slot.st
    // Pages that left the mergeable ranges stop being tracked (and get their protection back).
    let mergeable = 0
    for (let pi = p0; pi < p1; pi++) {
      if (any || (fl[pi]! & PAGE_MERGEABLE) !== 0) mergeable++
      else if (st !== null && st[pi] !== 0) this.#untrack(slot, pi, true)
    }
    if (mergeable === 0) return 0
    if (st === null) {
      st = this.#ensure(slot)
      if (st === null) return 0
    }
    if (this.seqnr < slot.until![r]!) {
      this.rSkipped += mergeable
      return 0
    }
    // 1. Register and protect the pages seen for the first time, run by run.
    let runStart = -1
    for (let pi = p0; pi <= p1; pi++) {
      const fresh = pi < p1 && (any || (fl[pi]! & PAGE_MERGEABLE) !== 0) && (st[pi]! & ITEM) === 0
      if (fresh) {
        if (runStart < 0) runStart = pi
        st[pi] = ITEM | FRESH
        slot.items++
        this.items++
        slot.quiet![pi] = 0
      } else if (runStart >= 0) {
        space.protectPages(runStart, pi, true)
        runStart = -1
      }
    }
    // 2. Read back WRITTEN and re-protect in the same walk, over each mergeable run.
    const ps = space.pageSize
    runStart = -1
    for (let pi = p0; pi <= p1; pi++) {
      const mg = pi < p1 && (any || (fl[pi]! & PAGE_MERGEABLE) !== 0)
      if (mg) {
        if (runStart < 0) runStart = pi
        continue
      }
      if (runStart < 0) continue
      const end = pi * ps
      let start = runStart * ps
      while (start < end) {
        // PAGEMAP_SCAN { categoryMask: WRITTEN, returnMask: WRITTEN, wpMatching: true } over [start, end).
        const res = pagemapWalk(space, start / ps, end / ps, 0, WRITTEN, 0, WRITTEN, Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY, true)
        for (const reg of res.regions) {
          for (let q = reg.start / ps; q < reg.end / ps; q++) st[q] = st[q]! | WRITTEN_NOW
        }
        start = res.walkEnd
      }
      runStart = -1
    }
    // 3-4. Update quiet counts; candidates merge when a partner exists.
    const quiet = slot.quiet!
    const stable = this.o.stablePasses
    const offload = this.offload !== null && !space.secure
    // Pages this policy merged before this pass that are still merged: a pass is "clean" only if some were at risk.
    let survivors = 0
    for (let pi = p0; pi < p1; pi++) {
      let s = st[pi]!
      if ((s & ITEM) === 0) continue
      if ((s & FRESH) !== 0) {
        st[pi] = s & ~(FRESH | WRITTEN_NOW)
        // offload: a candidate at its next visit; its digest is prepared meanwhile.
        if (offload && stable <= 1) this.prequeue(space, pi)
        continue
      }
      const written = (s & WRITTEN_NOW) !== 0
      s &= ~WRITTEN_NOW
      if ((s & CAND) !== 0) {
        // Last pass's candidate index is gone.
        s &= ~CAND
        slot.unstable--
        this.unshared--
      }
      const b = fl[pi]!
      const inCore = (b & (PAGE_MERGED | PAGE_KSM_ZERO)) !== 0
      if ((s & HELD) !== 0 && !inCore) {
        // It left the core: a write (copy-on-write), a discard or an unmerge.
        s &= ~HELD
        slot.items++
        this.items++
        if ((s & OURS) !== 0) {
          s &= ~OURS
          if (written) slot.unsh![r]!++
        }
      }
      st[pi] = s
      if ((s & (HELD | OURS)) === (HELD | OURS)) survivors++
      if ((s & HELD) === 0 && inCore) this.#hold(slot, pi, false)
      if (written) {
        quiet[pi] = 0
        this.rVolatile++
        continue
      }
      const q = quiet[pi]!
      if (q !== 255) quiet[pi] = q + 1
      if (inCore) continue
      if (q + 1 < stable) {
        if (offload && q + 2 >= stable) this.prequeue(space, pi)
        continue
      }
      const f = space.frameAt(pi)
      if (f === ZERO_FRAME || (b & PAGE_PINNED) !== 0) continue
      this.#candidate(slot, pi, f)
    }
    this.#settleRange(slot, r, survivors > 0)
    this.rScanned += mergeable
    return mergeable
  }

  /** An invariant page: merge it if a second identical page exists, else remember it for this pass. */
  #candidate(slot: TrackedSlot, pi: number, f: number): void {
    if (slot.space.secure) {
      // Secure space (VUsion): every candidate takes the core's one path (armed, then entered
      // in the table write-protected, partner or not), never the partner-only candidate index.
      const o = this.secureCandidate(slot, pi)
      if (o === Outcome.Merged || o === Outcome.Inserted || o === Outcome.Crowded || o === Outcome.ZeroMapped) this.#hold(slot, pi, true)
      return
    }
    const o = this.stableStep(slot, pi, f, false)
    if (o === Outcome.Merged || o === Outcome.ZeroMapped) this.#hold(slot, pi, true)
    if (o !== -1) return
    // The candidate index is keyed by the keyed full-page checksum, not the sampled table key:
    // pages that differ only outside the sample must not pile up in one chain. A crowded sampled
    // key made the lookup compute that checksum already (core.lastSum).
    const core = this.core
    const sum = core.lastSum >= 0 ? core.lastSum : core.checksumOf(f)
    this.pairSearch(slot, pi, f, false, (sum ^ slot.salt) >>> 0, core.lastKey)
  }

  protected inIndex(ts: TrackedSlot, tpi: number, seq: number): boolean {
    const st = ts.st
    if (st === null) return false
    const s = st[tpi]!
    return (s & CAND) !== 0 && (s & HELD) === 0 && ts.seq![tpi] === seq
  }

  /** Still invariant (protected, so unwritten since), not a merge-placed zero page, unpinned. */
  protected partnerUsable(_ts: TrackedSlot, _tpi: number, tb: number): boolean {
    return (tb & PAGE_UFFD_WP) !== 0 && (tb & (PAGE_KSM_ZERO | PAGE_PINNED)) === 0
  }

  protected indexed(slot: TrackedSlot, pi: number, seq: number): void {
    slot.st![pi] = slot.st![pi]! | CAND
    slot.seq![pi] = seq
  }

  protected paired(keep: TrackedSlot, kpi: number, join: TrackedSlot, jpi: number): void {
    // The earlier candidate (keep) leaves the index as it becomes the table frame.
    keep.st![kpi] = keep.st![kpi]! & ~CAND
    keep.unstable--
    this.unshared--
    this.#hold(keep, kpi, true)
    this.#hold(join, jpi, true)
  }

  /**
   * End of range `r` this pass: back off if its merges thrashed, or ease off a past back-off
   * after as many clean passes (merged pages of ours survived, none unshared) as it lasted.
   */
  #settleRange(slot: TrackedSlot, r: number, atRisk: boolean): void {
    const unsh = slot.unsh!
    const strikes = slot.strikes!
    const clean = slot.clean!
    const u = unsh[r]!
    unsh[r] = 0
    const max = this.o.maxBackoffPasses
    if (u >= this.o.thrashUnshares) {
      const k = Math.min(strikes[r]! + 1, 31)
      strikes[r] = k
      clean[r] = 0
      slot.until![r] = this.seqnr + 1 + Math.min(max, 2 ** (k - 1))
      this.rBackedOff++
      return
    }
    const k = strikes[r]!
    if (k === 0 || !atRisk) return
    const c = clean[r]! + 1
    if (c >= Math.min(max, 2 ** (k - 1))) {
      strikes[r] = k - 1
      clean[r] = 0
    } else {
      clean[r] = c
    }
  }

  /** The page's item now lives in the core (it merged); `ours`: count its unsharing as thrash. */
  #hold(slot: TrackedSlot, pi: number, ours: boolean): void {
    const st = slot.st!
    st[pi] = st[pi]! | HELD | (ours ? OURS : 0)
    slot.items--
    this.items--
  }

  /** Stop tracking page `pi`; `unprotect`: give the page its protection back. */
  #untrack(slot: TrackedSlot, pi: number, unprotect: boolean): void {
    const st = slot.st!
    const s = st[pi]!
    if ((s & CAND) !== 0) {
      slot.unstable--
      this.unshared--
    }
    if ((s & ITEM) !== 0 && (s & HELD) === 0) {
      slot.items--
      this.items--
    }
    st[pi] = 0
    slot.quiet![pi] = 0
    if (unprotect && (s & ITEM) !== 0 && (slot.space.pflags[pi]! & PAGE_UFFD_WP) !== 0) slot.space.protectPages(pi, pi + 1, false)
  }

  /** Whether the slot holds anything worth keeping (held merges, back-off history). */
  #anyState(slot: TrackedSlot): boolean {
    const st = slot.st!
    for (let i = 0; i < st.length; i++) if (st[i] !== 0) return true
    const strikes = slot.strikes!
    for (let i = 0; i < strikes.length; i++) if (strikes[i] !== 0) return true
    return false
  }

  #ensure(slot: TrackedSlot): Uint8Array | null {
    const n = slot.space.pages
    const nr = Math.ceil(n / this.rangePages)
    try {
      if (this.pool.failpoint !== null) this.pool.failpoint("scan")
      slot.st = new Uint8Array(n)
      slot.quiet = new Uint8Array(n)
      slot.seq = new Uint8Array(n)
      slot.strikes = new Uint8Array(nr)
      slot.until = new Int32Array(nr)
      slot.clean = new Uint16Array(nr)
      slot.unsh = new Uint16Array(nr)
    } catch (err) {
      if (!(err instanceof RangeError || err instanceof OutOfMemory)) throw err
      this.clearSlot(slot)
      return null
    }
    return slot.st
  }
}

/** The "tracked" policy's registry entry. */
export const trackedPolicy = {
  name: "tracked",
  summary: "the SKSM thread's userspace scanner over write tracking (PAGEMAP_SCAN + uffd-wp)",
  options: TRACKED_OPTIONS,
  create: (host: ScanHost, params: PolicyParams<typeof TRACKED_OPTIONS>) => new TrackedScanner(host, params),
} as const
