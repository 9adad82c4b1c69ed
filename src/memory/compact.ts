/**
 * Frame compaction: move live frames out of sparsely used slabs into free frames of dense
 * ones, rewrite every page-table entry that maps a moved frame, and release the slabs that
 * end up empty, so the process stops holding memory that merging (or discarding) freed.
 *
 * sksm keeps no reverse map (frame -> PTEs). The kernel's migration walks a page's rmap, and
 * for a KSM page that walk is as long as its sharing, which is why max_page_sharing exists.
 * Here one compaction step instead (1) picks its victim slabs, (2) moves up to a budget of
 * frames into the slabs it keeps, recording from -> to in a typed array indexed by the
 * victim's slot, and (3) makes ONE sweep over every live space's page table, rewriting the entries
 * that point into a victim. The sweep reads 4 bytes per page of every space, whatever the
 * sharing: O(mapped pages) per step, independent of how many pages map one frame. A reverse
 * map would cost 4-8 bytes per mapped page plus an update on every fault, merge, fork and
 * zap: the hot paths would pay for a cold operation.
 *
 * Invariants kept: the zero frame (slab 0) never moves; frames with FRAME_PINNED never move
 * (their slab is kept); merge-table frames move with all their mappers and stay in the table
 * (the SharingObserver's frameMoved makes the entry follow); refcount, flags and entry move
 * with the frame. Everything a step allocates (plan arrays) is allocated before any frame
 * moves, and destinations are free frames the pool already holds, so a step either throws
 * having changed nothing or completes.
 */
import { InvalidArgument, OutOfMemory, SksmError } from "../errors.ts"
import { defer, nowMillis, timer } from "../platform.ts"
import { checkBool, readOptions, show } from "../validate.ts"
import { FRAME_KSM, FRAME_PINNED, type FramePool } from "./frames.ts"
import type { PagedSpace } from "./space.ts"

/** What one compaction call did (engine.compact / the automatic policy). */
export interface CompactReport {
  /** Frames copied to a new address (each is one page of data moved). */
  framesMoved: number
  /** Bytes of frame data copied. */
  bytesMoved: number
  /** Page-table entries rewritten to follow moved frames (>= framesMoved when frames are shared). */
  pagesRewritten: number
  /** Page-table entries read by the sweep (every page of every live space; 0 when nothing moved). */
  pagesSwept: number
  /** Slabs the pool dropped: their memory goes back to the OS once the GC frees the old store. */
  slabsReleased: number
  /**
   * Bytes the store shrank by: the slabs dropped and the headroom past them, less the headroom
   * the new store keeps (a store above 4 MiB is at least 32 MiB: RFC, "The frame store").
   */
  bytesReleased: number
  /**
   * Frames still to move to release every slab the current plan can free (0 when `done`).
   * An estimate: later writes and merges change it.
   */
  framesRemaining: number
  /** True when no further compaction can release a slab now (call again only after frees). */
  done: boolean
  /** Wall time of the call in milliseconds. */
  ms: number
}

/** A fresh, empty report. */
export function emptyCompactReport(): CompactReport {
  return { framesMoved: 0, bytesMoved: 0, pagesRewritten: 0, pagesSwept: 0, slabsReleased: 0, bytesReleased: 0, framesRemaining: 0, done: true, ms: 0 }
}

/** How long an automatic shrink waits for its smaller store to be prefaulted off the host's thread before it shrinks anyway. */
const PREFAULT_WAIT_MS = 250

/** How often the background continuation looks whether that store is filled. */
const FILL_POLL_MS = 5

/**
 * One compaction step over `pool` and the page tables of `spaces` (every live space of the
 * pool: a space left out would keep stale frame ids; iterated more than once). Moves at most `budget` frames
 * (Infinity: as many as it takes). Empty slabs are released without counting against the
 * budget. Throws OutOfMemory having changed nothing if its plan arrays cannot be allocated,
 * and Busy if called from inside a user callback of the engine. `shrinkNow` false: leave the
 * store's shrink to a later call; `waitForStore`: shrink only once the smaller store is
 * prefaulted (FramePool.prepareStore), else leave it too.
 */
export function compactStep(pool: FramePool, spaces: Iterable<PagedSpace>, budget: number, shrinkNow = true, waitForStore = false): CompactReport {
  const t0 = nowMillis()
  // Not from inside a user callback: the merge that called it holds frame ids.
  if (pool.busy !== 0) pool.assertIdle()
  if (pool.failpoint !== null) pool.failpoint("compact")
  const report = emptyCompactReport()
  const nSlots = pool.slabCount
  const fps = pool.framesPerSlab
  const shift = pool.slabShift
  const used = pool.slabUsed
  const flags = pool.flags
  const refcount = pool.refcount

  // ---- plan (no state change) -----------------------------------------------------------
  // The store shrinks from the top: keep the fewest low slabs that can hold every frame in use
  // (and every pinned frame, which never moves). The frames of the slabs above move down.
  let keep = nSlots
  let freeBelow = 0
  for (let s = 0; s < nSlots; s++) freeBelow += pool.slabFrames[s]! - used[s]!
  let usedAbove = 0
  for (let s = nSlots - 1; s >= 1; s--) {
    // Could slabs [0, s) take the frames of slabs [s, nSlots)?
    const free = freeBelow - (pool.slabFrames[s]! - used[s]!)
    if (hasPinned(flags, s * fps, pool.slabFrames[s]!) || free < usedAbove + used[s]!) break
    freeBelow = free
    usedAbove += used[s]!
    keep = s
  }
  // A budgeted (automatic) step shrinks only to give back at least a quarter of the store: the
  // shrink copies every live frame, and growth adds half again, so the two never chase each
  // other at more than O(1) copies per byte written. An unbounded step takes what it can.
  if (keep < nSlots && nSlots - keep < Math.max(1, Math.floor(nSlots / 4)) && budget !== Number.POSITIVE_INFINITY) keep = nSlots
  const victims: number[] = []
  let toMove = 0
  for (let s = nSlots - 1; s >= keep; s--) {
    if (used[s] === 0) continue
    victims.push(s)
    toMove += used[s]!
  }
  // This step touches victims in order until the budget is spent.
  let touched = 0
  for (let acc = 0; touched < victims.length && acc < budget; touched++) acc += used[victims[touched]!]!
  // Destinations: kept slabs, fullest first (lowest on ties), so they fill up and stay dense.
  const kept: number[] = []
  for (let s = 0; s < keep; s++) if (used[s]! < pool.slabFrames[s]!) kept.push(s)
  kept.sort((a, b) => used[b]! - used[a]! || a - b)

  // ---- pre-copy (a worker scanner's thread fills the smaller store) ------------------------
  // An automatic step that may wait for the store asks the thread to copy every live frame into
  // it, the frames this plan moves included (to their destinations), and moves nothing
  // meanwhile; once the store is filled, the next step makes every move without copying
  // (pool.preMoved) and shrinks at once. A move the thread could not make for it (the frame
  // was written since, or its destination taken) copies as before. Every page is
  // write-protected first, so a write after that moves its frame's write generation.
  const protect = (): void => {
    for (const space of spaces) space.revokeWriteAll()
  }
  let precopyWait = false
  let premove = false
  if (keep < nSlots && victims.length > 0 && pool.prefaulter !== null) {
    // Automatic steps and the host's idle call ask (a new request if none is on for this size); an explicit unbounded compact() only takes a filled store.
    const ready = budget === Number.POSITIVE_INFINITY || pool.prepareStore(keep, protect, () => planMoves(pool, victims, kept))
    if (ready && pool.spareReadyFor(keep)) {
      premove = true
      budget = Number.POSITIVE_INFINITY
      touched = victims.length
      shrinkNow = true
      waitForStore = false
    } else if (!ready && (!shrinkNow || waitForStore)) {
      // Nothing moves meanwhile (the moves would only be made twice); the host's idle call and a step past the wait move as before.
      precopyWait = true
      touched = 0
    }
  }

  let slot: Int32Array
  let reloc: Int32Array
  try {
    slot = new Int32Array(nSlots).fill(-1)
    reloc = new Int32Array(touched * fps)
  } catch (cause) {
    throw new OutOfMemory(`compaction plan does not fit: ${show(cause)}`)
  }

  // ---- move ------------------------------------------------------------------------------
  // Cannot fail from here on: only typed-array stores, frame copies and free-list pops.
  // Frames move: no write translation handed out may survive.
  if (touched > 0) pool.revokeWrites()
  let k = 0 // current destination slab in `kept`
  let moved = 0
  const observer = pool.observer
  for (let v = 0; v < touched; v++) {
    const s = victims[v]!
    slot[s] = v
    const base = s * fps
    const end = base + pool.slabFrames[s]!
    for (let f = base; f < end && moved < budget; f++) {
      if (refcount[f] === 0 || (flags[f]! & FRAME_PINNED) !== 0) continue
      let to = -1
      while (to < 0 && k < kept.length) {
        to = pool.allocFrom(kept[k]!)
        if (to < 0) k++
      }
      if (to < 0) break // the plan guarantees room; stop rather than corrupt if it is wrong
      if (!premove || !pool.preMoved(f, to)) pool.copy(f, to)
      refcount[to] = refcount[f]!
      flags[to] = flags[f]!
      pool.entry[to] = pool.entry[f]!
      // The table entry follows before `f`'s metadata is cleared.
      if ((flags[f]! & FRAME_KSM) !== 0 && observer !== null) observer.frameMoved(f, to)
      refcount[f] = 0
      pool.free(f)
      reloc[(v << shift) + (f - base)] = to
      moved++
    }
  }

  // ---- one sweep over every page table ---------------------------------------------------
  if (moved > 0) {
    const mask = pool.slabMask
    let rewritten = 0
    let swept = 0
    for (const space of spaces) {
      const n = space.pages
      const before = rewritten
      swept += n
      for (let i = 0; i < n; i++) {
        const f = space.frameAt(i)
        const v = slot[f >>> shift]!
        if (v < 0) continue
        const to = reloc[(v << shift) + (f & mask)]!
        if (to !== 0) {
          space.moveFrame(i, to)
          rewritten++
        }
      }
      if (rewritten !== before) space.invalidate()
    }
    report.pagesRewritten = rewritten
    report.pagesSwept = swept
  }

  // ---- shrink the store once the slabs above `keep` are empty -------------------------------
  let shrinkDeferred = false
  if (keep < nSlots) {
    let empty = true
    for (let s = keep; s < nSlots && empty; s++) empty = used[s] === 0
    // The shrink copies every live frame: an automatic step leaves it to a later turn, so a host
    // that frees and reallocates in one burst (dispose a fork, fork again) does not pay it each time.
    // With a worker scanner, its thread fills the smaller store meanwhile (pool.prepareStore).
    if (precopyWait) shrinkDeferred = true
    else if (empty && !shrinkNow) {
      shrinkDeferred = true
      pool.prepareStore(keep, protect)
    } else if (empty && waitForStore && !pool.prepareStore(keep, protect)) shrinkDeferred = true
    else if (empty) {
      report.bytesReleased += pool.shrink(keep)
      report.slabsReleased += nSlots - pool.slabCount
    }
  }
  // Frames pre-moved for a shrink that did not come (a move found no room) are in the spare only: bring them back.
  pool.settlePremoved()

  report.framesMoved = moved
  report.bytesMoved = moved * pool.pageSize
  report.framesRemaining = Math.max(0, toMove - moved)
  // A step that could move and moved nothing cannot make progress (e.g. a frame in use with no
  // PTE): report done rather than invite endless retries.
  report.done = !shrinkDeferred && (report.framesRemaining === 0 || (moved === 0 && budget > 0))
  report.ms = nowMillis() - t0
  return report
}

/**
 * The moves a step with no budget would make: the victims' live frames in the move loop's order,
 * each to the free frame allocFrom would give it (the kept slabs' free lists in order), as
 * (from, to) pairs in a SharedArrayBuffer for the thread.
 */
function planMoves(pool: FramePool, victims: readonly number[], kept: readonly number[]): Int32Array {
  const fps = pool.framesPerSlab
  let n = 0
  for (const s of victims) n += pool.slabUsed[s]!
  const dest = new Int32Array(n)
  let d = 0
  for (let k = 0; k < kept.length && d < n; k++) d += pool.freeFramesOf(kept[k]!, dest, d, n - d)
  const tmp = new Int32Array(2 * d)
  let i = 0
  for (const s of victims) {
    const base = s * fps
    for (let f = base; f < base + pool.slabFrames[s]! && i < d; f++) {
      if (pool.refcount[f] === 0 || (pool.flags[f]! & FRAME_PINNED) !== 0) continue
      tmp[2 * i] = f
      tmp[2 * i + 1] = dest[i]!
      i++
    }
  }
  const pairs = new Int32Array(new SharedArrayBuffer(8 * i))
  pairs.set(tmp.subarray(0, 2 * i))
  return pairs
}

/** Any FRAME_PINNED frame in [base, base + n)? */
function hasPinned(flags: Uint8Array, base: number, n: number): boolean {
  for (let f = base; f < base + n; f++) if ((flags[f]! & FRAME_PINNED) !== 0) return true
  return false
}

/**
 * The automatic compaction policy (engine option `autoCompact`, tunable with
 * `engine.setAutoCompact`). After a call that can free frames (merge, unmerge, discard,
 * dispose, unmergeAll, a scanner pass) the engine runs one budgeted compaction step when
 * enough frames are free. Every field is optional; `autoCompact: false` is `{ enabled: false }`.
 */
export interface AutoCompactOptions {
  /** Compact automatically. @default true */
  readonly enabled?: boolean
  /** Compact only when at least this many frames are free. @default two slabs' worth (512 frames with 4 KiB pages and 1 MiB slabs) */
  readonly minFreeFrames?: number
  /** ...and when free frames are at least this fraction of the frames reserved (0..1). @default 0.125 */
  readonly minFreeRatio?: number
  /** Most frames one automatic step moves; bounds its pause (empty slabs are released regardless). @default 1024 */
  readonly budgetPages?: number
  /**
   * When an automatic step stops on its budget, continue with further steps on later
   * event-loop turns (the platform's deferred step; never keeps a Node process alive) until done,
   * so a host gets its memory back without calling anything, in pauses of at most
   * `budgetPages` moves. `false`: continue only at the next trigger or engine.maybeCompact().
   * @default true
   */
  readonly background?: boolean
}

/** The policy as in force: every field resolved. */
export interface AutoCompactSettings {
  readonly enabled: boolean
  readonly minFreeFrames: number
  readonly minFreeRatio: number
  readonly budgetPages: number
  readonly background: boolean
}

/** Default budget of one automatic step, in frames (pages) moved. */
export const DEFAULT_COMPACT_BUDGET_PAGES = 1024

/** Compaction since the engine was made, for engine.memory(). */
export interface CompactionTotals {
  /** Compaction steps run (explicit and automatic). */
  readonly runs: number
  /** Of which automatic (including background continuations). */
  readonly autoRuns: number
  readonly framesMoved: number
  readonly pagesRewritten: number
  readonly slabsReleased: number
  /** Bytes the store shrank by, in total: memory handed back to the runtime. */
  readonly bytesReleased: number
  /** Longest single step, in milliseconds. */
  readonly longestMs: number
}

const AUTO_COMPACT_KEYS = ["enabled", "minFreeFrames", "minFreeRatio", "budgetPages", "background"] as const

/** The argument of engine.compact(): `{ budgetPages? }`, read once. Returns the budget. */
export function readCompactOptions(options: unknown): number {
  if (options === undefined) return Number.POSITIVE_INFINITY
  if (typeof options !== "object" || options === null) throw new InvalidArgument("options must be an object { budgetPages? }")
  const o = readOptions("compact()", options, ["budgetPages"])
  return checkBudget("budgetPages", o["budgetPages"] ?? Number.POSITIVE_INFINITY)
}

function checkBudget(name: string, value: unknown): number {
  if (value === Number.POSITIVE_INFINITY) return value
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgument(`${name} must be a non-negative integer or Infinity, got ${show(value)}`)
  }
  return value
}

/** @internal Runs compaction for one engine: explicit steps, the automatic policy, totals. */
export class Compactor {
  readonly #pool: FramePool
  readonly #spaces: () => Iterable<PagedSpace>
  #settings: AutoCompactSettings
  #totals = { runs: 0, autoRuns: 0, framesMoved: 0, pagesRewritten: 0, slabsReleased: 0, bytesReleased: 0, longestMs: 0 }
  /** The last automatic step stopped on its budget: the next trigger continues regardless of frees. */
  #pending = false
  /** pool.frees after the last automatic attempt: a new attempt waits for a slab's worth of frees. */
  #freesAtLast = 0
  /** A background continuation is scheduled. */
  #scheduled = false
  /** When the background continuation began waiting for a prefaulted store (-1: not waiting). */
  #waitSince = -1

  constructor(pool: FramePool, spaces: () => Iterable<PagedSpace>, options: unknown) {
    this.#pool = pool
    this.#spaces = spaces
    this.#settings = { enabled: true, minFreeFrames: 2 * pool.framesPerSlab, minFreeRatio: 0.125, budgetPages: DEFAULT_COMPACT_BUDGET_PAGES, background: true }
    this.configure(options ?? true)
  }

  get settings(): AutoCompactSettings {
    return this.#settings
  }

  get totals(): CompactionTotals {
    return { ...this.#totals }
  }

  /** Validate all of `options` (read once), then apply them (a bad field changes nothing). */
  configure(input: unknown): void {
    if (typeof input === "boolean") {
      this.#settings = { ...this.#settings, enabled: input }
      return
    }
    if (typeof input !== "object" || input === null) {
      throw new InvalidArgument("autoCompact must be a boolean or { enabled?, minFreeFrames?, minFreeRatio?, budgetPages?, background? }")
    }
    const options = readOptions("autoCompact", input, AUTO_COMPACT_KEYS) as AutoCompactOptions
    const cur = this.#settings
    const enabled = checkBool("autoCompact.enabled", options.enabled ?? cur.enabled)
    const minFreeFrames = options.minFreeFrames ?? cur.minFreeFrames
    if (typeof minFreeFrames !== "number" || !Number.isSafeInteger(minFreeFrames) || minFreeFrames < 0) {
      throw new InvalidArgument(`autoCompact.minFreeFrames must be a non-negative integer, got ${show(minFreeFrames)}`)
    }
    const minFreeRatio = options.minFreeRatio ?? cur.minFreeRatio
    if (typeof minFreeRatio !== "number" || !(minFreeRatio >= 0 && minFreeRatio <= 1)) {
      throw new InvalidArgument(`autoCompact.minFreeRatio must be a number from 0 to 1, got ${show(minFreeRatio)}`)
    }
    const budgetPages = checkBudget("autoCompact.budgetPages", options.budgetPages ?? cur.budgetPages)
    if (budgetPages === 0) throw new InvalidArgument("autoCompact.budgetPages must be at least 1")
    const background = checkBool("autoCompact.background", options.background ?? cur.background)
    this.#settings = { enabled, minFreeFrames, minFreeRatio, budgetPages, background }
  }

  /** One explicit step of at most `budgetPages` frames moved (Infinity: until done). */
  compact(budgetPages: unknown = Number.POSITIVE_INFINITY): CompactReport {
    const budget = checkBudget("budgetPages", budgetPages)
    const r = this.#step(budget)
    this.#pending = !r.done
    return r
  }

  /**
   * The automatic policy's check: run one budgeted step if enabled and enough frames are
   * free, else return null. O(1) when it declines. A step that cannot get memory for its plan
   * is skipped (the call that triggered it already succeeded); other errors propagate.
   * `deferred`: the shrink may run now (the host's idle call, or the background continuation);
   * `continuation`: the background continuation, which waits a while for a prefaulted store.
   */
  maybeCompact(deferred = false, continuation = false): CompactReport | null {
    const st = this.#settings
    const pool = this.#pool
    // Declined inside a user callback (a merge holds frame ids) rather than throwing Busy.
    if (!st.enabled || pool.busy !== 0) return null
    const free = pool.framesFree
    if (free < st.minFreeFrames || free < st.minFreeRatio * (free + pool.framesInUse + 1)) return null
    // Nothing freed since the last attempt that finished: the layout cannot have improved.
    if (!this.#pending && pool.frees - this.#freesAtLast < pool.framesPerSlab) return null
    let r: CompactReport
    const now = nowMillis()
    if (continuation && this.#waitSince < 0) this.#waitSince = now
    // Still filling off this thread, and within the wait: look again later without planning a step.
    if (continuation && pool.prefaulting && now - this.#waitSince < PREFAULT_WAIT_MS) {
      this.#schedule(true)
      return null
    }
    try {
      // The shrink itself waits for a later turn when one is scheduled below (background), and
      // there for its smaller store to be prefaulted off this thread (worker scanner), for a while.
      r = this.#step(st.budgetPages, !st.background || deferred, continuation && now - this.#waitSince < PREFAULT_WAIT_MS)
    } catch (e) {
      if (e instanceof SksmError && e._tag === "OutOfMemory") return null
      throw e
    } finally {
      this.#freesAtLast = pool.frees
    }
    this.#totals.autoRuns++
    this.#pending = !r.done
    if (this.#pending && st.background) this.#schedule(pool.prefaulting)
    else if (!this.#pending) this.#waitSince = -1
    return r
  }

  /** Schedule the background continuation (once): on the next turn, or in a few ms while a store is being filled off this thread. */
  #schedule(filling: boolean): void {
    if (this.#scheduled) return
    this.#scheduled = true
    // A weak reference: an engine dropped before the turn comes is not kept alive by it.
    const self = new WeakRef(this)
    const next = (): void => {
      const c = self.deref()
      if (c === undefined) return
      c.#scheduled = false
      c.maybeCompact(true, true)
    }
    // Each look wakes the host's thread: every 5 ms, not every turn (the thread copies ~1 MiB per job).
    if (filling) timer(next, FILL_POLL_MS)
    else defer(next)
  }

  #step(budget: number, shrinkNow = true, waitForStore = false): CompactReport {
    const r = compactStep(this.#pool, this.#spaces(), budget, shrinkNow, waitForStore)
    const t = this.#totals
    t.runs++
    t.framesMoved += r.framesMoved
    t.pagesRewritten += r.pagesRewritten
    t.slabsReleased += r.slabsReleased
    t.bytesReleased += r.bytesReleased
    if (r.ms > t.longestMs) t.longestMs = r.ms
    return r
  }
}
