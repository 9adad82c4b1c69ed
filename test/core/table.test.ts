/**
 * MergeTable (src/core/table.ts) on its own: insert / insertDetached / remove / rekey /
 * setMappers / reserve / shrink / clear against a Map model, chains reachable from their key's
 * bucket (detached entries from none), shrink's dense renumbering reported through `moved`
 * with bucket order kept, mapper counts past the 16-bit field, reserve's refusals changing
 * nothing.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { MergeTable } from "../../src/core/table.ts"
import { OutOfMemory } from "../../src/errors.ts"

interface Entry {
  frame: number
  key: number
  mappers: number
  detached: boolean
}

/** Entries reachable from `key`'s bucket, in chain order (bounded: a cycle fails). */
function chain(t: MergeTable, key: number): number[] {
  const out: number[] = []
  for (let e = t.head(key); e !== -1; e = t.next[e]!) {
    out.push(e)
    if (out.length > t.size) throw new Error(`chain of key ${key} is longer than the table: a cycle`)
  }
  return out
}

/** The table holds exactly the model's entries, each reachable (or not, when detached) by its key. */
function expectModel(t: MergeTable, model: Map<number, Entry>): void {
  expect(t.size).toBe(model.size)
  expect([...t.entries()].sort((a, b) => a - b)).toEqual([...model.keys()].sort((a, b) => a - b))
  for (const [e, m] of model) {
    expect([t.frame[e], t.key[e], t.mappers(e)], `entry ${e}`).toEqual([m.frame, m.key, m.mappers])
    expect(chain(t, m.key).includes(e), `entry ${e} reachable from its key`).toBe(!m.detached)
  }
}

type TableOp =
  | { k: "insert"; key: number; mappers: number; detached: boolean }
  | { k: "remove"; pick: number }
  | { k: "rekey"; pick: number; key: number }
  | { k: "setMappers"; pick: number; mappers: number }
  | { k: "reserve"; n: number }
  | { k: "shrink" }
  | { k: "clear" }

// Few distinct keys, so chains are long and dups share them; mapper counts on both sides of 0xffff.
const key = fc.oneof(fc.nat(7), fc.nat())
const mappers = fc.oneof(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0xfffe, max: 0x10002 }))
const tableOp: fc.Arbitrary<TableOp> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ k: fc.constant("insert" as const), key, mappers, detached: fc.boolean() }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant("remove" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("rekey" as const), pick: fc.nat(), key }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("setMappers" as const), pick: fc.nat(), mappers }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("reserve" as const), n: fc.integer({ min: 0, max: 200 }) }) },
  { weight: 2, arbitrary: fc.constant({ k: "shrink" as const }) },
  { weight: 1, arbitrary: fc.constant({ k: "clear" as const }) },
)

/** Shrinks that renumbered entries, over the whole property (the path must be reached). */
let renumbered = 0

function apply(t: MergeTable, model: Map<number, Entry>, op: TableOp, nextFrame: () => number): void {
  const live = [...model.keys()]
  const pick = (p: number) => live[p % live.length]!
  const version = t.version
  switch (op.k) {
    case "insert": {
      const frame = nextFrame()
      const e = op.detached ? t.insertDetached(frame, op.key, op.mappers) : t.insert(frame, op.key, op.mappers)
      expect(model.has(e), `insert reused live entry ${e}`).toBe(false)
      model.set(e, { frame, key: op.key, mappers: op.mappers, detached: op.detached })
      expect(t.version).toBeGreaterThan(version)
      return
    }
    case "remove":
      if (live.length === 0) return
      t.remove(pick(op.pick))
      model.delete(pick(op.pick))
      expect(t.version).toBeGreaterThan(version)
      return
    case "rekey": {
      const linked = live.filter((e) => !model.get(e)!.detached)
      if (linked.length === 0) return
      const e = linked[op.pick % linked.length]!
      t.rekey(e, op.key)
      model.get(e)!.key = op.key
      // Rekeyed entries go to the head of their new chain.
      expect(chain(t, op.key)[0]).toBe(e)
      expect(t.version).toBeGreaterThan(version)
      return
    }
    case "setMappers":
      if (live.length === 0) return
      t.setMappers(pick(op.pick), op.mappers)
      model.get(pick(op.pick))!.mappers = op.mappers
      return
    case "reserve":
      t.reserve(op.n)
      return
    case "shrink": {
      const before = new Map([...model].map(([e, m]) => [e, { ...m }]))
      const moves = new Map<number, number>()
      t.shrink((from, to) => {
        expect(moves.has(from), `entry ${from} moved twice`).toBe(false)
        moves.set(from, to)
      })
      model.clear()
      for (const [e, m] of before) model.set(moves.get(e) ?? e, m)
      // Renumbering is dense when it happens: every live entry below the live count.
      if (moves.size > 0) {
        renumbered++
        for (const e of model.keys()) expect(e).toBeLessThan(model.size)
      }
      return
    }
    case "clear":
      t.clear()
      model.clear()
      expect(t.version).toBeGreaterThan(version)
      return
  }
}

describe("MergeTable against a Map model", () => {
  it("random insert / remove / rekey / setMappers / reserve / shrink / clear keep every entry exact", () => {
    fc.assert(
      fc.property(fc.array(tableOp, { minLength: 1, maxLength: 400, size: "max" }), (ops) => {
        const t = new MergeTable()
        const model = new Map<number, Entry>()
        let frame = 1
        for (const op of ops) {
          apply(t, model, op, () => frame++)
          expectModel(t, model)
        }
      }),
      { numRuns: 200 },
    )
    expect(renumbered).toBeGreaterThan(0)
  })
})

describe("MergeTable", () => {
  it("a chain keeps dups newest first; rekey moves one entry to the head of its new chain", () => {
    const t = new MergeTable()
    const a = t.insert(10, 5, 1)
    const b = t.insert(11, 5, 1)
    const c = t.insert(12, 5, 1)
    expect(chain(t, 5)).toEqual([c, b, a])
    t.rekey(b, 6)
    expect(chain(t, 5)).toEqual([c, a])
    expect(chain(t, 6)[0]).toBe(b)
    expect(t.key[b]).toBe(6)
  })

  it("mapper counts past 0xffff saturate into an overflow map and come back", () => {
    const t = new MergeTable()
    const e = t.insert(1, 1, 0x10000)
    const bytes = t.bytes
    expect(t.mappers(e)).toBe(0x10000)
    t.setMappers(e, 0xffff)
    expect(t.mappers(e)).toBe(0xffff)
    t.setMappers(e, 3_000_000)
    expect(t.mappers(e)).toBe(3_000_000)
    t.setMappers(e, 2)
    expect(t.mappers(e)).toBe(2)
    // The overflow entry is gone from the table's bytes.
    expect(t.bytes).toBe(bytes - 16)
  })

  it("a detached entry is found by no lookup, is listed, and is removed like any other", () => {
    const t = new MergeTable()
    const linked = t.insert(1, 9, 1)
    const d = t.insertDetached(2, 9, 1)
    expect(chain(t, 9)).toEqual([linked])
    expect(t.entries().sort()).toEqual([linked, d].sort())
    expect(t.size).toBe(2)
    t.remove(d)
    expect(t.entries()).toEqual([linked])
    expect(chain(t, 9)).toEqual([linked])
  })

  it("after reserve(n), n inserts allocate nothing (the failpoint is never reached)", () => {
    const t = new MergeTable()
    t.reserve(100)
    t.failpoint = () => {
      throw new OutOfMemory("no allocation expected")
    }
    for (let i = 0; i < 100; i++) t.insert(i + 1, i, 1)
    expect(t.size).toBe(100)
  })

  it("a reserve refused (failpoint or the runtime) throws OutOfMemory and changes nothing", () => {
    const t = new MergeTable()
    for (let i = 0; i < 10; i++) t.insert(i + 1, i, 1)
    const before = { size: t.size, bytes: t.bytes, entries: t.entries(), version: t.version }
    t.failpoint = (site) => {
      expect(site).toBe("table")
      throw new OutOfMemory("injected")
    }
    expect(() => t.reserve(1000)).toThrow(OutOfMemory)
    t.failpoint = null
    // More entries than a typed array can hold: the runtime's RangeError becomes OutOfMemory.
    expect(() => t.reserve(2 ** 40)).toThrow(OutOfMemory)
    expect({ size: t.size, bytes: t.bytes, entries: t.entries(), version: t.version }).toEqual(before)
  })

  it("shrink renumbers live entries densely, tells `moved` of each, keeps every chain's entries and overflowed mappers", () => {
    const t = new MergeTable()
    const es: number[] = []
    for (let i = 0; i < 300; i++) es.push(t.insert(i + 1, i % 7, i === 299 ? 0x20000 : 1))
    const detached = t.insertDetached(999, 3, 1)
    for (let i = 0; i < 250; i++) t.remove(es[i]!)
    const frames = (k: number) => chain(t, k).map((e) => t.frame[e]!).sort((a, b) => a - b)
    const chainsBefore = [0, 1, 2, 3, 4, 5, 6].map(frames)
    const bytes = t.bytes
    const moved = new Map<number, number>()
    t.shrink((from, to) => moved.set(from, to))
    expect(moved.size).toBeGreaterThan(0)
    expect(t.bytes).toBeLessThan(bytes)
    expect(t.entries().sort((a, b) => a - b)).toEqual(Array.from({ length: 51 }, (_, i) => i))
    expect([0, 1, 2, 3, 4, 5, 6].map(frames)).toEqual(chainsBefore)
    const last = moved.get(es[299]!) ?? es[299]!
    expect([t.frame[last], t.mappers(last)]).toEqual([300, 0x20000])
    const d = moved.get(detached) ?? detached
    expect(t.frame[d]).toBe(999)
    expect(chain(t, 3)).not.toContain(d)
  })

  // Known bug (reported, not fixed here): #rehash relinks each chain in reverse, so once the
  // buckets grow (reserve) or shrink (shrink), the newest dup is no longer met first, which
  // merge.ts #find and the shrink comment rely on. Remove `.fails` when the rehash keeps order.
  it("growing the buckets keeps a chain's dups newest first", () => {
    const t = new MergeTable()
    for (let i = 0; i < 8; i++) t.insert(100 + i, 5, 1)
    const before = chain(t, 5).map((e) => t.frame[e])
    expect(before).toEqual([107, 106, 105, 104, 103, 102, 101, 100])
    t.reserve(200)
    expect(chain(t, 5).map((e) => t.frame[e])).toEqual(before)
  })

  it("shrink does nothing while the table is small or at least two thirds full", () => {
    const small = new MergeTable()
    for (let i = 0; i < 10; i++) small.insert(i + 1, i, 1)
    small.remove(0)
    const full = new MergeTable()
    for (let i = 0; i < 200; i++) full.insert(i + 1, i, 1)
    for (const t of [small, full]) {
      const before = { bytes: t.bytes, entries: t.entries() }
      t.shrink(() => expect.unreachable("nothing to renumber"))
      expect({ bytes: t.bytes, entries: t.entries() }).toEqual(before)
    }
  })

  it("clear drops every entry but keeps the room; the table works on", () => {
    const t = new MergeTable()
    for (let i = 0; i < 100; i++) t.insert(i + 1, i, i === 0 ? 0x10000 : 1)
    t.insertDetached(500, 1, 1)
    const bytes = t.bytes
    const version = t.version
    t.clear()
    expect(t.size).toBe(0)
    expect(t.entries()).toEqual([])
    expect(chain(t, 0)).toEqual([])
    expect(t.version).toBeGreaterThan(version)
    expect(t.bytes).toBe(bytes - 16)
    const e = t.insert(7, 0, 1)
    expect(chain(t, 0)).toEqual([e])
    expect(t.mappers(e)).toBe(1)
  })
})
