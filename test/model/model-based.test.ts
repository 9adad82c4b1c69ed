/**
 * Model-based test of the memory model and the merge core: random programs of
 * createSpace / write / fill / writeU32 / read / discard / fork / pin / unpin / dispose /
 * merge / unmerge / unmergeAll / tunable changes, checked step by step against a naive
 * reference (one plain Uint8Array per space) and a from-scratch recount of every counter.
 * A failing run prints fast-check's seed and the shrunk program.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Engine } from "../helpers/internals.ts"
import type { AddressSpace } from "../helpers/internals.ts"
import { SksmError } from "../../src/errors.ts"
import { checkCounters } from "../helpers/recount.ts"

const PS = 512

type Op =
  | { k: "create"; pages: number; domain: number }
  | { k: "write"; s: number; addr: number; len: number; byte: number; pattern: boolean }
  | { k: "fill"; s: number; addr: number; len: number; byte: number }
  | { k: "fillPages"; s: number; page: number; n: number; byte: number }
  | { k: "writeU32"; s: number; addr: number; value: number }
  | { k: "read"; s: number; addr: number; len: number }
  | { k: "discard"; s: number; page: number; n: number }
  | { k: "fork"; s: number }
  | { k: "pin"; s: number; addr: number; len: number }
  | { k: "unpin"; s: number; addr: number; len: number }
  | { k: "dispose"; s: number }
  | { k: "merge"; s: number; page: number; n: number }
  | { k: "unmerge"; s: number; page: number; n: number }
  | { k: "unmergeAll" }
  | { k: "maxPageSharing"; n: number }
  | { k: "useZeroPages"; on: boolean }
  | { k: "oob"; s: number; which: number }

const idx = fc.nat(1000)
const byte = fc.constantFrom(0, 0, 1, 2, 3, 0xff)
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ k: fc.constant("create" as const), pages: fc.integer({ min: 1, max: 10 }), domain: fc.nat(2) }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant("write" as const), s: idx, addr: fc.nat(8000), len: fc.integer({ min: 0, max: 1300 }), byte, pattern: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant("fill" as const), s: idx, addr: fc.nat(8000), len: fc.integer({ min: 0, max: 1600 }), byte }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant("fillPages" as const), s: idx, page: fc.nat(20), n: fc.integer({ min: 1, max: 6 }), byte: fc.constantFrom(0, 1, 2) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("writeU32" as const), s: idx, addr: fc.nat(8000), value: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("read" as const), s: idx, addr: fc.nat(8000), len: fc.nat(1200) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("discard" as const), s: idx, page: fc.nat(20), n: fc.integer({ min: 0, max: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("fork" as const), s: idx }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("pin" as const), s: idx, addr: fc.nat(8000), len: fc.nat(1200) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("unpin" as const), s: idx, addr: fc.nat(8000), len: fc.nat(1200) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("dispose" as const), s: idx }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant("merge" as const), s: idx, page: fc.nat(20), n: fc.integer({ min: 0, max: 12 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("unmerge" as const), s: idx, page: fc.nat(20), n: fc.integer({ min: 0, max: 12 }) }) },
  { weight: 1, arbitrary: fc.constant({ k: "unmergeAll" as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("maxPageSharing" as const), n: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("useZeroPages" as const), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("oob" as const), s: idx, which: fc.nat(5) }) },
)

interface World {
  engine: Engine
  spaces: AddressSpace[]
  ref: Map<AddressSpace, Uint8Array>
  pins: Map<AddressSpace, Int32Array>
}

function pick(w: World, s: number): AddressSpace | undefined {
  return w.spaces.length === 0 ? undefined : w.spaces[s % w.spaces.length]
}

function clampRange(sp: AddressSpace, addr: number, len: number): [number, number] {
  const a = addr % (sp.size + 1)
  return [a, Math.min(len, sp.size - a)]
}

function pagesOf(addr: number, len: number): [number, number] {
  return [Math.floor(addr / PS), Math.ceil((addr + len) / PS)]
}

/** Apply one op to both the engine and the reference. Returns an error the op was expected to throw, if any. */
function step(w: World, op: Op): void {
  const { engine } = w
  if (op.k === "create") {
    const sp = engine.createSpace({ size: op.pages * PS, domain: `d${op.domain}` })
    w.spaces.push(sp)
    w.ref.set(sp, new Uint8Array(sp.size))
    w.pins.set(sp, new Int32Array(op.pages))
    return
  }
  if (op.k === "unmergeAll") return engine.unmergeAll()
  if (op.k === "maxPageSharing") {
    const before = engine.stats().pagesShared
    const cur = engine.maxPageSharing
    if (op.n < 2) {
      expect(() => engine.setMaxPageSharing(op.n)).toThrow(expect.objectContaining({ _tag: "InvalidArgument" }))
    } else if (op.n !== cur && before !== 0) {
      expect(() => engine.setMaxPageSharing(op.n)).toThrow(expect.objectContaining({ _tag: "Busy" }))
    } else {
      engine.setMaxPageSharing(op.n)
      expect(engine.maxPageSharing).toBe(op.n)
    }
    return
  }
  if (op.k === "useZeroPages") return engine.setUseZeroPages(op.on)
  const sp = pick(w, op.s)
  if (sp === undefined) return
  const ref = w.ref.get(sp)!
  const pins = w.pins.get(sp)!
  switch (op.k) {
    case "write": {
      const [a, n] = clampRange(sp, op.addr, op.len)
      const bytes = new Uint8Array(n).fill(op.byte)
      if (op.pattern) for (let i = 0; i < n; i += 7) bytes[i] = (a + i) & 0xff
      sp.write(a, bytes)
      ref.set(bytes, a)
      return
    }
    case "fill": {
      const [a, n] = clampRange(sp, op.addr, op.len)
      sp.fill(a, n, op.byte)
      ref.fill(op.byte, a, a + n)
      return
    }
    case "fillPages": {
      // Whole identical pages: what makes merging (and chains) happen.
      const p0 = op.page % sp.pages
      const n = Math.min(op.n, sp.pages - p0)
      sp.fill(p0 * PS, n * PS, op.byte)
      ref.fill(op.byte, p0 * PS, (p0 + n) * PS)
      return
    }
    case "writeU32": {
      const a = op.addr % (sp.size - 3)
      sp.writeU32(a, op.value)
      new DataView(ref.buffer).setUint32(a, op.value, true)
      expect(sp.readU32(a)).toBe(op.value >>> 0)
      return
    }
    case "read": {
      const [a, n] = clampRange(sp, op.addr, op.len)
      expect(sp.read(a, n)).toEqual(ref.subarray(a, a + n))
      return
    }
    case "discard": {
      const p0 = op.page % sp.pages
      const n = Math.min(op.n, sp.pages - p0)
      const pinned = pins.subarray(p0, p0 + n).some((c) => c > 0)
      if (pinned) {
        expect(() => sp.discard(p0 * PS, n * PS)).toThrow(expect.objectContaining({ _tag: "PinnedPage" }))
        return
      }
      sp.discard(p0 * PS, n * PS)
      ref.fill(0, p0 * PS, (p0 + n) * PS)
      return
    }
    case "fork": {
      const child = sp.fork()
      w.spaces.push(child)
      w.ref.set(child, ref.slice())
      w.pins.set(child, new Int32Array(sp.pages))
      return
    }
    case "pin": {
      const [a, n] = clampRange(sp, op.addr, op.len)
      sp.pin(a, n)
      if (n > 0) {
        const [p0, p1] = pagesOf(a, n)
        for (let p = p0; p < p1; p++) pins[p]!++
      }
      return
    }
    case "unpin": {
      const [a, n] = clampRange(sp, op.addr, op.len)
      const [p0, p1] = pagesOf(a, n)
      if (n > 0 && pins.subarray(p0, p1).some((c) => c === 0)) {
        expect(() => sp.unpin(a, n)).toThrow(expect.objectContaining({ _tag: "InvalidArgument" }))
        return
      }
      sp.unpin(a, n)
      if (n > 0) for (let p = p0; p < p1; p++) pins[p]!--
      return
    }
    case "dispose": {
      sp.dispose()
      w.spaces.splice(w.spaces.indexOf(sp), 1)
      w.ref.delete(sp)
      w.pins.delete(sp)
      expect(() => sp.readU8(0)).toThrow(expect.objectContaining({ _tag: "SpaceDisposed" }))
      return
    }
    case "merge": {
      const p0 = op.page % sp.pages
      const n = Math.min(op.n, sp.pages - p0)
      const r = sp.merge(p0 * PS, n * PS)
      expect(r.scanned).toBe(n)
      expect(r.merged + r.zeroMapped + r.inserted + r.alreadyMerged + r.skipped.unpopulated + r.skipped.pinned + r.skipped.crowded).toBe(n)
      return
    }
    case "unmerge": {
      const p0 = op.page % sp.pages
      const n = Math.min(op.n, sp.pages - p0)
      sp.unmerge(p0 * PS, n * PS)
      return
    }
    case "oob": {
      const bad: (() => unknown)[] = [
        () => sp.write(sp.size - 1, new Uint8Array(2)),
        () => sp.readU32(sp.size - 3),
        () => sp.fill(-1, 1, 0),
        () => sp.discard(1, PS),
        () => sp.merge(0, sp.size + 1),
        () => sp.writeU32(Number.NaN, 1),
      ]
      expect(bad[op.which % bad.length]!).toThrow(SksmError)
      return
    }
  }
}

function snapshot(w: World): unknown {
  return {
    stats: w.engine.stats(),
    framesInUse: w.engine.memory().framesInUse,
    contents: w.spaces.map((s) => s.read(0, s.size)),
  }
}

function checkWorld(w: World): void {
  for (const sp of w.spaces) {
    const ref = w.ref.get(sp)!
    const got = sp.read(0, sp.size)
    if (Buffer.compare(got, ref) !== 0) {
      const i = got.findIndex((b, k) => b !== ref[k])
      throw new Error(`${sp.name}: byte ${i} is ${got[i]}, reference ${ref[i]}`)
    }
  }
  checkCounters(w.engine)
}

function run(ops: Op[], opts: { maxMemoryBytes?: number }): void {
  const engine = new Engine({ pageSize: PS, slabBytes: 4 * PS, maxPageSharing: 3, seed: 1, ...opts })
  const w: World = { engine, spaces: [], ref: new Map(), pins: new Map() }
  for (const op of ops) {
    const before = snapshot(w)
    try {
      step(w, op)
    } catch (e) {
      // Only an OutOfMemory under a memory cap may escape, and it must change nothing.
      if (!(e instanceof SksmError) || e._tag !== "OutOfMemory" || opts.maxMemoryBytes === undefined) throw e
      expect(snapshot(w)).toEqual(before)
    }
    checkWorld(w)
  }
  for (const sp of [...w.spaces]) sp.dispose()
  expect(engine.memory().framesInUse).toBe(0)
  expect(engine.core.table.size).toBe(0)
  const s = engine.stats()
  expect([s.pagesShared, s.pagesSharing, s.pagesUnique, s.ksmZeroPages]).toEqual([0, 0, 0, 0])
}

describe("model-based: memory model + merge core against a naive reference", () => {
  it("random programs keep contents and counters exact", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => run([{ k: "create", pages: 4, domain: 0 }, ...ops], {})),
      { numRuns: Number(process.env["SKSM_MODEL_RUNS"] ?? 3000) },
    )
  })

  it("under a memory cap, every refused allocation changes nothing", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => run([{ k: "create", pages: 4, domain: 0 }, ...ops], { maxMemoryBytes: 12 * PS })),
      { numRuns: Math.floor(Number(process.env["SKSM_MODEL_RUNS"] ?? 3000) / 3) },
    )
  })
})
