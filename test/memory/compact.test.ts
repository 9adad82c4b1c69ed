/**
 * Frame compaction (src/memory/compact.ts): explicit and automatic compaction move live frames
 * down and shrink the store, never move pinned frames or the zero frame, stay within their
 * budgets, change nothing when refused, and keep memory() and the profit figures honest.
 */
import { randomFillSync } from "node:crypto"
import { describe, expect, it } from "vitest"
import type { AddressSpace } from "../helpers/internals.ts"
import { Engine, type EngineOptions } from "../helpers/internals.ts"
import { OutOfMemory } from "../../src/errors.ts"
import { FRAME_KSM, ZERO_FRAME } from "../../src/memory/frames.ts"
import { headroomBytes } from "../helpers/pool.ts"
import { checkCounters } from "../helpers/recount.ts"

const PS = 4096
const FPS = 256 // frames per 1 MiB slab

/** Everything observable, for "a failed call changes nothing". */
function observe(engine: Engine): unknown {
  const m = engine.memory()
  return {
    contents: engine.spaces().map((s) => Buffer.from(s.read(0, s.size)).toString("base64")),
    ptes: engine.spaces().map((s) => Array.from(s.frameTable())),
    stats: engine.stats(),
    memory: { ...m, compaction: undefined },
    slabs: engine.pool.slabCount,
    free: Array.from(engine.pool.freeFrames()).sort((a, b) => a - b),
  }
}

/**
 * Bytes of the listed slabs (frames in use, free frames, the zero frame): what the engine may
 * hold resident. bytesReserved adds the store's headroom, never written (a store above 4 MiB is
 * at least 32 MiB), so on these small engines the slabs, not the store, show what compaction returns.
 */
function listedBytes(engine: Engine): number {
  const m = engine.memory()
  return m.bytesInUse + m.bytesFree + PS
}

/** Byte-exact comparison without vitest's element-wise diff (slow on MiB arrays). */
function same(a: Uint8Array, b: Uint8Array): void {
  expect(Buffer.compare(a, b), "contents differ").toBe(0)
}

/** Fill page `p` with content `c` (same c, same bytes). */
function page(space: AddressSpace, p: number, c: number): void {
  space.fill(p * PS, PS, 0x40 + (c & 0x3f))
  space.writeU32(p * PS + 16, c)
}

describe("compaction", () => {
  it("W: merging a half-duplicate 256 MiB space and compacting returns >= 90% of the merged-away bytes", () => {
    const engine = new Engine({ pageSize: PS, autoCompact: false })
    const pages = (256 << 20) / PS
    const half = pages / 2
    const a = engine.createSpace({ size: pages * PS, name: "w" })
    // First half: 16 distinct contents repeated.
    const dup = Buffer.alloc(16 * PS)
    for (let c = 0; c < 16; c++) dup.fill(c + 1, c * PS, (c + 1) * PS)
    for (let p = 0; p < half; p += 16) a.write(p * PS, dup)
    // Second half: random unique pages.
    const chunk = Buffer.alloc(1 << 20)
    for (let p = half; p < pages; p += chunk.length / PS) {
      randomFillSync(chunk)
      a.write(p * PS, chunk)
    }
    const before = engine.memory().bytesReserved
    a.merge()
    const st = engine.stats()
    const mergedAway = (st.pagesSharing + st.ksmZeroPages) * PS
    // 16 contents x 2048 copies, max_page_sharing 256: 8 shared frames per content.
    expect(mergedAway).toBe((half - 16 * 8) * PS)
    expect(st.profitReturned).toBe(0) // nothing returned yet: the frames sit free in slabs
    expect(engine.memory().bytesReserved).toBe(before)
    const r = engine.compact()
    expect(r.done).toBe(true)
    const after = engine.memory()
    expect(before - after.bytesReserved).toBeGreaterThanOrEqual(0.9 * mergedAway)
    expect(r.bytesReleased).toBe(before - after.bytesReserved)
    expect(after.bytesFree).toBeLessThan(FPS * PS) // less than one slab left free
    expect(engine.stats().profitReturned).toBeGreaterThanOrEqual(0.99 * mergedAway)
    // Spot-check contents.
    expect(a.readU8(5 * PS + 7)).toBe(6)
    expect(a.readU8((half - 1) * PS)).toBe(16)
  })

  it("moves live frames out of sparse slabs, rewrites every mapper (fork children too), table frames follow", () => {
    const engine = new Engine({ pageSize: PS, autoCompact: false })
    const n = 8 * FPS
    const a = engine.createSpace({ size: n * PS, name: "a" })
    // Every 4th page unique, the rest 8 repeated contents: merging leaves every slab ~1/4 used.
    for (let p = 0; p < n; p++) page(a, p, p % 4 === 0 ? 1000 + p : p % 8)
    a.merge()
    const b = a.fork()
    b.writeU32(4 * PS, 7) // b gets a private copy of one page
    const ref = [a.read(0, a.size), b.read(0, b.size)]
    const slabsBefore = engine.memory().slabs
    const r = engine.compact()
    expect(r.framesMoved).toBeGreaterThan(0)
    expect(r.bytesMoved).toBe(r.framesMoved * PS)
    // a and b both map every moved frame (b was forked): rewrites cover both.
    expect(r.pagesRewritten).toBeGreaterThanOrEqual(2 * r.framesMoved - 1)
    expect(r.pagesSwept).toBe(2 * n)
    expect(engine.memory().slabs).toBeLessThan(slabsBefore)
    expect(engine.memory().slabs).toBe(Math.ceil((engine.memory().framesInUse + 1) / FPS))
    same(a.read(0, a.size), ref[0]!)
    same(b.read(0, b.size), ref[1]!)
    checkCounters(engine)
    // Merged frames stayed in the table at their new address: a new identical page joins them.
    const c = engine.createSpace({ size: PS })
    page(c, 0, 1000)
    expect(c.merge().merged).toBe(1)
    expect(c.frameAt(0)).toBe(a.frameAt(0))
    expect(engine.pool.flags[c.frameAt(0)]! & FRAME_KSM).toBe(FRAME_KSM)
    checkCounters(engine)
  })

  it("pinned frames never move and keep the store from shrinking below them; the zero frame never moves", () => {
    const engine = new Engine({ pageSize: PS, autoCompact: false })
    const a = engine.createSpace({ size: 4 * FPS * PS })
    for (let p = 0; p < 4 * FPS; p++) page(a, p, 5000 + p)
    const pinnedPage = 2 * FPS + 10
    a.pin(pinnedPage * PS, PS)
    const f = a.frameAt(pinnedPage)
    const slab = f >>> engine.pool.slabShift
    // Free every frame above the pinned one's slab and most below: the live frames would fit in fewer slabs.
    for (let p = 0; p < 4 * FPS; p++) {
      if (p === pinnedPage) continue
      if (a.frameAt(p) >>> engine.pool.slabShift > slab || p % 2 === 0) a.discard(p * PS, PS)
    }
    const r = engine.compact()
    expect(r.done).toBe(true)
    expect(a.frameAt(pinnedPage)).toBe(f)
    expect(engine.pool.slabCount).toBe(slab + 1) // shrunk down to the pinned frame's slab, not below
    expect(engine.pool.isZero(ZERO_FRAME)).toBe(true)
    expect(a.readU32(pinnedPage * PS + 16)).toBe(5000 + pinnedPage)
    // Unpinned, it may move: left alone at the top, it moves down and the store shrinks.
    a.unpin(pinnedPage * PS, PS)
    a.discard(0, pinnedPage * PS)
    a.discard((pinnedPage + 1) * PS, a.size - (pinnedPage + 1) * PS)
    engine.compact()
    expect(a.frameAt(pinnedPage)).not.toBe(f)
    expect(engine.pool.slabCount).toBe(1)
    expect(a.readU32(pinnedPage * PS + 16)).toBe(5000 + pinnedPage)
    const z = engine.createSpace({ size: PS })
    z.fill(0, PS, 0)
    z.merge()
    expect(z.frameAt(0)).toBe(ZERO_FRAME)
    checkCounters(engine)
  })

  it("budgeted steps each move at most the budget and end at the fewest slabs", () => {
    const engine = new Engine({ pageSize: PS, autoCompact: false })
    const n = 8 * FPS
    const a = engine.createSpace({ size: n * PS })
    for (let p = 0; p < n; p++) page(a, p, 9000 + p)
    for (let p = 0; p < n; p += 2) a.discard(p * PS, PS) // every slab half used
    const ref = a.read(0, a.size)
    // Expected moves: every live frame of the slabs above the fewest that can hold them all.
    const pool = engine.pool
    const live = engine.memory().framesInUse + 1
    const keep = Math.ceil(live / FPS)
    let expectMoves = 0
    for (let s = keep; s < pool.slabCount; s++) expectMoves += pool.slabUsed[s]!
    const reports = []
    for (let i = 0; i < 1000; i++) {
      const r = engine.compact({ budgetPages: 100 })
      reports.push(r)
      expect(r.framesMoved).toBeLessThanOrEqual(100)
      same(a.read(0, a.size), ref)
      checkCounters(engine)
      if (r.done) break
    }
    expect(reports.at(-1)!.done).toBe(true)
    expect(reports.length).toBeGreaterThan(2)
    const moved = reports.reduce((s, r) => s + r.framesMoved, 0)
    expect(moved).toBe(expectMoves)
    expect(moved).toBeGreaterThan(300)
    expect(pool.slabCount).toBe(keep)
    // The store was reallocated once, at the end, copying only live frames.
    expect(reports.filter((r) => r.slabsReleased > 0).length).toBe(1)
  })

  it("a compaction that cannot get memory for its plan changes nothing", () => {
    const engine = new Engine({ pageSize: PS, autoCompact: false })
    const a = engine.createSpace({ size: 4 * FPS * PS })
    for (let p = 0; p < 4 * FPS; p++) page(a, p, p)
    a.merge()
    for (let p = 0; p < 4 * FPS; p += 3) a.discard(p * PS, PS)
    const before = observe(engine)
    engine.pool.failpoint = (site) => {
      if (site === "compact") throw new OutOfMemory("injected")
    }
    expect(() => engine.compact()).toThrow(expect.objectContaining({ _tag: "OutOfMemory" }))
    expect(observe(engine)).toEqual(before)
    // The automatic policy swallows it: the call that triggered it already succeeded.
    engine.setAutoCompact({ enabled: true, minFreeFrames: 0, minFreeRatio: 0 })
    a.discard(PS, PS)
    engine.pool.failpoint = null
    expect(engine.compact().framesMoved).toBeGreaterThan(0)
    checkCounters(engine)
  })

  it("rejects bad budgets and bad policy options, changing nothing", () => {
    const engine = new Engine({ pageSize: PS })
    for (const b of [-1, 1.5, Number.NaN, "3"]) {
      expect(() => engine.compact({ budgetPages: b as number })).toThrow(expect.objectContaining({ _tag: "InvalidArgument" }))
    }
    const before = engine.autoCompact
    for (const o of [{ minFreeRatio: 2 }, { minFreeFrames: -1 }, { budgetPages: 0 }, { enabled: "yes" }, { background: 1 }, null, 3]) {
      expect(() => engine.setAutoCompact(o as never)).toThrow(expect.objectContaining({ _tag: "InvalidArgument" }))
    }
    expect(engine.autoCompact).toEqual(before)
    expect(() => new Engine({ autoCompact: { minFreeRatio: -0.1 } })).toThrow(expect.objectContaining({ _tag: "InvalidArgument" }))
  })
})

describe("automatic compaction", () => {
  function fragmented(opts: EngineOptions = {}): { engine: Engine; a: AddressSpace } {
    const engine = new Engine({ pageSize: PS, ...opts })
    const a = engine.createSpace({ size: 16 * FPS * PS })
    for (let p = 0; p < 16 * FPS; p++) page(a, p, p % 2 === 0 ? 100000 + p : p % 16)
    return { engine, a }
  }

  it("is on by default, with documented defaults", () => {
    const engine = new Engine({ pageSize: PS })
    expect(engine.autoCompact).toEqual({ enabled: true, minFreeFrames: 2 * FPS, minFreeRatio: 0.125, budgetPages: 1024, background: true })
  })

  it("runs after merge and returns the merged-away slabs, within its budget", () => {
    const { engine, a } = fragmented({ autoCompact: { budgetPages: 300, background: false } })
    const listed = listedBytes(engine)
    const store = engine.pool.bytes
    a.merge()
    const m = engine.memory()
    expect(m.compaction.autoRuns).toBe(1)
    expect(m.compaction.framesMoved).toBeLessThanOrEqual(300)
    expect(m.compaction.framesMoved).toBeGreaterThan(0)
    // The store is reallocated once, when the last frame above its new top has moved.
    expect(listedBytes(engine)).toBe(listed)
    expect(engine.pool.bytes).toBe(store)
    // The step stopped on its budget: the next trigger continues even without new frees.
    engine.maybeCompact()
    expect(engine.memory().compaction.autoRuns).toBe(2)
    while (engine.maybeCompact() !== null) {
      /* drain */
    }
    expect(listedBytes(engine)).toBeLessThan(listed)
    expect(engine.pool.bytes).not.toBe(store)
    expect(engine.memory().slabs).toBe(Math.ceil((engine.memory().framesInUse + 1) / FPS))
    // Done and nothing freed since: declines in O(1).
    expect(engine.maybeCompact()).toBeNull()
    checkCounters(engine)
  })

  it("continues in the background (setImmediate) until done, one budget per turn", async () => {
    const { engine, a } = fragmented({ autoCompact: { budgetPages: 300 } })
    const ref = a.read(0, a.size)
    a.merge()
    expect(engine.memory().compaction.autoRuns).toBe(1)
    const minSlabs = (): number => Math.ceil((engine.memory().framesInUse + 1) / FPS)
    expect(engine.memory().slabs).toBeGreaterThan(minSlabs())
    for (let turn = 0; turn < 100 && engine.memory().slabs > minSlabs(); turn++) await new Promise((r) => setImmediate(r))
    const m = engine.memory()
    expect(m.slabs).toBe(minSlabs())
    expect(m.compaction.autoRuns).toBeGreaterThan(2)
    expect(m.compaction.framesMoved).toBeLessThanOrEqual(300 * m.compaction.autoRuns)
    same(a.read(0, a.size), ref)
    checkCounters(engine)
  })

  it("with background: false, waits for the next trigger", async () => {
    const { engine, a } = fragmented({ autoCompact: { budgetPages: 300, background: false } })
    a.merge()
    for (let turn = 0; turn < 5; turn++) await new Promise((r) => setImmediate(r))
    expect(engine.memory().compaction.autoRuns).toBe(1)
  })

  it("runs after discard and dispose; the final shrink happens on a later turn", async () => {
    const engine = new Engine({ pageSize: PS })
    const a = engine.createSpace({ size: 8 * FPS * PS })
    a.fill(0, a.size, 1)
    const b = engine.createSpace({ size: 8 * FPS * PS })
    b.fill(0, b.size, 2)
    const full = listedBytes(engine)
    a.discard(0, a.size)
    // b's frames sit above a's: they move down in budgeted steps, then the store shrinks.
    expect(engine.memory().compaction.autoRuns).toBe(1)
    while (engine.maybeCompact() !== null) {
      /* drain */
    }
    expect(listedBytes(engine)).toBeLessThanOrEqual(full - 8 * FPS * PS)
    const runs = engine.memory().compaction.autoRuns
    b.dispose()
    // The shrink after dispose waits for a later turn (a burst of frees and allocations would pay it each time).
    expect(engine.memory().compaction.autoRuns).toBe(runs + 1)
    expect(engine.memory().slabs).toBeGreaterThan(1)
    for (let turn = 0; turn < 10 && engine.memory().slabs > 1; turn++) await new Promise((r) => setImmediate(r))
    expect(engine.memory().slabs).toBe(1)
  })

  it("can be turned off and tuned", () => {
    const { engine, a } = fragmented({ autoCompact: false })
    const listed = listedBytes(engine)
    a.merge()
    expect(listedBytes(engine)).toBe(listed)
    expect(engine.maybeCompact()).toBeNull()
    // Thresholds: a ratio above the free fraction declines.
    engine.setAutoCompact({ enabled: true, minFreeRatio: 0.9 })
    expect(engine.maybeCompact()).toBeNull()
    engine.setAutoCompact({ minFreeRatio: 0.1, minFreeFrames: 10 * FPS * 16 })
    expect(engine.maybeCompact()).toBeNull()
    engine.setAutoCompact({ minFreeFrames: 0, budgetPages: Number.POSITIVE_INFINITY })
    const r = engine.maybeCompact()
    expect(r?.done).toBe(true)
    expect(listedBytes(engine)).toBeLessThan(0.6 * listed)
  })
})

describe("accounting", () => {
  it("memory() adds up to what the engine holds; profitReturned follows compaction", () => {
    const engine = new Engine({ pageSize: PS, autoCompact: false })
    const a = engine.createSpace({ size: 4 * FPS * PS })
    for (let p = 0; p < 4 * FPS; p++) page(a, p, p < 2 * FPS ? p % 4 : p)
    const check = (): void => {
      const m = engine.memory()
      expect(m.bytesReserved).toBe(m.bytesInUse + m.bytesFree + PS + headroomBytes(engine.pool))
      expect(m.bytesInUse).toBe(m.framesInUse * PS)
      expect(m.bytesFree).toBe(m.framesFree * PS)
      expect(m.bytesTotal).toBe(m.bytesReserved + m.metadataBytes)
      expect(m.bytesReserved).toBe(engine.pool.bytes.byteLength)
      expect(m.slabs).toBe(engine.pool.slabCount)
    }
    check()
    a.merge()
    check()
    const st = engine.stats()
    expect(st.generalProfit).toBe((st.pagesSharing + st.ksmZeroPages) * PS - engine.core.metadataBytes)
    expect(st.profitReturned).toBe(0)
    engine.compact()
    check()
    const st2 = engine.stats()
    expect(st2.generalProfit).toBe(st.generalProfit) // a claim about frames: compaction does not change it
    expect(st2.profitReturned).toBe((st2.pagesSharing + st2.ksmZeroPages) * PS - engine.memory().bytesFree)
    // Less than one slab of merged-away frames is still held (slab 0, with the zero frame, stays).
    expect(st2.profitReturned).toBeGreaterThan((st2.pagesSharing + st2.ksmZeroPages - FPS) * PS)
    expect(engine.memory().compaction).toMatchObject({ runs: 1, autoRuns: 0 })
  })

  it("the allocator fills the fullest non-full slab first, so sparse slabs drain", () => {
    const engine = new Engine({ pageSize: PS, autoCompact: false })
    const a = engine.createSpace({ size: 3 * FPS * PS })
    a.fill(0, a.size, 1)
    const slabOf = (p: number): number => a.frameAt(p) >>> engine.pool.slabShift
    // Slab of page 10: nearly full after one discard; slab of page 2*FPS+10: half empty.
    const dense = slabOf(10)
    const sparse = slabOf(2 * FPS + 10)
    expect(dense).not.toBe(sparse)
    a.discard(10 * PS, PS)
    for (let p = 0; p < 3 * FPS; p++) if (slabOf(p) === sparse && p % 2 === 0) a.discard(p * PS, PS)
    a.discard(2 * FPS * PS + PS, PS) // make sure the sparse slab has more holes
    const b = engine.createSpace({ size: PS })
    b.fill(0, PS, 2)
    expect(b.frameAt(0) >>> engine.pool.slabShift).toBe(dense)
  })

  it("the store shrinks when emptied and grows back, so frame ids stay dense", async () => {
    const engine = new Engine({ pageSize: PS })
    const a = engine.createSpace({ size: 4 * FPS * PS })
    a.fill(0, a.size, 1)
    const slabs = engine.pool.slabCount
    a.discard(0, a.size)
    await new Promise((r) => setImmediate(r))
    expect(engine.memory().slabs).toBe(1)
    a.fill(0, a.size, 3)
    expect(engine.pool.slabCount).toBeLessThanOrEqual(slabs)
    for (let p = 0; p < a.pages; p++) expect(a.frameAt(p)).toBeLessThan(engine.pool.slabCount * FPS)
    expect(a.readU8(a.size - 1)).toBe(3)
    checkCounters(engine)
  })
})
