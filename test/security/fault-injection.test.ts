/**
 * Fault injection (issue 7): an OutOfMemory injected at every allocation point of every call
 * of a random program, one point at a time. Allocation points are the pool's and the table's
 * failpoint hooks (sites: cow, unmerge, fork, merge, table, space, compact, scan, index, and
 * "unreserved" for an allocation nobody reserved, which must never happen).
 *
 * For each call: fail its 1st allocation point, then its 2nd, ... until the call runs with
 * fewer points than k. Every failed call must throw OutOfMemory and leave contents, engine
 * stats, framesInUse and every space's ksmStat exactly as they were, and the recount must
 * still agree. A call that absorbs the failure by design (a scanner tick skips the page "not
 * this time"; automatic compaction after merge/unmerge/discard/dispose is skipped) completes,
 * and must leave exact contents and consistent counters; the program is then replayed to the
 * state before the call to try the next point. After the program, disposing every space must
 * leave framesInUse 0 and an empty table.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { AddressSpace } from "../helpers/internals.ts"
import { Engine, type EngineOptions } from "../helpers/internals.ts"
import { OutOfMemory, SksmError } from "../../src/errors.ts"
import type { Scanner } from "../helpers/internals.ts"
import { checkCounters } from "../helpers/recount.ts"
import { checkDomainIsolation, checkSecureInvariants, snapshot } from "../helpers/security.ts"

const PS = 512

type Op =
  | { k: "create"; pages: number; domain: number }
  | { k: "write"; s: number; addr: number; len: number; byte: number }
  | { k: "fillPages"; s: number; page: number; n: number; byte: number }
  | { k: "writeU32"; s: number; addr: number; value: number }
  | { k: "discard"; s: number; page: number; n: number }
  | { k: "fork"; s: number }
  | { k: "pin"; s: number; page: number }
  | { k: "unpin"; s: number; page: number }
  | { k: "merge"; s: number; page: number; n: number }
  | { k: "unmerge"; s: number; page: number; n: number }
  | { k: "unmergeAll" }
  | { k: "dispose"; s: number }
  | { k: "compact"; budget: number }
  | { k: "tick"; n: number }
  | { k: "mergeable"; s: number }

const idx = fc.nat(100)
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ k: fc.constant("create" as const), pages: fc.integer({ min: 1, max: 6 }), domain: fc.nat(1) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant("write" as const), s: idx, addr: fc.nat(3000), len: fc.integer({ min: 1, max: 900 }), byte: fc.constantFrom(0, 1, 2) }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant("fillPages" as const), s: idx, page: fc.nat(6), n: fc.integer({ min: 1, max: 3 }), byte: fc.constantFrom(0, 1, 2) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("writeU32" as const), s: idx, addr: fc.nat(3000), value: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("discard" as const), s: idx, page: fc.nat(6), n: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("fork" as const), s: idx }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("pin" as const), s: idx, page: fc.nat(6) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("unpin" as const), s: idx, page: fc.nat(6) }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant("merge" as const), s: idx, page: fc.nat(6), n: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("unmerge" as const), s: idx, page: fc.nat(6), n: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 1, arbitrary: fc.constant({ k: "unmergeAll" as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("dispose" as const), s: idx }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("compact" as const), budget: fc.constantFrom(1, 4, Number.POSITIVE_INFINITY) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("tick" as const), n: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("mergeable" as const), s: idx }) },
)

interface Config {
  readonly engine: EngineOptions
  readonly policy: "ksm" | "tracked" | null
}

/** The fault injector shared by the pool and the table of one world. */
class Injector {
  hits = 0
  failAt = -1
  fired = false
  sites: string[] = []
  readonly hook = (site: string): void => {
    this.hits++
    this.sites.push(site)
    if (this.hits === this.failAt) {
      this.fired = true
      throw new OutOfMemory(`injected at allocation point ${this.hits} (${site})`)
    }
  }
  arm(k: number): void {
    this.hits = 0
    this.failAt = k
    this.fired = false
    this.sites = []
  }
}

interface World {
  engine: Engine
  scanner: Scanner | null
  spaces: AddressSpace[]
  ref: Map<AddressSpace, Uint8Array>
  pins: Map<AddressSpace, Int32Array>
  inj: Injector
}

function build(cfg: Config): World {
  const engine = new Engine({ pageSize: PS, slabBytes: 4 * PS, maxPageSharing: 3, seed: 1, autoCompact: { minFreeFrames: 2, minFreeRatio: 0 }, ...cfg.engine })
  const scanner = cfg.policy === null ? null : engine.scanner({ policy: cfg.policy, pagesToScan: 8, ...(cfg.policy === "tracked" ? { stablePasses: 1, rangePages: 2 } : {}) })
  const inj = new Injector()
  engine.pool.failpoint = inj.hook
  engine.core.table.failpoint = inj.hook
  return { engine, scanner, spaces: [], ref: new Map(), pins: new Map(), inj }
}

function pick(w: World, s: number): AddressSpace | undefined {
  return w.spaces.length === 0 ? undefined : w.spaces[s % w.spaces.length]
}

/** Apply `op` to the engine, then (only if it returned) to the reference. */
function apply(w: World, op: Op): void {
  const { engine } = w
  switch (op.k) {
    case "create": {
      const s = engine.createSpace({ size: op.pages * PS, domain: `d${op.domain}` })
      w.spaces.push(s)
      w.ref.set(s, new Uint8Array(s.size))
      w.pins.set(s, new Int32Array(s.pages))
      return
    }
    case "unmergeAll":
      engine.unmergeAll()
      return
    case "compact":
      engine.compact({ budgetPages: op.budget })
      return
    case "tick":
      for (let i = 0; i < op.n && w.scanner !== null; i++) w.scanner.tick()
      return
  }
  const s = pick(w, op.s)
  if (s === undefined) return
  const ref = w.ref.get(s)!
  const pins = w.pins.get(s)!
  switch (op.k) {
    case "write": {
      const a = op.addr % s.size
      const n = Math.min(op.len, s.size - a)
      const bytes = new Uint8Array(n).fill(op.byte)
      for (let i = 0; i < n; i += 5) bytes[i] = (a + i) & 3
      s.write(a, bytes)
      ref.set(bytes, a)
      return
    }
    case "fillPages": {
      const p0 = op.page % s.pages
      const n = Math.min(op.n, s.pages - p0)
      s.fill(p0 * PS, n * PS, op.byte)
      ref.fill(op.byte, p0 * PS, (p0 + n) * PS)
      return
    }
    case "writeU32": {
      const a = op.addr % (s.size - 3)
      s.writeU32(a, op.value)
      new DataView(ref.buffer).setUint32(a, op.value, true)
      return
    }
    case "discard": {
      const p0 = op.page % s.pages
      const n = Math.min(op.n, s.pages - p0)
      if (pins.subarray(p0, p0 + n).some((c) => c > 0)) return
      s.discard(p0 * PS, n * PS)
      ref.fill(0, p0 * PS, (p0 + n) * PS)
      return
    }
    case "fork": {
      const c = s.fork()
      w.spaces.push(c)
      w.ref.set(c, ref.slice())
      w.pins.set(c, new Int32Array(c.pages))
      return
    }
    case "pin": {
      const p = op.page % s.pages
      if (pins[p]! >= 2) return
      s.pin(p * PS, PS)
      pins[p]!++
      return
    }
    case "unpin": {
      const p = op.page % s.pages
      if (pins[p] === 0) return
      s.unpin(p * PS, PS)
      pins[p]!--
      return
    }
    case "merge": {
      const p0 = op.page % s.pages
      const n = Math.min(op.n, s.pages - p0)
      s.merge(p0 * PS, n * PS)
      return
    }
    case "unmerge": {
      const p0 = op.page % s.pages
      const n = Math.min(op.n, s.pages - p0)
      s.unmerge(p0 * PS, n * PS)
      return
    }
    case "dispose": {
      s.dispose()
      w.spaces.splice(w.spaces.indexOf(s), 1)
      w.ref.delete(s)
      w.pins.delete(s)
      return
    }
    case "mergeable":
      s.setMergeAny(true)
      return
  }
}

function checkWorld(w: World): void {
  for (const s of w.spaces) {
    if (Buffer.compare(s.read(0, s.size), w.ref.get(s)!) !== 0) throw new Error(`${s.name}: contents differ from the reference`)
  }
  checkCounters(w.engine)
  checkSecureInvariants(w.engine)
  checkDomainIsolation(w.engine)
}

/** A fresh world in the state after ops[0..n), with no fault injected. */
function replay(cfg: Config, ops: readonly Op[], n: number): World {
  const w = build(cfg)
  for (let i = 0; i < n; i++) apply(w, ops[i]!)
  return w
}

interface Tally {
  points: number
  failed: number
  absorbed: number
  sites: Set<string>
}

function runProgram(cfg: Config, ops: readonly Op[], tally: Tally): void {
  let w = build(cfg)
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!
    for (let k = 1; ; k++) {
      const before = snapshot(w.engine)
      w.inj.arm(k)
      let err: unknown = null
      try {
        apply(w, op)
      } catch (e) {
        err = e
      }
      const { fired, sites } = w.inj
      w.inj.arm(-1)
      if (err !== null) {
        // Only the injected failure may escape, as a typed OutOfMemory, having changed nothing.
        if (!(err instanceof SksmError) || err._tag !== "OutOfMemory" || !fired) throw err
        expect(snapshot(w.engine), `op ${i} ${JSON.stringify(op)} failed at point ${k} (${sites.at(-1)}) but changed state`).toEqual(before)
        checkWorld(w)
        tally.failed++
        tally.points++
        tally.sites.add(sites.at(-1)!)
        continue
      }
      if (sites.includes("unreserved")) throw new Error(`op ${i} ${JSON.stringify(op)} allocated a frame it had not reserved`)
      checkWorld(w)
      if (!fired) break
      // Absorbed by design (scanner tick, automatic compaction): the call completed.
      tally.absorbed++
      tally.points++
      tally.sites.add(sites[k - 1]!)
      w = replay(cfg, ops, i)
    }
  }
  for (const s of [...w.spaces]) s.dispose()
  expect(w.engine.memory().framesInUse).toBe(0)
  expect(w.engine.core.table.size).toBe(0)
}

const configs: [string, Config][] = [
  ["default, merge()", { engine: {}, policy: null }],
  ["default, ksm scanner", { engine: {}, policy: "ksm" }],
  ["default, tracked scanner", { engine: {}, policy: "tracked" }],
  ["secure, merge()", { engine: { secure: true, idlePasses: 0 }, policy: null }],
  ["secure idlePasses 1, ksm scanner", { engine: { secure: true }, policy: "ksm" }],
  ["secure, tracked scanner", { engine: { secure: true, idlePasses: 0 }, policy: "tracked" }],
]

describe("fault injection at every allocation point", () => {
  for (const [name, cfg] of configs) {
    it(`${name}: every failed call throws OutOfMemory and changes nothing; no frame leaks`, () => {
      const tally: Tally = { points: 0, failed: 0, absorbed: 0, sites: new Set() }
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 25 }), (ops) => {
          runProgram(cfg, [{ k: "create", pages: 4, domain: 0 }, { k: "mergeable", s: 0 }, ...ops], tally)
        }),
        { numRuns: Number(process.env["SKSM_FAULT_RUNS"] ?? 40) },
      )
      if (process.env["SKSM_FAULT_VERBOSE"]) console.log(`${name}: ${tally.points} points, ${tally.failed} failed calls, ${tally.absorbed} absorbed, sites ${[...tally.sites].sort().join(" ")}`)
      // The programs really reached allocation points, and calls really failed at them.
      expect(tally.failed).toBeGreaterThan(50)
      for (const site of ["cow", "table", "space"]) expect(tally.sites).toContain(site)
    })
  }

  it("each kind of call has allocation points the injector reaches", () => {
    const sitesOf = (cfg: Config, ops: Op[]): string[] => {
      const w = replay(cfg, ops, ops.length - 1)
      w.inj.arm(Number.POSITIVE_INFINITY)
      apply(w, ops.at(-1)!)
      return w.inj.sites
    }
    const base: Op[] = [
      { k: "create", pages: 4, domain: 0 },
      { k: "fillPages", s: 0, page: 0, n: 4, byte: 1 },
    ]
    const dflt: Config = { engine: {}, policy: null }
    expect(sitesOf(dflt, [...base, { k: "merge", s: 0, page: 0, n: 4 }])).toContain("table")
    expect(sitesOf(dflt, [...base, { k: "merge", s: 0, page: 0, n: 4 }, { k: "unmerge", s: 0, page: 0, n: 4 }])).toContain("unmerge")
    expect(sitesOf(dflt, [...base, { k: "fork", s: 0 }])).toContain("space")
    expect(sitesOf(dflt, [...base, { k: "pin", s: 0, page: 1 }, { k: "fork", s: 0 }])).toContain("fork")
    expect(sitesOf(dflt, [...base, { k: "fork", s: 0 }, { k: "writeU32", s: 0, addr: 8, value: 1 }])).toContain("cow")
    expect(sitesOf(dflt, [...base, { k: "compact", budget: 4 }])).toContain("compact")
    expect(sitesOf({ engine: { secure: true, idlePasses: 0 }, policy: null }, [...base, { k: "merge", s: 0, page: 0, n: 4 }])).toContain("merge")
    expect(sitesOf({ engine: {}, policy: "ksm" }, [...base, { k: "mergeable", s: 0 }, { k: "tick", n: 1 }])).toContain("scan")
  })
})
