/**
 * The background scanner (ksmd): what both policies share. It keeps the list of spaces to
 * scan (the kernel's mm_slot list) with one cursor over it, runs batches of pagesToScan
 * pages (`tick()`), counts full passes, runs the scan-time advisor at the end of each pass,
 * measures its own CPU time, and runs a setTimeout loop for hosts without their own.
 *
 * The policies (ksm.ts, tracked.ts) decide what happens to each page; every merge goes
 * through the engine's one MergeCore, so the scanner and merge() share one table and one
 * set of counters.
 *
 * Lifetime: the scanner holds a space only while the space is live. The engine tells it
 * when a space is created (it joins just behind the cursor, as __ksm_enter does) and when
 * one is disposed (its state is dropped at once); each visit also checks `space.disposed`.
 */
import type { AddressSpace } from "../address-space.ts"
import type { MergeCore, ScanCounters, ScanSource } from "../core/merge.ts"
import { Busy, InvalidArgument, OutOfMemory, ScannerDetached } from "../errors.ts"
import type { FramePool } from "../memory/frames.ts"
import type { PagedSpace } from "../memory/space.ts"
import { UnstableIndex } from "./unstable.ts"
import { type AdvisorContext, type AdvisorResult, newAdvisorContext, scanTimeAdvisor } from "./advisor.ts"
import {
  applyTunables,
  DEFAULT_TUNABLES,
  type ResolvedTunables,
  type ScanClock,
  type ScannerOptions,
  type ScannerTunables,
  type ScanPolicyName,
  type ScanReport,
  systemClock,
} from "./options.ts"

/** What a scanner needs from its engine (the Engine satisfies it). */
export interface ScanHost {
  readonly core: MergeCore
  /** Live spaces, in creation order. */
  spaces(): readonly AddressSpace[]
  /** Optional housekeeping after a full pass (the engine's automatic compaction). */
  maybeCompact?(): unknown
}

/** Per-space scan state (the kernel's ksm_mm_slot). Policies extend it with their arrays. */
export class Slot {
  readonly space: AddressSpace
  /** space.id, the key the indexes store instead of a reference. */
  readonly id: number
  /** Domain salt of the table keys (core.saltOf(space.domain)). */
  readonly salt: number
  /** rmap items held for pages that are not PAGE_MERGED. */
  items = 0
  /** Of those, items in the unstable / candidate index. */
  unstable = 0

  constructor(space: AddressSpace, salt: number) {
    this.space = space
    this.id = space.id
    this.salt = salt
  }

  /** Bytes of per-page state held. */
  get bytes(): number {
    return 0
  }
}

/** Cursor value: at the list head, between passes. */
const AT_HEAD = -1

/**
 * The background scanner. Create it with `engine.scanner(options)`; it starts idle.
 *
 * ```ts
 * const ksmd = engine.scanner({ policy: "ksm" })   // kernel defaults
 * ksmd.tick()                 // one batch, synchronous and deterministic
 * ksmd.start(); await ksmd.stop()
 * ksmd.set({ pagesToScan: 1000 })
 * ```
 * Gotchas: one active scanner per engine. `engine.scanner()` again detaches this one: its
 * loop stops, its per-page state is dropped, and tick()/start()/set() throw ScannerDetached
 * (stop() still resolves). Pages it merged stay merged. The loop's timer is unref'd, so a
 * running scanner does not keep Node alive by itself.
 */
export abstract class Scanner implements ScanSource {
  /** Which policy this scanner runs. */
  abstract readonly policy: ScanPolicyName

  /** @internal */
  protected readonly host: ScanHost
  /** @internal */
  protected readonly core: MergeCore
  /** @internal */
  protected readonly pool: FramePool
  /** @internal the tunables in force. */
  protected t: ResolvedTunables
  readonly #clock: ScanClock

  /** @internal scan order (the mm_slot list; index 0 follows the head). */
  protected slots: Slot[] = []
  /** @internal space id -> slot. */
  protected byId = new Map<number, Slot>()
  /** @internal index of the slot under the cursor, or AT_HEAD. */
  protected cur = AT_HEAD
  /** @internal next page (or range) of the slot under the cursor. */
  protected pos = 0
  /** @internal ksm_scan.seqnr: completed passes. */
  protected seqnr = 0

  // Kernel counters.
  #pagesScanned = 0
  #pagesSkipped = 0
  /** @internal rmap items held for pages that are not PAGE_MERGED, all slots. */
  protected items = 0
  /** @internal items in the unstable / candidate index, all slots. */
  protected unshared = 0

  // The current batch's report fields (reset by tick()).
  /** @internal */ protected rScanned = 0
  /** @internal */ protected rSkipped = 0
  /** @internal */ protected rMerged = 0
  /** @internal */ protected rZero = 0
  /** @internal */ protected rVolatile = 0
  /** @internal */ protected rUnstable = 0
  /** @internal */ protected rBackedOff = 0
  #rFullScan = false

  // CPU accounting and the advisor.
  #cpuTotal = 0
  #tickCpu0 = 0
  #advisor: AdvisorContext = newAdvisorContext()
  #lastAdvice: AdvisorResult | null = null

  // Loop and lifetime.
  #inTick = false
  #detached = false
  #running = false
  #timer: ReturnType<typeof setTimeout> | null = null
  #loopError: unknown = undefined

  /** @internal use engine.scanner(). */
  constructor(host: ScanHost, options: ScannerOptions, policy: ScanPolicyName) {
    this.host = host
    this.core = host.core
    this.pool = host.core.pool
    this.index.failpoint = (site) => this.pool.failpoint?.(site)
    this.t = applyTunables(DEFAULT_TUNABLES, options, policy, true)
    const clock = options.clock ?? systemClock
    if (typeof clock !== "object" || clock === null || typeof clock.wallMillis !== "function" || typeof clock.cpuMicros !== "function") {
      throw new InvalidArgument("clock must be an object { wallMillis(), cpuMicros() }")
    }
    this.#clock = clock
  }

  /** @internal build the slot list from the engine's spaces (called once, after subclass fields exist). */
  protected init(): void {
    for (const s of this.host.spaces()) if (!s.disposed) this.#append(s)
  }

  /** @internal a policy's slot for `space`. */
  protected abstract newSlot(space: AddressSpace, salt: number): Slot
  /**
   * ksm_do_scan(): walk slot after slot from the cursor until the budget is spent or the pass
   * ends (the cursor ran past the last slot: the pass is complete and the batch ends there).
   */
  protected batch(budget: number): void {
    while (budget > 0) {
      if (this.atHead && !this.enterFirstSlot()) return
      if (this.cur >= this.slots.length) {
        this.endPass()
        return
      }
      const slot = this.slots[this.cur]!
      if (slot.space.disposed) {
        // Missed release notice (should not happen): drop it now; the next slot moved under the cursor.
        this.dropSlotAt(this.cur)
        continue
      }
      budget = this.walkSlot(slot, budget)
    }
  }

  /** @internal the policy's walk over the slot under the cursor; returns the budget left. */
  protected abstract walkSlot(slot: Slot, budget: number): number
  /**
   * This pass's index of candidates that found no partner yet (ksmd's unstable tree, or the
   * tracked policy's candidate index): emptied at the start of every pass.
   */
  protected readonly index = new UnstableIndex()

  /** Start of a full pass: root_unstable_tree = RB_ROOT (stale entries are dropped lazily). */
  protected passStarted(): void {
    this.index.reset()
  }

  /** Forget every index entry (run=2, policy reset). */
  protected resetIndexes(): void {
    this.index.reset()
  }

  /** Bytes the per-pass index holds. */
  protected get indexBytes(): number {
    return this.index.bytes
  }

  // ---------------------------------------------------------------- public API

  /** The tunables in force (a snapshot). */
  get tunables(): Readonly<ResolvedTunables> {
    return Object.freeze({ ...this.t })
  }

  /** Whether start()'s loop is running. */
  get running(): boolean {
    return this.#running
  }

  /** Whether a newer scanner replaced this one. */
  get detached(): boolean {
    return this.#detached
  }

  /** The last advisor run (the `ksm_advisor` tracepoint), or null. */
  get lastAdvice(): AdvisorResult | null {
    return this.#lastAdvice
  }

  /**
   * One batch of ksmd (ksm_do_scan(pages_to_scan)): visit up to pagesToScan pages from the
   * cursor. A batch stops early at the end of a full pass, as the kernel's does.
   * Synchronous and deterministic given the same contents and calls.
   */
  tick(): ScanReport {
    this.#live()
    // Reentrancy: the clock is user code called mid-tick (tick start/end, pass start/end, all
    // points where no page is half-processed). It may call the rest of the API; a nested tick
    // would corrupt this batch's report, so it is refused.
    if (this.#inTick) throw new Busy("tick() was called from inside a tick (a clock callback); call it after the tick returns")
    this.pool.assertIdle()
    this.#inTick = true
    try {
      return this.#tick()
    } finally {
      this.#inTick = false
    }
  }

  #tick(): ScanReport {
    const pagesToScan = this.t.pagesToScan
    this.rScanned = this.rSkipped = this.rMerged = this.rZero = this.rVolatile = this.rUnstable = this.rBackedOff = 0
    this.#rFullScan = false
    const c0 = this.#clock.cpuMicros()
    this.#tickCpu0 = c0
    if (pagesToScan > 0) this.batch(pagesToScan)
    const cpu = Math.max(0, this.#clock.cpuMicros() - c0)
    this.#cpuTotal += cpu
    this.#pagesScanned += this.rScanned
    this.#pagesSkipped += this.rSkipped
    if (this.#rFullScan) this.host.maybeCompact?.()
    return {
      policy: this.policy,
      scanned: this.rScanned,
      skipped: this.rSkipped,
      merged: this.rMerged,
      zeroMapped: this.rZero,
      volatile: this.rVolatile,
      unstable: this.rUnstable,
      backedOff: this.rBackedOff,
      fullScan: this.#rFullScan,
      fullScans: this.seqnr,
      pagesToScan,
      cpuMicros: cpu,
    }
  }

  /**
   * `echo 1 > run`: run batches in the background, sleepMillis apart (setTimeout; the
   * first batch runs on the next turn of the event loop). No-op if already running. If a
   * batch throws, the loop stops and the next stop() rejects with that error.
   */
  start(): void {
    this.#live()
    if (this.#running) return
    this.#running = true
    this.#loopError = undefined
    this.#schedule(0)
  }

  /** `echo 0 > run`: stop the loop (merges stay). Resolves at once; rejects if the loop died of an error. */
  async stop(): Promise<void> {
    this.#running = false
    this.#clearTimer()
    const err = this.#loopError
    this.#loopError = undefined
    if (err !== undefined) throw err
  }

  /**
   * Write tunables, with the kernel's validation (see {@link ScannerTunables}): the whole
   * call is checked first and changes nothing on InvalidArgument. A new sleepMillis wakes a
   * running loop at once (as a write to sleep_millisecs wakes ksmd).
   */
  set(tunables: ScannerTunables): void {
    this.#live()
    const prev = this.t
    const next = applyTunables(prev, tunables, this.policy, false)
    if (next.advisorMode !== prev.advisorMode && next.advisorMode === "scan-time") this.#advisor = newAdvisorContext()
    this.t = next
    this.tunablesChanged(prev)
    if (next.sleepMillis !== prev.sleepMillis && this.#running) {
      this.#clearTimer()
      this.#schedule(0)
    }
  }

  // ---------------------------------------------------------------- ScanSource (engine side)

  /** @internal the counters engine.stats() reports. */
  scanCounters(): ScanCounters {
    let bytes = this.indexBytes
    for (const s of this.slots) bytes += s.bytes
    return {
      pagesScanned: this.#pagesScanned,
      pagesSkipped: this.#pagesSkipped,
      fullScans: this.seqnr,
      pagesUnshared: this.unshared,
      // pages_volatile: items in neither index (the kernel's formula with its stable items, which the core holds here, taken out).
      pagesVolatile: Math.max(0, this.items - this.unshared),
      rmapItems: this.items,
      metadataBytes: bytes,
    }
  }

  /** @internal `echo 2 > run`: drop every rmap item, empty the indexes, cursor to the head, full_scans = 0. */
  resetForUnmergeAll(): void {
    for (const s of this.slots) this.clearSlot(s)
    this.items = 0
    this.unshared = 0
    this.resetIndexes()
    this.cur = AT_HEAD
    this.pos = 0
    this.seqnr = 0
  }

  /** @internal rmap items held for `space`'s unmerged pages. */
  rmapItemsOf(space: PagedSpace): number {
    return this.byId.get(space.id)?.items ?? 0
  }

  /** @internal merge() ran on [p0, p1) of `space`. */
  rangeMerged(space: PagedSpace, p0: number, p1: number): void {
    const slot = this.byId.get(space.id)
    if (slot !== undefined && slot.items > 0) this.pagesMergedElsewhere(slot, p0, p1)
  }

  /** @internal the engine created `space`: it joins just behind the cursor (scanned last in the cycle). */
  spaceAdded(space: AddressSpace): void {
    if (this.#detached || this.byId.has(space.id)) return
    if (this.cur === AT_HEAD) {
      this.#append(space)
      return
    }
    const slot = this.newSlot(space, this.core.saltOf(space.domain))
    this.slots.splice(this.cur, 0, slot)
    this.byId.set(slot.id, slot)
    this.cur++
  }

  /** @internal the engine forgot `space` (disposed): drop its state now. */
  spaceReleased(space: PagedSpace): void {
    const slot = this.byId.get(space.id)
    if (slot === undefined) return
    this.dropSlotAt(this.slots.indexOf(slot))
  }

  /** @internal the engine made a newer scanner: stop, drop all state, refuse further use. */
  detach(): void {
    if (this.#detached) return
    this.#running = false
    this.#clearTimer()
    for (const s of this.slots) this.clearSlot(s)
    this.slots = []
    this.byId.clear()
    this.items = 0
    this.unshared = 0
    this.resetIndexes()
    this.cur = AT_HEAD
    this.#detached = true
    if (this.core.scan === this) this.core.scan = null
  }

  // ---------------------------------------------------------------- for the policies

  /** @internal start a pass: advisor_start_scan, then the policy's index reset. */
  protected beginPass(): void {
    if (this.t.advisorMode === "scan-time") this.#advisor.startScanMillis = this.#clock.wallMillis()
    this.passStarted()
  }

  /** @internal end of a pass: advisor_stop_scan, seqnr++. The caller puts the cursor at the head. */
  protected endPass(): void {
    if (this.t.advisorMode === "scan-time") {
      const cpuNow = this.#cpuTotal + Math.max(0, this.#clock.cpuMicros() - this.#tickCpu0)
      const t = this.t
      const r = scanTimeAdvisor(this.#advisor, {
        nowMillis: this.#clock.wallMillis(),
        cpuMicros: cpuNow,
        pagesToScan: t.pagesToScan,
        advisorMaxCpu: t.advisorMaxCpu,
        advisorMaxPagesToScan: t.advisorMaxPagesToScan,
        advisorTargetScanTime: t.advisorTargetScanTime,
      })
      this.t = { ...t, pagesToScan: r.pages }
      this.#lastAdvice = r
    }
    this.seqnr++
    this.#rFullScan = true
    this.cur = AT_HEAD
    this.pos = 0
  }

  /** @internal the cursor is between passes. */
  protected get atHead(): boolean {
    return this.cur === AT_HEAD
  }

  /** @internal move the cursor to the first slot (start of a pass). False if the list is empty. */
  protected enterFirstSlot(): boolean {
    if (this.slots.length === 0) return false
    this.beginPass()
    this.cur = 0
    this.pos = 0
    // beginPass may not remove slots, but a policy could: re-check.
    return this.slots.length > 0
  }

  /** @internal the slot under the cursor is done: advance (remove_trailing_rmap_items happened in the walk). */
  protected nextSlot(): void {
    this.cur++
    this.pos = 0
  }

  /** @internal remove slot `i` (space disposed), fixing the cursor. */
  protected dropSlotAt(i: number): void {
    if (i < 0) return
    const slot = this.slots[i]!
    this.items -= slot.items
    this.unshared -= slot.unstable
    this.clearSlot(slot)
    this.slots.splice(i, 1)
    this.byId.delete(slot.id)
    if (this.cur !== AT_HEAD) {
      if (i < this.cur) this.cur--
      else if (i === this.cur) this.pos = 0
    }
  }

  /** @internal drop a slot's per-page state (its counts are subtracted by the caller). */
  protected abstract clearSlot(slot: Slot): void
  /** @internal merge() made pages of [p0, p1) PAGE_MERGED: release the items of those that are. */
  protected abstract pagesMergedElsewhere(slot: Slot, p0: number, p1: number): void
  /** @internal hook after set(). */
  protected tunablesChanged(_prev: ResolvedTunables): void {}

  /** @internal OutOfMemory from an index or table reservation means "not this time"; anything else is a bug. */
  protected static isOom(e: unknown): boolean {
    return e instanceof OutOfMemory
  }

  #append(space: AddressSpace): void {
    const slot = this.newSlot(space, this.core.saltOf(space.domain))
    this.slots.push(slot)
    this.byId.set(slot.id, slot)
  }

  #live(): void {
    if (this.#detached) throw new ScannerDetached(`this ${this.policy} scanner was replaced by a newer engine.scanner(); use that one`)
  }

  #schedule(ms: number): void {
    const t = setTimeout(this.#loop, Math.min(ms, 0x7fffffff))
    t.unref?.()
    this.#timer = t
  }

  #clearTimer(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
  }

  #loop = (): void => {
    this.#timer = null
    if (!this.#running) return
    try {
      this.tick()
    } catch (e) {
      this.#running = false
      this.#loopError = e
      return
    }
    if (this.#running) this.#schedule(this.t.sleepMillis)
  }
}
