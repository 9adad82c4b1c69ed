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
import { type MergeCore, Outcome, type ScanCounters, type ScanSource } from "../core/merge.ts"
import { thirdKey } from "../core/checksum.ts"
import { Busy, InvalidArgument, OutOfMemory, ScannerDetached } from "../errors.ts"
import { FRAME_KSM, type FramePool, ZERO_FRAME } from "../memory/frames.ts"
import { PAGE_MERGED, PAGE_PINNED } from "../memory/flags.ts"
import type { PagedSpace } from "../memory/space.ts"
import { nowMillis, timer } from "../platform.ts"
import { errorText, show } from "../validate.ts"
import { type AdvisorContext, type AdvisorResult, newAdvisorContext, scanTimeAdvisor } from "./advisor.ts"
import {
  applyTunables,
  type OptionSpecs,
  type OptionValues,
  type PolicyOptionsContext,
  type ResolvedCommonTunables,
  type ScanClock,
  type ScanReport,
  systemClock,
} from "./options.ts"
import { HashOffload, type OffloadChannel } from "./offload.ts"
import { UnstableIndex } from "./unstable.ts"

/** What a scanner needs from its engine (the engine gives it one; the scanner never sees the engine). */
export interface ScanHost {
  readonly core: MergeCore
  /** Live spaces, in creation order. */
  spaces(): readonly PagedSpace[]
  /** Housekeeping after a full pass (the engine's automatic compaction). */
  maybeCompact(): unknown
}

/** The public face of a background scanner, whatever its policy (see {@link ScannerBase}). */
export interface Scanner {
  /** Which policy this scanner runs. */
  readonly policy: string
  /** The tunables in force (a frozen snapshot; the policy's own options included). */
  readonly tunables: Readonly<ResolvedCommonTunables & Record<string, number | boolean | string>>
  /** Whether start()'s loop is running. */
  readonly running: boolean
  /** Whether a newer engine.scanner() replaced this one. */
  readonly detached: boolean
  /** The last advisor run (the `ksm_advisor` tracepoint), or null. */
  readonly lastAdvice: AdvisorResult | null
  /**
   * One batch of ksmd (ksm_do_scan(pages_to_scan)): visit up to pagesToScan pages from the
   * cursor. A batch stops early at the end of a full pass, as the kernel's does. Synchronous and
   * deterministic given the same contents and calls.
   */
  tick(): ScanReport
  /** `echo 1 > run`: run batches in the background, sleepMillis apart. No-op if running. */
  start(): void
  /** `echo 0 > run`: stop the loop (merges stay). Rejects if the loop died of an error. */
  stop(): Promise<void>
  /** Write tunables with the kernel's validation; the whole call is checked first. */
  set(tunables: object): void
  /**
   * With `offload: true`: the shared buffers and job ring a hashing thread works on (post it to
   * the thread; ask again when a job names a newer `version`). Null without offload, or once
   * detached. The channel carries the engine's secret hash key: keep it inside the process.
   */
  offloadChannel(): OffloadChannel | null
}

/** Per-space scan state (the kernel's ksm_mm_slot). Policies extend it with their arrays. */
export class Slot {
  readonly space: PagedSpace
  /** space.id, the key the indexes store instead of a reference. */
  readonly id: number
  /** Domain salt of the table keys (core.saltOf(space.domain)). */
  readonly salt: number
  /** rmap items held for pages that are not PAGE_MERGED. */
  items = 0
  /** Of those, items in the unstable / candidate index. */
  unstable = 0

  constructor(space: PagedSpace, salt: number) {
    this.space = space
    this.id = space.id
    this.salt = salt
  }

  /** Bytes of per-page state held. */
  get bytes(): number {
    return 0
  }
}

/** What a policy's definition hands the scanner base. */
export interface PolicyParams<O extends OptionSpecs> {
  readonly ctx: PolicyOptionsContext & { readonly own: O }
  readonly common: ResolvedCommonTunables
  readonly own: OptionValues<O>
  readonly clock: ScanClock | undefined
  /** Hash on another thread (see ScannerOptions.offload). */
  readonly offload: boolean
}

/** Cursor value: at the list head, between passes. */
const AT_HEAD = -1

/** offload: how long a batch waits for one digest before this thread hashes on its own. */
export const OFFLOAD_STUCK_MILLIS = 100

/** offload: the longest a loop holds its next batch back after one that waited for digests. */
const WAIT_MAX_MILLIS = 5

/** What {@link ScannerBase.awaitDigest} says of a page. */
export const Await = {
  /** Go on: the digest is valid, or this thread hashes the page itself. */
  Go: 0,
  /** Stop the batch here: the digest is on its way. */
  InFlight: 1,
  /** Stop the batch here: the page had not been queued (what the prefetch covered went stale). */
  Missed: 2,
} as const

/**
 * The background scanner's base: what every policy shares. Create one with
 * `engine.scanner(options)`; it starts idle.
 *
 * ```ts
 * const ksmd = engine.scanner({ policy: "ksm" })   // kernel defaults
 * ksmd.tick()                 // one batch, synchronous and deterministic
 * ksmd.start(); await ksmd.stop()
 * ksmd.set({ pagesToScan: 1000 })
 * ```
 * Gotchas: one active scanner per engine. `engine.scanner()` again detaches this one: its
 * loop stops, its per-page state is dropped, and tick()/start()/set() throw ScannerDetached
 * (stop() still resolves). Pages it merged stay merged. The loop's timer does not keep a Node
 * process alive by itself.
 *
 * A policy implements the walk over one slot ({@link walkSlot}) and the few hooks below; the
 * base owns the slot list and cursor, passes, counters, the advisor, the loop, the bounded
 * partner search over this pass's index ({@link pairSearch}) and secure mode's candidate path.
 */
export abstract class ScannerBase<S extends Slot, O extends OptionSpecs> implements ScanSource, Scanner {
  /** Which policy this scanner runs. */
  abstract readonly policy: string

  protected readonly host: ScanHost
  protected readonly core: MergeCore
  protected readonly pool: FramePool
  /** The common tunables in force. */
  protected t: ResolvedCommonTunables
  /** The policy's own options in force. */
  protected o: OptionValues<O>
  readonly #ctx: PolicyOptionsContext
  readonly #clock: ScanClock
  readonly #wall: () => unknown
  readonly #cpu: () => unknown

  /** Scan order (the mm_slot list; index 0 follows the head). */
  protected slots: S[] = []
  /** Space id -> slot. */
  protected byId = new Map<number, S>()
  /** Index of the slot under the cursor, or AT_HEAD. */
  protected cur = AT_HEAD
  /** Next page (or range) of the slot under the cursor. */
  protected pos = 0
  /** ksm_scan.seqnr: completed passes. */
  protected seqnr = 0

  // Kernel counters.
  #pagesScanned = 0
  #pagesSkipped = 0
  /** rmap items held for pages that are not PAGE_MERGED, all slots. */
  protected items = 0
  /** Items in the unstable / candidate index, all slots. */
  protected unshared = 0

  // The current batch's report fields (reset by tick()).
  protected rScanned = 0
  protected rSkipped = 0
  protected rMerged = 0
  protected rZero = 0
  protected rVolatile = 0
  protected rUnstable = 0
  protected rBackedOff = 0
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
  #cancelTimer: (() => void) | null = null
  #loopError: unknown = undefined

  /** The ring to the hashing thread (offload), or null: pages are hashed on this thread. */
  protected readonly offload: HashOffload | null
  /** offload: when the batch started waiting for the digest it ended at, or last saw the thread progress meanwhile (-1: not waiting). */
  #waitSince = -1
  /** offload: the ring's tail when {@link #waitSince} was set. */
  #waitDone = -1
  /** offload: the ring's tail when the thread was judged stuck (-1: not stuck). */
  #stuckAt = -1
  protected rWaited = false
  /** Unstable-index keys a lookup found crowded (more equal keys than it compares): from the next pass their pages use the third level. */
  readonly #crowdedU = new Set<number>()
  /** offload: pages this thread hashed itself because the hashing thread was stuck or the ring full. */
  hostHashes = 0
  /** offload: times the hashing thread was judged stuck (no digest for {@link OFFLOAD_STUCK_MILLIS}). */
  stuckEvents = 0

  /**
   * This pass's index of candidates that found no partner yet (ksmd's unstable tree, or the
   * tracked policy's candidate index): emptied at the start of every pass.
   */
  protected readonly index = new UnstableIndex()

  /** Built by the policy registry from validated options (engine.scanner()). */
  constructor(host: ScanHost, params: PolicyParams<O>) {
    this.host = host
    this.core = host.core
    this.pool = host.core.pool
    this.index.failpoint = (site) => this.pool.failpoint?.(site)
    this.#ctx = params.ctx
    this.t = params.common
    this.o = params.own
    const clock = params.clock ?? systemClock
    // The clock's two functions, read once; later called with the clock as `this`.
    let wall: unknown
    let cpu: unknown
    try {
      wall = clock.wallMillis
      cpu = clock.cpuMicros
    } catch (cause) {
      throw new InvalidArgument(`clock: reading its functions threw (${errorText(cause)})`, { cause })
    }
    if (typeof wall !== "function" || typeof cpu !== "function") throw new InvalidArgument("clock must be an object { wallMillis(), cpuMicros() }")
    this.#clock = clock
    this.#wall = wall as () => unknown
    this.#cpu = cpu as () => unknown
    // Last: it enables the pool's digests (the engine turns them off when a scanner without offload replaces this one).
    this.offload = params.offload ? new HashOffload(this.pool, this.core.hashMaterial) : null
  }

  /** Build the slot list from the engine's spaces (called once, after subclass fields exist). */
  protected init(): void {
    for (const s of this.host.spaces()) if (!s.disposed) this.#append(s)
  }

  // ---------------------------------------------------------------- what a policy implements

  /** A policy's slot for `space`. */
  protected abstract newSlot(space: PagedSpace, salt: number): S
  /** The policy's walk over the slot under the cursor from `pos`; returns the budget left. */
  protected abstract walkSlot(slot: S, budget: number): number
  /** Drop a slot's per-page state (its counts are subtracted by the caller). */
  protected abstract clearSlot(slot: S): void
  /** merge() made pages of [p0, p1) PAGE_MERGED: release the items of those that are. */
  protected abstract pagesMergedElsewhere(slot: S, p0: number, p1: number): void
  /** Whether page `tpi` of `ts` is in this pass's index, by the policy's own marks (pass `seq`). */
  protected abstract inIndex(ts: S, tpi: number, seq: number): boolean
  /**
   * Policy-specific conditions on a live partner page `tpi` (flags `tb`) of `ts` beyond the
   * base's (present, unmerged, not a table frame, not a disposed space).
   */
  protected abstract partnerUsable(ts: S, tpi: number, tb: number): boolean
  /** This page (`slot`, `pi`) entered the index: set the policy's marks. */
  protected abstract indexed(slot: S, pi: number, seq: number): void
  /** `join` page merged into `keep`'s new table frame by {@link pairSearch}: update both items. */
  protected abstract paired(keep: S, kpi: number, join: S, jpi: number): void
  /**
   * Which page of a pair becomes the table frame: true, the page being scanned (ksmd:
   * try_to_merge_with_ksm_page on the current page first); false, the earlier one.
   */
  protected abstract readonly keepsScanned: boolean
  /** Whether a partner on the very frame of the page stops the search (ksmd: "don't substitute a ksm page for a forked page"). */
  protected abstract readonly sameFrameStops: boolean

  // ---------------------------------------------------------------- offload

  /**
   * offload: queue up to `window` pages ahead of the cursor for hashing (a policy that visits
   * pages in cursor order overrides it). Called at the start of each batch.
   */
  protected prefetch(_window: number): void {}

  /**
   * offload: queue page `pi` of `space` for hashing if it is a page a policy hashes (present,
   * unmerged, unpinned, not a table frame, not in a secure space) and its digest is neither
   * valid nor on its way, and the thread is not stuck. For policies that know a page's turn
   * ahead of time (ksm: the pages ahead of the cursor; tracked: one pass before a page becomes
   * a candidate). False when the ring is full.
   */
  protected prequeue(space: PagedSpace, pi: number): boolean {
    const f = space.frameAt(pi)
    if (f === ZERO_FRAME || (space.pflags[pi]! & (PAGE_MERGED | PAGE_PINNED)) !== 0 || (this.pool.flags[f]! & FRAME_KSM) !== 0 || space.secure) return true
    if (this.core.digested(f) || this.offload!.queuedNow(f) || this.offloadStuck) return true
    return this.queueDigest(space, pi, f)
  }

  /** offload: the hashing thread was judged stuck and has made no progress since (this thread hashes). */
  protected get offloadStuck(): boolean {
    if (this.#stuckAt < 0) return false
    const off = this.offload!
    // Still stuck: no job done since, and some left (an idle thread with nothing queued is not stuck).
    if (off.done === this.#stuckAt && off.backlog > 0) return true
    this.#stuckAt = -1
    return false
  }

  /**
   * offload: queue page `pi` of `space` (frame `f`, unmerged, not pinned, not a table frame) for
   * hashing: step 1 of the protocol (offload.ts) write-protects it first. False if the ring is full.
   */
  protected queueDigest(space: PagedSpace, pi: number, f: number): boolean {
    const off = this.offload!
    if (off.room() <= 0) return false
    space.revokeWrite(pi)
    off.push(f)
    return true
  }

  /**
   * offload: whether the batch must stop before page `pi` (frame `f`) to wait for its digest:
   * {@link Await}.Go when the digest is valid, or when this thread should hash it itself (the
   * ring is full, or the hashing thread made no progress for {@link OFFLOAD_STUCK_MILLIS});
   * Await.InFlight when it is on its way; Await.Missed when it was not even queued (queued now).
   */
  protected awaitDigest(space: PagedSpace, pi: number, f: number): number {
    const off = this.offload!
    if (this.core.digested(f)) {
      this.#waitSince = -1
      return Await.Go
    }
    if (this.offloadStuck) {
      this.hostHashes++
      return Await.Go
    }
    let missed = false
    if (!off.queuedNow(f)) {
      if (!this.queueDigest(space, pi, f)) {
        this.hostHashes++
        return Await.Go
      }
      missed = true
    }
    const now = nowMillis()
    // The clock runs from the thread's last progress seen while waiting (a slow thread is not a stuck one).
    const done = off.done
    if (this.#waitSince < 0 || done !== this.#waitDone) {
      this.#waitSince = now
      this.#waitDone = done
    } else if (now - this.#waitSince > OFFLOAD_STUCK_MILLIS) {
      this.#waitSince = -1
      this.#stuckAt = off.done
      this.stuckEvents++
      this.hostHashes++
      return Await.Go
    }
    this.rWaited = true
    return missed ? Await.Missed : Await.InFlight
  }

  // ---------------------------------------------------------------- shared steps

  /**
   * unstable_tree_search_insert: look for an identical page of this pass under `ukey` (the
   * salted full checksum); merge the pair ({@link MergeCore.mergePair}, under table key `key`)
   * or enter this page in the index; or give up this time (bounds, a pin, same frame, no
   * memory). Bounded like the core's lookups: at most maxWalk entries and maxCandidates
   * memcmps; dead entries (pages written, merged or gone) are skipped.
   */
  protected pairSearch(slot: S, pi: number, f: number, pinned: boolean, ukey: number, key: number): void {
    const pool = this.pool
    const core = this.core
    const idx = this.index
    // A key crowded by colliding full checksums (crafted pages) in an earlier pass: its pages meet
    // under their third-level key (the core's NH), which crafted pages cannot make collide.
    const third = this.#crowdedU.size !== 0 && this.#crowdedU.has(ukey)
    if (third) ukey = thirdKey(core.thirdHash(pool.words, f << (pool.pageShift - 2), pool.pageSize >>> 2), ukey)
    const seq = this.seqnr & 0xff
    let visits = core.maxWalk
    let compares = core.maxCandidates
    for (let u = idx.head(ukey); u !== -1; u = idx.next[u]!) {
      if (--visits < 0) return
      if (idx.key[u] !== ukey) continue
      const ts = this.byId.get(idx.space[u]!)
      if (ts === undefined) continue
      const tpi = idx.page[u]!
      if (!this.inIndex(ts, tpi, seq)) continue
      const tspace = ts.space
      if (tspace.disposed) continue
      const tf = tspace.frameAt(tpi)
      const tb = tspace.pflags[tpi]!
      // get_mergeable_page: still a present, unmerged page that is not a table frame.
      if (tf === ZERO_FRAME || (tb & PAGE_MERGED) !== 0 || (pool.flags[tf]! & FRAME_KSM) !== 0) continue
      if (!this.partnerUsable(ts, tpi, tb)) continue
      if (tf === f) {
        if (this.sameFrameStops) return
        continue
      }
      if (--compares < 0) {
        if (!third) this.#crowdedU.add(ukey)
        return
      }
      if (!pool.equal(tf, f)) continue
      // Identical: both are checked before either changes (a pinned page cannot be write-protected).
      if (pinned || (tb & PAGE_PINNED) !== 0) return
      const keep = this.keepsScanned
      if (!core.mergePair(keep ? slot.space : tspace, keep ? pi : tpi, keep ? tspace : slot.space, keep ? tpi : pi, key)) return
      if (keep) this.paired(slot, pi, ts, tpi)
      else this.paired(ts, tpi, slot, pi)
      this.rMerged += 2
      return
    }
    try {
      idx.insert(ukey, slot.id, pi)
    } catch (err) {
      if (err instanceof OutOfMemory) return
      throw err
    }
    this.indexed(slot, pi, seq)
    slot.unstable++
    this.unshared++
    this.rUnstable++
  }

  /**
   * A stable page of a secure space (VUsion): no unstable index, whose unprotected pages would
   * reveal by their write cost whether a partner existed. Every candidate takes the core's one
   * path: armed, then (once idle) write-protected and entered in the table, merged or not.
   * Returns the core's Outcome, or -1 when its reservation failed (try again next time).
   */
  protected secureCandidate(slot: S, pi: number): number {
    const core = this.core
    try {
      core.prepareMerge(slot.space, pi, pi + 1)
    } catch (err) {
      if (err instanceof OutOfMemory) return -1
      throw err
    }
    const o = core.mergePage(slot.space, pi, slot.salt)
    if (o === Outcome.Merged) this.rMerged++
    else if (o === Outcome.ZeroMapped) this.rZero++
    return o
  }

  /**
   * The stable step both policies take for a candidate page `pi` (frame `f`): join a table
   * frame it maps since a fork (max_page_sharing_bypass), map the zero page, or merge with a
   * stable frame. Returns the Outcome, or -1 with the salted table key in core.lastKey: no
   * stable partner, search this pass's index next. `sum`: the frame's full checksum if the
   * policy holds it (-1: not known; core.lastSum then has it if the lookup computed it).
   */
  protected stableStep(slot: S, pi: number, f: number, pinned: boolean, sum = -1): number {
    const core = this.core
    if ((this.pool.flags[f]! & FRAME_KSM) !== 0) {
      // A table frame this page maps without being its rmap entry (a KSM page inherited by fork).
      core.mergeInto(slot.space, pi, this.pool.entry[f]!)
      this.rMerged++
      return Outcome.Merged
    }
    const o = core.mergeStable(slot.space, pi, f, slot.salt, pinned, sum)
    if (o === Outcome.Merged) this.rMerged++
    else if (o === Outcome.ZeroMapped) this.rZero++
    return o
  }

  // ---------------------------------------------------------------- public API

  /** The tunables in force (a frozen snapshot; the policy's own options included). */
  get tunables(): Readonly<ResolvedCommonTunables & OptionValues<O>> {
    return Object.freeze({ ...this.t, ...this.o })
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
   * Synchronous and deterministic given the same contents and calls. The clock is read first:
   * a reading that is not a finite number is InvalidArgument before anything changes.
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
    const c0 = this.#reading("cpuMicros", this.#cpu, true)
    // The batch may write-protect, remap and free pages: lent write translations go first.
    this.pool.revokeWrites()
    const pagesToScan = this.t.pagesToScan
    this.rScanned = this.rSkipped = this.rMerged = this.rZero = this.rVolatile = this.rUnstable = this.rBackedOff = 0
    this.#rFullScan = false
    this.rWaited = false
    this.#tickCpu0 = c0
    if (this.offload !== null && pagesToScan > 0 && !this.offloadStuck) this.prefetch(Math.max(2 * pagesToScan, 256))
    if (pagesToScan > 0) this.batch(pagesToScan)
    // A batch that stopped to wait for a digest needs the thread now; other jobs are for later batches.
    this.offload?.flush(this.rWaited)
    this.offload?.noteProgress(nowMillis())
    // Counted before the closing clock reading, which cannot undo what the batch did.
    this.#pagesScanned += this.rScanned
    this.#pagesSkipped += this.rSkipped
    const c1 = this.#reading("cpuMicros", this.#cpu, false)
    const cpu = Number.isNaN(c1) ? 0 : Math.max(0, c1 - c0)
    this.#cpuTotal += cpu
    if (this.#rFullScan) this.host.maybeCompact()
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
      waited: this.rWaited,
    }
  }

  /**
   * One clock reading. A reading that is not a finite number, or a clock that throws, is
   * InvalidArgument when `strict` (the tick has changed nothing yet), else NaN: the value is
   * ignored (no CPU charged, no advisor run for that pass) and the tunables stay valid.
   */
  #reading(what: string, fn: () => unknown, strict: boolean): number {
    let v: unknown
    try {
      v = Reflect.apply(fn, this.#clock, [])
    } catch (cause) {
      if (cause instanceof Busy || !strict) return Number.NaN
      throw new InvalidArgument(`clock.${what}() threw (${errorText(cause)})`, { cause })
    }
    if (typeof v === "number" && Number.isFinite(v)) return v
    if (strict) throw new InvalidArgument(`clock.${what}() must return a finite number, got ${show(v)}`)
    return Number.NaN
  }

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

  /**
   * `echo 1 > run`: run batches in the background, sleepMillis apart (the first batch runs on
   * the next turn of the event loop). No-op if already running. If a batch throws, the loop
   * stops and the next stop() rejects with that error.
   */
  start(): void {
    this.#live()
    if (this.#running) return
    this.#running = true
    this.#loopError = undefined
    this.#pace()
    this.#schedule(0)
  }

  /** With offload: the buffers a hashing thread works on; null without offload or once detached. */
  offloadChannel(): OffloadChannel | null {
    return this.offload === null || this.#detached ? null : this.offload.channel()
  }

  /** `echo 0 > run`: stop the loop (merges stay). Resolves at once; rejects if the loop died of an error. */
  async stop(): Promise<void> {
    this.#running = false
    this.#clearTimer()
    this.#pace()
    const err = this.#loopError
    this.#loopError = undefined
    if (err !== undefined) throw err
  }

  /**
   * Write tunables, with the kernel's validation (common tunables and the policy's own): the
   * whole call is read once and checked first, and changes nothing on InvalidArgument. A new
   * sleepMillis wakes a running loop at once (as a write to sleep_millisecs wakes ksmd).
   */
  set(tunables: object): void {
    this.#live()
    const prev = this.t
    const next = applyTunables(prev, this.o, tunables, this.#ctx, false)
    if (next.common.advisorMode !== prev.advisorMode && next.common.advisorMode === "scan-time") this.#advisor = newAdvisorContext()
    this.t = next.common
    this.o = next.own
    if (next.common.sleepMillis !== prev.sleepMillis && this.#running) {
      this.#clearTimer()
      this.#pace()
      this.#schedule(0)
    }
  }

  /** offload: a running loop's thread looks at the ring by itself every sleepMillis (no ring per batch); else only when rung. */
  #pace(): void {
    if (this.offload !== null && !this.#detached) this.offload.pollMillis = this.#running ? this.t.sleepMillis : 0
  }

  // ---------------------------------------------------------------- ScanSource (engine side)

  /** The counters engine.stats() reports. */
  scanCounters(): ScanCounters {
    let bytes = this.index.bytes + this.#crowdedU.size * 16
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

  /** `echo 2 > run`: drop every rmap item, empty the indexes, cursor to the head, full_scans = 0. */
  resetForUnmergeAll(): void {
    this.#crowdedU.clear()
    for (const s of this.slots) this.clearSlot(s)
    this.items = 0
    this.unshared = 0
    this.index.reset()
    this.cur = AT_HEAD
    this.pos = 0
    this.seqnr = 0
  }

  /** rmap items held for `space`'s unmerged pages. */
  rmapItemsOf(space: PagedSpace): number {
    return this.byId.get(space.id)?.items ?? 0
  }

  /** merge() ran on [p0, p1) of `space`. */
  rangeMerged(space: PagedSpace, p0: number, p1: number): void {
    const slot = this.byId.get(space.id)
    if (slot !== undefined && slot.items > 0) this.pagesMergedElsewhere(slot, p0, p1)
  }

  /** The engine created `space`: it joins just behind the cursor (scanned last in the cycle). */
  spaceAdded(space: PagedSpace): void {
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

  /** The engine forgot `space` (disposed): drop its state now. */
  spaceReleased(space: PagedSpace): void {
    const slot = this.byId.get(space.id)
    if (slot === undefined) return
    this.dropSlotAt(this.slots.indexOf(slot))
  }

  /** The engine made a newer scanner: stop, drop all state, refuse further use. */
  detach(): void {
    if (this.#detached) return
    this.#running = false
    this.#clearTimer()
    for (const s of this.slots) this.clearSlot(s)
    this.slots = []
    this.byId.clear()
    this.items = 0
    this.unshared = 0
    this.index.reset()
    this.cur = AT_HEAD
    this.#detached = true
    // The engine turns the pool's digests off if the next scanner does not offload.
    this.offload?.stop()
    if (this.core.scan === this) this.core.scan = null
  }

  // ---------------------------------------------------------------- cursor and passes

  /** Start of a pass: advisor_start_scan, then root_unstable_tree = RB_ROOT (stale entries are dropped lazily). */
  protected beginPass(): void {
    if (this.t.advisorMode === "scan-time") this.#advisor.startScanMillis = this.#reading("wallMillis", this.#wall, false)
    this.index.reset()
  }

  /** End of a pass: advisor_stop_scan, seqnr++, cursor to the head. */
  protected endPass(): void {
    if (this.t.advisorMode === "scan-time") this.#advise()
    this.seqnr++
    this.#rFullScan = true
    this.cur = AT_HEAD
    this.pos = 0
  }

  /** scan_time_advisor at the end of a pass; skipped (pagesToScan kept) when a clock reading was unusable. */
  #advise(): void {
    const now = this.#reading("wallMillis", this.#wall, false)
    const cpuNow = this.#reading("cpuMicros", this.#cpu, false)
    if (Number.isNaN(now) || Number.isNaN(cpuNow) || Number.isNaN(this.#advisor.startScanMillis)) return
    const t = this.t
    const r = scanTimeAdvisor(this.#advisor, {
      nowMillis: now,
      cpuMicros: this.#cpuTotal + Math.max(0, cpuNow - this.#tickCpu0),
      pagesToScan: t.pagesToScan,
      advisorMaxCpu: t.advisorMaxCpu,
      advisorMaxPagesToScan: t.advisorMaxPagesToScan,
      advisorTargetScanTime: t.advisorTargetScanTime,
    })
    if (!Number.isSafeInteger(r.pages) || r.pages < 0) return
    this.t = { ...t, pagesToScan: r.pages }
    this.#lastAdvice = r
  }

  /** The cursor is between passes. */
  protected get atHead(): boolean {
    return this.cur === AT_HEAD
  }

  /** Move the cursor to the first slot (start of a pass). False if the list is empty. */
  protected enterFirstSlot(): boolean {
    if (this.slots.length === 0) return false
    this.beginPass()
    this.cur = 0
    this.pos = 0
    // beginPass runs the clock (user code), which may dispose spaces: re-check.
    return this.slots.length > 0
  }

  /** The slot under the cursor is done: advance (remove_trailing_rmap_items happened in the walk). */
  protected nextSlot(): void {
    this.cur++
    this.pos = 0
  }

  /** Remove slot `i` (space disposed), fixing the cursor. */
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

  #append(space: PagedSpace): void {
    const slot = this.newSlot(space, this.core.saltOf(space.domain))
    this.slots.push(slot)
    this.byId.set(slot.id, slot)
  }

  #live(): void {
    if (this.#detached) throw new ScannerDetached(`this ${this.policy} scanner was replaced by a newer engine.scanner(); use that one`)
  }

  #schedule(ms: number): void {
    this.#cancelTimer = timer(this.#loop, ms)
  }

  #clearTimer(): void {
    this.#cancelTimer?.()
    this.#cancelTimer = null
  }

  #loop = (): void => {
    this.#cancelTimer = null
    if (!this.#running) return
    try {
      this.tick()
    } catch (e) {
      this.#running = false
      this.#loopError = e
      this.#pace()
      return
    }
    if (this.#running) this.#schedule(this.rWaited ? this.#afterWait() : this.t.sleepMillis)
  }

  /**
   * offload: the batch stopped to wait for digests: run the next once the thread should have
   * hashed half a batch at its pace, at most WAIT_MAX_MILLIS later, not at once. Each batch that
   * ends on a digest still on its way costs this thread a wake-up: v86 guests at full speed woke
   * ~145 times a convergence that way, now ~35; QuickJS heaps ~25 -> ~10 (host CPU per merged
   * page there ~-12%, same wall to converge). Up to 50 ms saved a little more but cut a busy
   * host's scan rate by 30% (the worker soak: the pace measured while the host competes for the
   * CPU is slower than the thread's once the host sleeps); 5 ms cuts it by ~5%.
   */
  #afterWait(): number {
    const ms = this.offload === null ? 0 : this.offload.millisFor(this.t.pagesToScan / 2)
    return Math.max(this.t.sleepMillis, Math.min(WAIT_MAX_MILLIS, Math.ceil(ms)))
  }
}
