/**
 * Model-based test of frame compaction: explicit compaction steps with random budgets, and the
 * automatic policy at hair-trigger thresholds, interleaved with write / fill / merge / unmerge /
 * fork / discard / pin / unpin / dispose over several spaces. After every step:
 * - every space reads exactly as a naive reference (one Uint8Array per space);
 * - engine counters equal a from-scratch recount (test/helpers/recount.ts: refcount == PTEs
 *   mapping the frame, table entries, pagesShared/pagesSharing/pagesUnique/ksmZeroPages), and
 *   the pool's slab books equal a recount written here (per-slab use, free list, bytes);
 * - every pinned page still maps the frame it had when it was pinned, in a live slab.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { AddressSpace } from "../helpers/internals.ts"
import { Engine } from "../helpers/internals.ts"
import { SksmError } from "../../src/errors.ts"
import { FRAME_KSM, FRAME_PINNED, ZERO_FRAME } from "../../src/memory/frames.ts"
import { PAGE_KSM_ZERO, PAGE_MERGED } from "../../src/memory/flags.ts"
import { checkCounters } from "../helpers/recount.ts"

const PS = 512
const FPS = 4 // frames per slab: small, so slabs fill, empty and get released constantly

type Op =
  | { k: "create"; pages: number }
  | { k: "write"; s: number; page: number; n: number; byte: number; unique: boolean }
  | { k: "writeU32"; s: number; addr: number; value: number }
  | { k: "merge"; s: number; page: number; n: number }
  | { k: "unmerge"; s: number; page: number; n: number }
  | { k: "fork"; s: number }
  | { k: "discard"; s: number; page: number; n: number }
  | { k: "pin"; s: number; page: number; n: number }
  | { k: "unpin"; s: number; page: number; n: number }
  | { k: "dispose"; s: number }
  | { k: "compact"; budget: number }
  | { k: "auto"; budget: number }

const idx = fc.nat(1000)
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ k: fc.constant("create" as const), pages: fc.integer({ min: 1, max: 24 }) }) },
  {
    weight: 8,
    arbitrary: fc.record({ k: fc.constant("write" as const), s: idx, page: fc.nat(30), n: fc.integer({ min: 1, max: 8 }), byte: fc.constantFrom(0, 1, 2, 3), unique: fc.boolean() }),
  },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("writeU32" as const), s: idx, addr: fc.nat(16000), value: fc.nat() }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant("merge" as const), s: idx, page: fc.nat(30), n: fc.integer({ min: 0, max: 24 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("unmerge" as const), s: idx, page: fc.nat(30), n: fc.integer({ min: 0, max: 24 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("fork" as const), s: idx }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant("discard" as const), s: idx, page: fc.nat(30), n: fc.integer({ min: 0, max: 8 }) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant("pin" as const), s: idx, page: fc.nat(30), n: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("unpin" as const), s: idx, page: fc.nat(30), n: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("dispose" as const), s: idx }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant("compact" as const), budget: fc.oneof(fc.integer({ min: 0, max: 12 }), fc.constant(Number.POSITIVE_INFINITY)) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("auto" as const), budget: fc.integer({ min: 1, max: 6 }) }) },
)

interface Sp {
  space: AddressSpace
  ref: Uint8Array
  pins: Int32Array
  /** Frame each pinned page mapped when its pin count went 0 -> 1. */
  pinnedFrame: Int32Array
}

interface World {
  engine: Engine
  spaces: Sp[]
  unique: number
}

function range(sp: Sp, page: number, n: number): [number, number] {
  const p0 = page % sp.space.pages
  return [p0, Math.min(n, sp.space.pages - p0)]
}

function step(w: World, op: Op): void {
  const { engine } = w
  if (op.k === "create") {
    const space = engine.createSpace({ size: op.pages * PS })
    w.spaces.push({ space, ref: new Uint8Array(space.size), pins: new Int32Array(op.pages), pinnedFrame: new Int32Array(op.pages).fill(-1) })
    return
  }
  if (op.k === "compact") {
    const before = engine.memory().framesInUse
    const r = engine.compact({ budgetPages: op.budget })
    expect(r.framesMoved).toBeLessThanOrEqual(op.budget)
    expect(r.bytesReleased).toBe(r.slabsReleased * FPS * PS)
    expect(r.pagesRewritten).toBeGreaterThanOrEqual(r.framesMoved)
    expect(engine.memory().framesInUse).toBe(before)
    if (op.budget === Number.POSITIVE_INFINITY) {
      expect(r.done).toBe(true)
      checkCompacted(engine)
    }
    return
  }
  if (op.k === "auto") {
    engine.setAutoCompact({ budgetPages: op.budget })
    return
  }
  if (w.spaces.length === 0) return
  const sp = w.spaces[op.s % w.spaces.length]!
  const { space, ref, pins } = sp
  switch (op.k) {
    case "write": {
      const [p0, n] = range(sp, op.page, op.n)
      const bytes = new Uint8Array(n * PS).fill(op.byte)
      if (op.unique) for (let i = 0; i < n; i++) new DataView(bytes.buffer).setUint32(i * PS + 4, w.unique++, true)
      space.write(p0 * PS, bytes)
      ref.set(bytes, p0 * PS)
      return
    }
    case "writeU32": {
      const a = op.addr % (space.size - 3)
      space.writeU32(a, op.value)
      new DataView(ref.buffer).setUint32(a, op.value, true)
      return
    }
    case "merge": {
      const [p0, n] = range(sp, op.page, op.n)
      space.merge(p0 * PS, n * PS)
      return
    }
    case "unmerge": {
      const [p0, n] = range(sp, op.page, op.n)
      space.unmerge(p0 * PS, n * PS)
      return
    }
    case "fork": {
      const child = space.fork()
      w.spaces.push({ space: child, ref: ref.slice(), pins: new Int32Array(space.pages), pinnedFrame: new Int32Array(space.pages).fill(-1) })
      return
    }
    case "discard": {
      const [p0, n] = range(sp, op.page, op.n)
      if (pins.subarray(p0, p0 + n).some((c) => c > 0)) {
        expect(() => space.discard(p0 * PS, n * PS)).toThrow(expect.objectContaining({ _tag: "PinnedPage" }))
        return
      }
      space.discard(p0 * PS, n * PS)
      ref.fill(0, p0 * PS, (p0 + n) * PS)
      return
    }
    case "pin": {
      const [p0, n] = range(sp, op.page, op.n)
      space.pin(p0 * PS, n * PS)
      for (let p = p0; p < p0 + n; p++) {
        if (pins[p]!++ === 0) sp.pinnedFrame[p] = space.pte[p]!
      }
      return
    }
    case "unpin": {
      const [p0, n] = range(sp, op.page, op.n)
      if (pins.subarray(p0, p0 + n).some((c) => c === 0)) {
        expect(() => space.unpin(p0 * PS, n * PS)).toThrow(expect.objectContaining({ _tag: "InvalidArgument" }))
        return
      }
      space.unpin(p0 * PS, n * PS)
      for (let p = p0; p < p0 + n; p++) if (--pins[p]! === 0) sp.pinnedFrame[p] = -1
      return
    }
    case "dispose": {
      space.dispose()
      w.spaces.splice(w.spaces.indexOf(sp), 1)
      return
    }
  }
}

/**
 * After a full compaction the store holds the fewest slabs it can: the live frames (and every
 * pinned frame, which never moves) would not fit in one slab fewer.
 */
function checkCompacted(engine: Engine): void {
  const pool = engine.pool
  const n = pool.slabCount
  let topPinned = 0
  for (let f = 0; f < n * FPS; f++) if ((pool.flags[f]! & FRAME_PINNED) !== 0) topPinned = f >>> pool.slabShift
  const live = engine.memory().framesInUse + 1
  expect(n, "slabs after a full compaction").toBe(Math.max(topPinned + 1, Math.ceil(live / FPS)))
}

/** The pool's own books, recounted from the page tables and the free list. */
function recountPool(w: World): void {
  const pool = w.engine.pool
  const nSlabs = pool.slabCount
  const mappedPerSlab = new Int32Array(nSlabs)
  const mapped = new Set<number>()
  for (const { space } of w.spaces) {
    for (let p = 0; p < space.pages; p++) {
      const f = space.pte[p]!
      if (f === ZERO_FRAME) continue
      expect(f >>> pool.slabShift, `${space.name}[${p}] maps frame ${f} beyond the store`).toBeLessThan(nSlabs)
      if (!mapped.has(f)) {
        mapped.add(f)
        mappedPerSlab[f >>> pool.slabShift]!++
      }
    }
  }
  mappedPerSlab[0]!++ // the zero frame
  const free = pool.freeFrames()
  const freeSet = new Set(free)
  expect(freeSet.size, "a frame is on the free list twice").toBe(free.length)
  let slabs = 0
  for (let s = 0; s < nSlabs; s++) {
    slabs++
    expect(pool.slabUsed[s], `slab ${s} use`).toBe(mappedPerSlab[s])
  }
  for (const f of free) {
    expect(mapped.has(f), `free frame ${f} is mapped`).toBe(false)
    expect(f >>> pool.slabShift, `free frame ${f} beyond the store`).toBeLessThan(nSlabs)
    expect(pool.refcount[f]).toBe(0)
  }
  const m = w.engine.memory()
  expect(m.slabs).toBe(slabs)
  expect(m.framesFree).toBe(free.length)
  expect(m.framesInUse).toBe(mapped.size)
  expect(m.bytesReserved).toBe(slabs * FPS * PS)
  expect(m.bytesReserved).toBe(m.bytesInUse + m.bytesFree + PS)
  // Honest profit: merged-away bytes minus the free bytes still held.
  const st = w.engine.stats()
  expect(st.profitReturned).toBe(Math.max(0, (st.pagesSharing + st.ksmZeroPages) * PS - m.bytesFree))
}

/** Independent recount of the sharing counters (cross-checks test/helpers/recount.ts). */
function recountSharing(w: World): void {
  const pool = w.engine.pool
  const mergedMappers = new Map<number, number>()
  let zero = 0
  for (const { space } of w.spaces) {
    for (let p = 0; p < space.pages; p++) {
      const fl = space.pflags[p]!
      if ((fl & PAGE_KSM_ZERO) !== 0) zero++
      if ((fl & PAGE_MERGED) !== 0) mergedMappers.set(space.pte[p]!, (mergedMappers.get(space.pte[p]!) ?? 0) + 1)
    }
  }
  let shared = 0
  let sharing = 0
  let unique = 0
  for (const [f, m] of mergedMappers) {
    expect(pool.flags[f]! & FRAME_KSM).toBe(FRAME_KSM)
    // FRAME_SHARED (4): the frame has had a partner.
    if ((pool.flags[f]! & 4) !== 0) {
      shared++
      sharing += m - 1
    } else unique++
  }
  const st = w.engine.stats()
  expect({ pagesShared: st.pagesShared, pagesSharing: st.pagesSharing, pagesUnique: st.pagesUnique, ksmZeroPages: st.ksmZeroPages }).toEqual({
    pagesShared: shared,
    pagesSharing: sharing,
    pagesUnique: unique,
    ksmZeroPages: zero,
  })
}

function checkWorld(w: World): void {
  for (const sp of w.spaces) {
    const got = sp.space.read(0, sp.space.size)
    if (Buffer.compare(got, sp.ref) !== 0) {
      const i = got.findIndex((b, k) => b !== sp.ref[k])
      throw new Error(`${sp.space.name}: byte ${i} is ${got[i]}, reference ${sp.ref[i]}`)
    }
    for (let p = 0; p < sp.space.pages; p++) {
      if (sp.pins[p]! > 0) {
        const f = sp.pinnedFrame[p]!
        if (sp.space.pte[p] !== f) throw new Error(`${sp.space.name}[${p}] is pinned at frame ${f} but now maps ${sp.space.pte[p]}`)
        expect(w.engine.pool.flags[f]! & FRAME_PINNED).toBe(FRAME_PINNED)
      }
    }
  }
  checkCounters(w.engine)
  recountSharing(w)
  recountPool(w)
}

function snapshot(w: World): unknown {
  return { stats: w.engine.stats(), framesInUse: w.engine.memory().framesInUse, contents: w.spaces.map((sp) => sp.space.read(0, sp.space.size)) }
}

function run(ops: Op[], maxMemoryBytes?: number): void {
  const engine = new Engine({
    pageSize: PS,
    slabBytes: FPS * PS,
    maxPageSharing: 3,
    seed: 1,
    ...(maxMemoryBytes === undefined ? {} : { maxMemoryBytes }),
    autoCompact: { minFreeFrames: 0, minFreeRatio: 0, budgetPages: 3 },
  })
  const w: World = { engine, spaces: [], unique: 1 }
  for (const op of ops) {
    const before = snapshot(w)
    try {
      step(w, op)
    } catch (e) {
      if (!(e instanceof SksmError) || e._tag !== "OutOfMemory" || maxMemoryBytes === undefined) throw e
      expect(snapshot(w)).toEqual(before)
    }
    checkWorld(w)
  }
  for (const sp of [...w.spaces]) sp.space.dispose()
  w.spaces = []
  engine.compact()
  // Everything gone: only slab 0 (the zero frame) remains.
  expect(engine.memory().slabs).toBe(1)
  expect(engine.memory().framesInUse).toBe(0)
}

const RUNS = Math.floor(Number(process.env["SKSM_MODEL_RUNS"] ?? 3000) / 3)

describe("model-based: compaction interleaved with every operation", () => {
  it("contents, counters, refcounts and pinned frames stay exact", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => run([{ k: "create", pages: 12 }, { k: "create", pages: 8 }, ...ops])),
      { numRuns: RUNS },
    )
  })

  it("the same under a memory cap (refused allocations change nothing; compaction frees room)", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => run([{ k: "create", pages: 12 }, ...ops], 16 * FPS * PS)),
      { numRuns: Math.floor(RUNS / 2) },
    )
  })
})
