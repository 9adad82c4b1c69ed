/**
 * Model-based test of frame compaction: explicit compaction steps with random budgets, and the
 * automatic policy at hair-trigger thresholds, interleaved with write / fill / merge / unmerge /
 * fork / discard / pin / unpin / dispose over several spaces, through the shared random program
 * (test/helpers/program.ts, world.ts: contents against a naive reference, every counter
 * recounted, every pinned page still at the frame it was pinned at; each compaction step within
 * its budget, a full one leaving less than a slab free). This suite adds the automatic policy's
 * budget as an op, and checks after every step:
 * - the pool's slab books equal a recount (test/helpers/pool.ts: per-slab use, free list, bytes);
 * - the sharing counters equal a second, independent recount written here.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { FRAME_KSM, FRAME_SHARED } from "../../src/memory/frames.ts"
import { PAGE_KSM_ZERO, PAGE_MERGED } from "../../src/memory/flags.ts"
import type { Engine } from "../helpers/internals.ts"
import { recountPool } from "../helpers/pool.ts"
import { type Op, opArb, type Shape } from "../helpers/program.ts"
import { type Extension, newWorld, run, teardown } from "../helpers/world.ts"

const PS = 512
const FPS = 4 // frames per slab: small, so slabs fill, empty and get released constantly
const RUNS = Math.floor(Number(process.env["SKSM_MODEL_RUNS"] ?? 3000) / 3)

/** This suite's own op: retune the automatic policy's budget. */
type Auto = { k: "auto"; budget: number }

const shape: Shape = { pages: 24, domains: 1, page: 30, run: 8, addr: 16000, len: 3 * PS, bytes: [0, 1, 2, 3], unique: true }
const ops = opArb<Auto>(shape, { create: 2, fillPages: 8, writeU32: 3, merge: 6, unmerge: 2, fork: 2, discard: 5, pin: 4, unpin: 2, dispose: 1, compact: 6 }, [
  { weight: 2, arbitrary: fc.record({ k: fc.constant("auto" as const), budget: fc.integer({ min: 1, max: 6 }) }) },
])

/** Independent recount of the sharing counters (cross-checks test/helpers/recount.ts). */
function recountSharing(engine: Engine): void {
  const pool = engine.pool
  const mergedMappers = new Map<number, number>()
  let zero = 0
  for (const space of engine.spaces()) {
    for (let p = 0; p < space.pages; p++) {
      const fl = space.pflags[p]!
      if ((fl & PAGE_KSM_ZERO) !== 0) zero++
      if ((fl & PAGE_MERGED) !== 0) mergedMappers.set(space.frameAt(p), (mergedMappers.get(space.frameAt(p)) ?? 0) + 1)
    }
  }
  let shared = 0
  let sharing = 0
  let unique = 0
  for (const [f, m] of mergedMappers) {
    expect(pool.flags[f]! & FRAME_KSM).toBe(FRAME_KSM)
    // FRAME_SHARED: the frame has had a partner.
    if ((pool.flags[f]! & FRAME_SHARED) !== 0) {
      shared++
      sharing += m - 1
    } else unique++
  }
  const st = engine.stats()
  expect({ pagesShared: st.pagesShared, pagesSharing: st.pagesSharing, pagesUnique: st.pagesUnique, ksmZeroPages: st.ksmZeroPages }).toEqual({
    pagesShared: shared,
    pagesSharing: sharing,
    pagesUnique: unique,
    ksmZeroPages: zero,
  })
}

const ext: Extension<Auto> = {
  step: (w, op) => w.engine.setAutoCompact({ budgetPages: op.budget }),
  check: (w) => {
    recountSharing(w.engine)
    recountPool(w.engine)
  },
}

function program(start: Op[], maxMemoryBytes?: number) {
  return fc.property(fc.array(ops, { minLength: 1, maxLength: 60 }), (program) => {
    const w = newWorld({
      pageSize: PS,
      slabBytes: FPS * PS,
      maxPageSharing: 3,
      seed: 1,
      ...(maxMemoryBytes === undefined ? {} : { maxMemoryBytes }),
      autoCompact: { minFreeFrames: 0, minFreeRatio: 0, budgetPages: 3 },
    })
    run(w, [...start, ...program], ext, maxMemoryBytes !== undefined)
    teardown(w)
  })
}

const space = (pages: number): Op => ({ k: "create", pages, domain: 0, advise: false })

describe("model-based: compaction interleaved with every operation", () => {
  it("contents, counters, refcounts and pinned frames stay exact", () => {
    fc.assert(program([space(12), space(8)]), { numRuns: RUNS })
  })

  it("the same under a memory cap (refused allocations change nothing; compaction frees room)", () => {
    fc.assert(program([space(12)], 16 * FPS * PS), { numRuns: Math.floor(RUNS / 2) })
  })
})
