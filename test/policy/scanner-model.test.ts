/**
 * Model-based test of the scanner: random programs (test/helpers/program.ts, world.ts)
 * interleave batches of both policies with writes, merges, unmerges, advice, mergeAny, pins,
 * forks, discards, write protection, disposals and run=2; this suite adds switching scanners
 * (which replaces the engine's one, either policy, random tunables). After every step, contents
 * equal a plain reference, the core's counters equal a from-scratch recount, and the scanner's
 * counters equal a recount of its own per-page state (written here).
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { PAGE_MERGED } from "../../src/memory/flags.ts"
import { KsmScanner, type KsmSlot } from "../../src/policy/ksm.ts"
import type { TrackedSlot } from "../../src/policy/tracked.ts"
import { type Op, opArb, type Shape } from "../helpers/program.ts"
import { type Extension, check, newWorld, run, teardown, type World } from "../helpers/world.ts"

const PS = 512

/** This suite's own op: a new scanner replaces the engine's one. */
type Switch = { k: "scanner"; tracked: boolean; pagesToScan: number; stablePasses: number; smartScan: boolean; rangePages: number }

const shape: Shape = { pages: 8, domains: 2, page: 10, run: 5, addr: 8 * PS, len: 2 * PS, bytes: [0, 1, 2], unique: false }
const ops = opArb<Switch>(
  shape,
  { create: 2, fillPages: 6, writeU32: 3, discard: 1, fork: 1, dispose: 1, merge: 2, unmerge: 1, advise: 2, mergeAny: 1, pin: 1, unpin: 1, writeProtect: 1, tick: 10, unmergeAll: 1, useZeroPages: 1 },
  [
    {
      weight: 1,
      arbitrary: fc.record({
        k: fc.constant("scanner" as const),
        tracked: fc.boolean(),
        pagesToScan: fc.integer({ min: 1, max: 20 }),
        stablePasses: fc.integer({ min: 1, max: 2 }),
        smartScan: fc.boolean(),
        rangePages: fc.integer({ min: 1, max: 4 }),
      }),
    },
  ],
)

/** Recount the active scanner's items from its per-page state. */
function recountScanner(w: World): void {
  const ksmd = w.scanner!
  const slots = (ksmd as unknown as { slots: (KsmSlot | TrackedSlot)[] }).slots
  // One slot per live space, by identity (a deep compare would walk the frame pool).
  expect(slots.length).toBe(w.spaces.length)
  const held = new Set(slots.map((s) => s.space))
  for (const { space } of w.spaces) if (!held.has(space)) throw new Error(`space ${space.name} has no slot`)
  let items = 0
  let unstable = 0
  for (const slot of slots) {
    let si = 0
    let su = 0
    const fl = slot.space.pflags
    if (ksmd instanceof KsmScanner) {
      const meta = (slot as KsmSlot).meta
      if (meta !== null) {
        for (let pi = 0; pi < slot.space.pages; pi++) {
          const st = meta[pi * 4]!
          if ((st & 1) !== 0) si++
          if ((st & 2) !== 0) su++
          // A merged page's item is the core's: the policy holds none (only kept fields, KEPT = 4).
          if ((st & 3) !== 0) expect(fl[pi]! & PAGE_MERGED).toBe(0)
        }
      }
    } else {
      const st = (slot as TrackedSlot).st
      if (st !== null) {
        for (let pi = 0; pi < slot.space.pages; pi++) {
          const b = st[pi]!
          if ((b & 1) !== 0 && (b & 2) === 0) si++
          if ((b & 8) !== 0) {
            su++
            // A candidate is a tracked page the core does not hold.
            expect(b & 3).toBe(1)
          }
        }
      }
    }
    expect(slot.items).toBe(si)
    expect(slot.unstable).toBe(su)
    items += si
    unstable += su
  }
  const c = ksmd.scanCounters()
  expect(c.rmapItems).toBe(items)
  expect(c.pagesUnshared).toBe(unstable)
}

const ext: Extension<Switch> = {
  step: (w, op) => {
    w.scanner = w.engine.scanner(
      op.tracked
        ? { policy: "tracked", pagesToScan: op.pagesToScan, stablePasses: op.stablePasses, rangePages: op.rangePages }
        : { policy: "ksm", pagesToScan: op.pagesToScan, smartScan: op.smartScan },
    )
  },
  check: recountScanner,
}

// Two spaces of duplicates to start with, so merging has something to do from the first tick.
const start: Op[] = [
  { k: "create", pages: 4, domain: 0, advise: true },
  { k: "create", pages: 3, domain: 0, advise: true },
  { k: "fillPages", s: 0, page: 0, n: 4, byte: 1, unique: false },
  { k: "fillPages", s: 1, page: 0, n: 3, byte: 1, unique: false },
]

describe("scanner model-based test", () => {
  it("random programs: contents equal the reference, counters equal the recount", () => {
    fc.assert(
      fc.property(fc.array(ops, { minLength: 10, maxLength: 60, size: "max" }), fc.boolean(), (program, tracked) => {
        const w = newWorld({ pageSize: PS, maxPageSharing: 3, seed: 7 }, { policy: tracked ? "tracked" : "ksm", pagesToScan: 7 })
        run(w, [...start, ...program], ext)
        // Let the scanner settle and check again.
        for (let i = 0; i < 30; i++) w.scanner!.tick()
        check(w, ext)
        teardown(w)
      }),
      { numRuns: 150 },
    )
  })
})
