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
 *
 * The programs are the shared random programs (test/helpers/program.ts, world.ts); this suite
 * adds the failpoints, and checks domain isolation and secure mode's page states after each step.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { OutOfMemory, SksmError } from "../../src/errors.ts"
import type { EngineOptions } from "../helpers/internals.ts"
import { type Op, opArb, type Shape } from "../helpers/program.ts"
import { checkDomainIsolation, checkSecureInvariants, expectUnchanged, snapshot } from "../helpers/security.ts"
import { check, type Extension, newWorld, step, teardown, type World } from "../helpers/world.ts"

const PS = 512

const shape: Shape = { pages: 6, domains: 2, page: 6, run: 3, addr: 3000, len: 900, bytes: [0, 1, 2], unique: false }
const opsArb = opArb(shape, {
  create: 2,
  write: 4,
  fillPages: 6,
  writeU32: 3,
  discard: 1,
  fork: 2,
  pin: 1,
  unpin: 1,
  merge: 5,
  unmerge: 2,
  unmergeAll: 1,
  dispose: 1,
  compact: 1,
  tick: 3,
  mergeAny: 1,
})

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

interface Injected {
  readonly w: World
  readonly inj: Injector
}

function build(cfg: Config): Injected {
  const w = newWorld(
    { pageSize: PS, slabBytes: 4 * PS, maxPageSharing: 3, seed: 1, autoCompact: { minFreeFrames: 2, minFreeRatio: 0 }, ...cfg.engine },
    cfg.policy === null ? undefined : { policy: cfg.policy, pagesToScan: 8, ...(cfg.policy === "tracked" ? { stablePasses: 1, rangePages: 2 } : {}) },
  )
  const inj = new Injector()
  w.engine.pool.failpoint = inj.hook
  w.engine.core.table.failpoint = inj.hook
  return { w, inj }
}

const ext: Extension = {
  check: (w) => {
    checkSecureInvariants(w.engine)
    checkDomainIsolation(w.engine)
  },
}

/** A fresh world in the state after ops[0..n), with no fault injected. */
function replay(cfg: Config, ops: readonly Op[], n: number): Injected {
  const x = build(cfg)
  for (let i = 0; i < n; i++) step(x.w, ops[i]!)
  return x
}

interface Tally {
  points: number
  failed: number
  absorbed: number
  sites: Set<string>
}

function runProgram(cfg: Config, ops: readonly Op[], tally: Tally): void {
  let { w, inj } = build(cfg)
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!
    for (let k = 1; ; k++) {
      const before = snapshot(w.engine)
      inj.arm(k)
      let err: unknown = null
      try {
        step(w, op)
      } catch (e) {
        err = e
      }
      const { fired, sites } = inj
      inj.arm(-1)
      if (err !== null) {
        // Only the injected failure may escape, as a typed OutOfMemory, having changed nothing.
        if (!(err instanceof SksmError) || err._tag !== "OutOfMemory" || !fired) throw err
        expectUnchanged(before, snapshot(w.engine), `op ${i} ${JSON.stringify(op)} failed at point ${k} (${sites.at(-1)}) but changed state`)
        check(w, ext)
        tally.failed++
        tally.points++
        tally.sites.add(sites.at(-1)!)
        continue
      }
      if (sites.includes("unreserved")) throw new Error(`op ${i} ${JSON.stringify(op)} allocated a frame it had not reserved`)
      check(w, ext)
      if (!fired) break
      // Absorbed by design (scanner tick, automatic compaction): the call completed.
      tally.absorbed++
      tally.points++
      tally.sites.add(sites[k - 1]!)
      ;({ w, inj } = replay(cfg, ops, i))
    }
  }
  teardown(w)
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
        fc.property(fc.array(opsArb, { minLength: 1, maxLength: 25 }), (ops) => {
          runProgram(cfg, [{ k: "create", pages: 4, domain: 0, advise: false }, { k: "mergeAny", s: 0, on: true }, ...ops], tally)
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
      const { w, inj } = replay(cfg, ops, ops.length - 1)
      inj.arm(Number.POSITIVE_INFINITY)
      step(w, ops.at(-1)!)
      return inj.sites
    }
    const base: Op[] = [
      { k: "create", pages: 4, domain: 0, advise: false },
      { k: "fillPages", s: 0, page: 0, n: 4, byte: 1, unique: false },
    ]
    const dflt: Config = { engine: {}, policy: null }
    expect(sitesOf(dflt, [...base, { k: "merge", s: 0, page: 0, n: 4 }])).toContain("table")
    expect(sitesOf(dflt, [...base, { k: "merge", s: 0, page: 0, n: 4 }, { k: "unmerge", s: 0, page: 0, n: 4 }])).toContain("unmerge")
    expect(sitesOf(dflt, [...base, { k: "fork", s: 0 }])).toContain("space")
    expect(sitesOf(dflt, [...base, { k: "pin", s: 0, addr: PS, len: PS }, { k: "fork", s: 0 }])).toContain("fork")
    expect(sitesOf(dflt, [...base, { k: "fork", s: 0 }, { k: "writeU32", s: 0, addr: 8, value: 1 }])).toContain("cow")
    expect(sitesOf(dflt, [...base, { k: "compact", budget: 4 }])).toContain("compact")
    expect(sitesOf({ engine: { secure: true, idlePasses: 0 }, policy: null }, [...base, { k: "merge", s: 0, page: 0, n: 4 }])).toContain("merge")
    expect(sitesOf({ engine: {}, policy: "ksm" }, [...base, { k: "mergeAny", s: 0, on: true }, { k: "tick", n: 1 }])).toContain("scan")
  })
})
