/**
 * Model-based test of the scanner: random programs interleave batches of both policies
 * (switching scanners replaces the engine's one) with writes, merges, unmerges, advice,
 * mergeAny, pins, forks, discards, disposals and run=2. After every step, contents equal a
 * plain reference, the core's counters equal a from-scratch recount, and the scanner's
 * counters equal a recount of its own per-page state.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { AddressSpace } from "../helpers/internals.ts"
import { Engine } from "../helpers/internals.ts"
import { PAGE_MERGEABLE, PAGE_MERGED, PAGE_PINNED } from "../../src/memory/flags.ts"
import { KsmScanner, type KsmSlot } from "../../src/policy/ksm.ts"
import type { Scanner } from "../helpers/internals.ts"
import type { TrackedSlot } from "../../src/policy/tracked.ts"
import { checkCounters } from "../helpers/recount.ts"
import { checkScanCounters } from "./helpers.ts"

const PS = 512

type Op =
  | { k: "create"; pages: number; domain: number; advise: boolean }
  | { k: "fillPages"; s: number; page: number; n: number; byte: number }
  | { k: "writeU32"; s: number; page: number; value: number }
  | { k: "discard"; s: number; page: number; n: number }
  | { k: "fork"; s: number }
  | { k: "dispose"; s: number }
  | { k: "merge"; s: number; page: number; n: number }
  | { k: "unmerge"; s: number; page: number; n: number }
  | { k: "advise"; s: number; page: number; n: number; on: boolean }
  | { k: "mergeAny"; s: number; on: boolean }
  | { k: "pin"; s: number; page: number }
  | { k: "unpin"; s: number }
  | { k: "writeProtect"; s: number; page: number; n: number }
  | { k: "tick"; n: number }
  | { k: "scanner"; tracked: boolean; pagesToScan: number; stablePasses: number; smartScan: boolean; rangePages: number }
  | { k: "unmergeAll" }
  | { k: "useZeroPages"; on: boolean }

const idx = fc.nat(1000)
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ k: fc.constant("create" as const), pages: fc.integer({ min: 1, max: 8 }), domain: fc.nat(1), advise: fc.boolean() }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant("fillPages" as const), s: idx, page: fc.nat(10), n: fc.integer({ min: 1, max: 5 }), byte: fc.constantFrom(0, 1, 2) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("writeU32" as const), s: idx, page: fc.nat(10), value: fc.constantFrom(0, 1, 7) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("discard" as const), s: idx, page: fc.nat(10), n: fc.integer({ min: 0, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("fork" as const), s: idx }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("dispose" as const), s: idx }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("merge" as const), s: idx, page: fc.nat(10), n: fc.integer({ min: 0, max: 8 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("unmerge" as const), s: idx, page: fc.nat(10), n: fc.integer({ min: 0, max: 8 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("advise" as const), s: idx, page: fc.nat(10), n: fc.integer({ min: 0, max: 8 }), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("mergeAny" as const), s: idx, on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("pin" as const), s: idx, page: fc.nat(10) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("unpin" as const), s: idx }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("writeProtect" as const), s: idx, page: fc.nat(10), n: fc.integer({ min: 0, max: 4 }) }) },
  { weight: 10, arbitrary: fc.record({ k: fc.constant("tick" as const), n: fc.integer({ min: 1, max: 6 }) }) },
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
  { weight: 1, arbitrary: fc.constant({ k: "unmergeAll" as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("useZeroPages" as const), on: fc.boolean() }) },
)

interface World {
  engine: Engine
  ksmd: Scanner
  spaces: AddressSpace[]
  ref: Map<AddressSpace, Uint8Array>
  pinned: Map<AddressSpace, number[]>
}

/** Recount the active scanner's items from its per-page state. */
function recountScanner(w: World): void {
  const slots = (w.ksmd as unknown as { slots: (KsmSlot | TrackedSlot)[] }).slots
  // One slot per live space, by identity (a deep compare would walk the frame pool).
  expect(slots.length).toBe(w.spaces.length)
  const held = new Set(slots.map((s) => s.space))
  for (const sp of w.spaces) if (!held.has(sp)) throw new Error(`space ${sp.name} has no slot`)
  let items = 0
  let unstable = 0
  for (const slot of slots) {
    let si = 0
    let su = 0
    const fl = slot.space.pflags
    if (w.ksmd instanceof KsmScanner) {
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
  const c = w.ksmd.scanCounters()
  expect(c.rmapItems).toBe(items)
  expect(c.pagesUnshared).toBe(unstable)
}

function step(w: World, op: Op): void {
  const { engine } = w
  switch (op.k) {
    case "create": {
      const sp = engine.createSpace({ size: op.pages * PS, domain: `d${op.domain}` })
      if (op.advise) sp.advise(0, sp.size, "mergeable")
      w.spaces.push(sp)
      w.ref.set(sp, new Uint8Array(sp.size))
      w.pinned.set(sp, [])
      return
    }
    case "tick":
      for (let i = 0; i < op.n; i++) w.ksmd.tick()
      return
    case "scanner":
      w.ksmd = engine.scanner(
        op.tracked
          ? { policy: "tracked", pagesToScan: op.pagesToScan, stablePasses: op.stablePasses, rangePages: op.rangePages }
          : { policy: "ksm", pagesToScan: op.pagesToScan, smartScan: op.smartScan },
      )
      return
    case "unmergeAll":
      return engine.unmergeAll()
    case "useZeroPages":
      return engine.setUseZeroPages(op.on)
  }
  if (w.spaces.length === 0) return
  const sp = w.spaces[op.s % w.spaces.length]!
  const ref = w.ref.get(sp)!
  const range = (page: number, n: number): [number, number] => {
    const p0 = page % sp.pages
    return [p0, Math.min(n, sp.pages - p0)]
  }
  switch (op.k) {
    case "fillPages": {
      const [p0, n] = range(op.page, op.n)
      sp.fill(p0 * PS, n * PS, op.byte)
      ref.fill(op.byte, p0 * PS, (p0 + n) * PS)
      return
    }
    case "writeU32": {
      const a = (op.page % sp.pages) * PS + 4
      sp.writeU32(a, op.value)
      new DataView(ref.buffer).setUint32(a, op.value, true)
      return
    }
    case "discard": {
      const [p0, n] = range(op.page, op.n)
      const pins = w.pinned.get(sp)!
      if (pins.some((p) => p >= p0 && p < p0 + n)) return
      sp.discard(p0 * PS, n * PS)
      ref.fill(0, p0 * PS, (p0 + n) * PS)
      return
    }
    case "fork": {
      const child = sp.fork()
      w.spaces.push(child)
      w.ref.set(child, ref.slice())
      w.pinned.set(child, [])
      return
    }
    case "dispose": {
      sp.dispose()
      w.spaces.splice(w.spaces.indexOf(sp), 1)
      w.ref.delete(sp)
      w.pinned.delete(sp)
      return
    }
    case "merge": {
      const [p0, n] = range(op.page, op.n)
      sp.merge(p0 * PS, n * PS)
      return
    }
    case "unmerge": {
      const [p0, n] = range(op.page, op.n)
      sp.unmerge(p0 * PS, n * PS)
      return
    }
    case "advise": {
      const [p0, n] = range(op.page, op.n)
      sp.advise(p0 * PS, n * PS, op.on ? "mergeable" : "unmergeable")
      if (!op.on) for (let p = p0; p < p0 + n; p++) expect(sp.pflags[p]! & (PAGE_MERGEABLE | PAGE_MERGED)).toBe(0)
      return
    }
    case "mergeAny":
      return sp.setMergeAny(op.on)
    case "pin": {
      const p = op.page % sp.pages
      sp.pin(p * PS, 1)
      w.pinned.get(sp)!.push(p)
      return
    }
    case "unpin": {
      const pins = w.pinned.get(sp)!
      const p = pins.pop()
      if (p !== undefined) sp.unpin(p * PS, 1)
      return
    }
    case "writeProtect": {
      const [p0, n] = range(op.page, op.n)
      sp.writeProtect(p0 * PS, n * PS, true)
      return
    }
  }
}

function check(w: World): void {
  for (const sp of w.spaces) {
    if (Buffer.compare(sp.read(0, sp.size), w.ref.get(sp)!) !== 0) expect(sp.read(0, sp.size)).toEqual(w.ref.get(sp))
    // Pinned pages are never merged.
    for (let p = 0; p < sp.pages; p++) if ((sp.pflags[p]! & PAGE_PINNED) !== 0) expect(sp.pflags[p]! & PAGE_MERGED).toBe(0)
  }
  checkCounters(w.engine)
  checkScanCounters(w.engine, w.ksmd)
  recountScanner(w)
  // engine.stats() reports the active scanner's counters.
  const s = w.engine.stats()
  const c = w.ksmd.scanCounters()
  expect([s.pagesUnshared, s.pagesVolatile, s.fullScans]).toEqual([c.pagesUnshared, c.pagesVolatile, c.fullScans])
}

describe("scanner model-based test", () => {
  it("random programs: contents equal the reference, counters equal the recount", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 10, maxLength: 60, size: "max" }), fc.boolean(), (ops, tracked) => {
        const engine = new Engine({ pageSize: PS, maxPageSharing: 3, seed: 7 })
        const w: World = { engine, ksmd: engine.scanner({ policy: tracked ? "tracked" : "ksm", pagesToScan: 7 }), spaces: [], ref: new Map(), pinned: new Map() }
        // Two spaces of duplicates to start with, so merging has something to do from the first tick.
        step(w, { k: "create", pages: 4, domain: 0, advise: true })
        step(w, { k: "create", pages: 3, domain: 0, advise: true })
        step(w, { k: "fillPages", s: 0, page: 0, n: 4, byte: 1 })
        step(w, { k: "fillPages", s: 1, page: 0, n: 3, byte: 1 })
        for (const op of ops) {
          step(w, op)
          check(w)
        }
        // Let the scanner settle and check again.
        for (let i = 0; i < 30; i++) w.ksmd.tick()
        check(w)
      }),
      { numRuns: 150 },
    )
  })
})
