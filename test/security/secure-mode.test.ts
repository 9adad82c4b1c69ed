/**
 * Secure mode (VUsion's defence) and domains as the isolation boundary (issue 7).
 * Work is observed by counting (copy-on-write faults, random allocations, frames), never by
 * timing: bench/security.ts measures the timing signal itself.
 */
import fc from "fast-check"
import { describe, expect, it, vi } from "vitest"
import type { AddressSpace } from "../helpers/internals.ts"
import { Outcome } from "../../src/core/merge.ts"
import { Engine, type EngineOptions } from "../helpers/internals.ts"
import { FRAME_KSM, ZERO_FRAME } from "../../src/memory/frames.ts"
import { PAGE_MERGED } from "../../src/memory/flags.ts"
import { checkCounters } from "../helpers/recount.ts"
import { checkDomainIsolation, checkSecureInvariants } from "../helpers/security.ts"

const PS = 512

function page(byte: number, mark = -1): Uint8Array {
  const p = new Uint8Array(PS).fill(byte)
  if (mark >= 0) {
    p[5] = mark
    p[PS - 9] = mark ^ 0x33
  }
  return p
}

/** What one write to `s` at page `pi` cost, by counting. */
function writeCost(engine: Engine, s: AddressSpace, pi: number): { cow: number; random: number; plain: number } {
  const pool = engine.pool
  const r = vi.spyOn(pool, "allocRandom")
  const a = vi.spyOn(pool, "alloc")
  const cow0 = engine.stats().cowFaults
  s.writeU8(pi * PS + 1, 0xaa)
  const out = { cow: engine.stats().cowFaults - cow0, random: r.mock.calls.length, plain: a.mock.calls.length }
  r.mockRestore()
  a.mockRestore()
  return out
}

function isCandidateState(engine: Engine, s: AddressSpace, pi: number): boolean {
  const fl = s.pflags[pi]!
  return !s.isWritable(pi) && (fl & PAGE_MERGED) !== 0 && (engine.pool.flags[s.frameAt(pi)]! & FRAME_KSM) !== 0
}

describe("secure mode: a write does not reveal whether another space holds the same content", () => {
  it("a merged page and a page with no partner are in the same state and cost the same first write", () => {
    const engine = new Engine({ pageSize: PS, secure: true, idlePasses: 0, autoCompact: false })
    const victim = engine.createSpace({ size: PS, domain: "g" })
    victim.write(0, page(1, 7))
    victim.merge()
    const attacker = engine.createSpace({ size: 2 * PS, domain: "g" })
    attacker.write(0, page(1, 7)) // the victim's content: finds a partner
    attacker.write(PS, page(1, 8)) // nobody's: no partner
    const r = attacker.merge()
    expect([r.merged, r.inserted]).toEqual([1, 1])
    expect(isCandidateState(engine, attacker, 0)).toBe(true)
    expect(isCandidateState(engine, attacker, 1)).toBe(true)
    const merged = writeCost(engine, attacker, 0)
    const unique = writeCost(engine, attacker, 1)
    expect(merged).toEqual(unique)
    expect(merged).toEqual({ cow: 1, random: 1, plain: 0 })
    checkCounters(engine)
    checkSecureInvariants(engine)
  })

  it("in the default mode the same experiment shows the signal (unique pages are reused in place)", () => {
    const engine = new Engine({ pageSize: PS, autoCompact: false })
    const victim = engine.createSpace({ size: PS, domain: "g" })
    victim.write(0, page(1, 7))
    victim.merge()
    const attacker = engine.createSpace({ size: 2 * PS, domain: "g" })
    attacker.write(0, page(1, 7))
    attacker.write(PS, page(1, 8))
    attacker.merge()
    expect(writeCost(engine, attacker, 0).cow).toBe(1)
    expect(writeCost(engine, attacker, 1).cow).toBe(0)
  })

  it("a crowded page becomes a stand-in table entry: same state, same write cost as an inserted one", () => {
    const engine = new Engine({ pageSize: PS, secure: true, idlePasses: 0, checksum: () => 3, maxCandidates: 1, autoCompact: false })
    Object.assign(engine.core, { checksum: () => 4, thirdHash: () => 5 })
    const s = engine.createSpace({ size: 6 * PS })
    for (let i = 0; i < 6; i++) s.write(i * PS, page(2, i))
    const r = s.merge()
    expect(r.skipped.crowded).toBeGreaterThan(0)
    expect(r.inserted + r.skipped.crowded).toBe(6)
    for (let i = 0; i < 6; i++) expect(isCandidateState(engine, s, i)).toBe(true)
    const costs = [0, 1, 2, 3, 4, 5].map((i) => writeCost(engine, s, i))
    for (const c of costs) expect(c).toEqual({ cow: 1, random: 1, plain: 0 })
    checkCounters(engine)
    // A crowded stand-in is in no chain: a later identical page does not find it.
    const t = engine.createSpace({ size: PS })
    t.write(0, page(2, 5))
    t.merge()
    checkCounters(engine)
  })

  it("without secure mode a crowded page stays writable (the signal secure mode removes)", () => {
    const engine = new Engine({ pageSize: PS, checksum: () => 3, maxCandidates: 1, autoCompact: false })
    Object.assign(engine.core, { checksum: () => 4, thirdHash: () => 5 })
    const s = engine.createSpace({ size: 6 * PS })
    for (let i = 0; i < 6; i++) s.write(i * PS, page(2, i))
    const r = s.merge()
    expect(r.skipped.crowded).toBeGreaterThan(0)
    const writable = [0, 1, 2, 3, 4, 5].filter((i) => s.isWritable(i))
    expect(writable.length).toBe(r.skipped.crowded)
  })

  it("unmerge copies merged and partnerless pages alike, into random frames", () => {
    const engine = new Engine({ pageSize: PS, secure: true, idlePasses: 0, autoCompact: false })
    const v = engine.createSpace({ size: PS })
    v.write(0, page(3, 1))
    v.merge()
    const a = engine.createSpace({ size: 2 * PS })
    a.write(0, page(3, 1))
    a.write(PS, page(3, 2))
    a.merge()
    const spy = vi.spyOn(engine.pool, "allocRandom")
    expect(a.unmerge(0, PS)).toBe(1)
    expect(a.unmerge(PS, PS)).toBe(1)
    expect(spy).toHaveBeenCalledTimes(2)
    spy.mockRestore()
    checkCounters(engine)
    checkSecureInvariants(engine)
  })

  it("secureDomains: only the listed domains pay; the others keep reuse in place", () => {
    const engine = new Engine({ pageSize: PS, secureDomains: ["guest"], idlePasses: 0, autoCompact: false })
    const g = engine.createSpace({ size: PS, domain: "guest" })
    const h = engine.createSpace({ size: PS, domain: "host" })
    expect([g.secure, h.secure]).toEqual([true, false])
    g.write(0, page(4, 1))
    h.write(0, page(4, 1))
    g.merge()
    h.merge()
    expect(writeCost(engine, g, 0).cow).toBe(1)
    expect(writeCost(engine, h, 0).cow).toBe(0)
    expect(g.fork().secure).toBe(true)
  })
})

describe("secure mode: frames come from a randomised free list", () => {
  /** The frame the next copy-on-write gets right after frame `f` was freed. */
  function reuseHits(options: EngineOptions, trials: number): number {
    const engine = new Engine({ pageSize: PS, autoCompact: false, ...options })
    const s = engine.createSpace({ size: 64 * PS })
    s.fill(0, s.size, 1)
    let hits = 0
    for (let t = 0; t < trials; t++) {
      const victim = t % 32
      const freed = s.frameAt(victim)
      s.discard(victim * PS, PS)
      s.writeU8(victim * PS + 7, 9) // fault: allocate
      if (s.frameAt(victim) === freed) hits++
    }
    checkCounters(engine)
    return hits
  }

  it("default: a write gets the frame freed just before (predictable); secure: almost never", () => {
    expect(reuseHits({}, 100)).toBe(100)
    // About 2000 free frames in the slab: the chance of 10 hits in 100 is below 1e-20.
    expect(reuseHits({ secure: true }, 100)).toBeLessThan(10)
  })

  it("a page entered in the table moves to a random frame; merged frames never stay where the first writer put them", () => {
    const engine = new Engine({ pageSize: PS, secure: true, idlePasses: 0, autoCompact: false })
    const s = engine.createSpace({ size: 32 * PS })
    for (let i = 0; i < 32; i++) s.write(i * PS, page(5, i))
    const before = Array.from(s.frameTable())
    s.merge()
    const same = before.filter((f, i) => s.frameAt(i) === f).length
    expect(same).toBeLessThan(4)
    checkCounters(engine)
  })

  it("allocRandom draws from every free frame (uniform enough) and keeps the pool consistent", () => {
    const engine = new Engine({ pageSize: PS, slabBytes: 16 * PS, autoCompact: false })
    const pool = engine.pool
    pool.ensureFree(64)
    const seen = new Map<number, number>()
    for (let t = 0; t < 4000; t++) {
      const f = pool.allocRandom(t % 2 === 0)
      pool.refcount[f] = 1
      seen.set(f, (seen.get(f) ?? 0) + 1)
      pool.decref(f)
    }
    expect(engine.memory().framesInUse).toBe(0)
    // Every free frame was drawn; none hugely more often than the rest.
    expect(seen.size).toBe(pool.framesFree)
    expect(Math.max(...seen.values())).toBeLessThan((4000 / seen.size) * 3)
  })
})

describe("secure mode: only pages that stayed unwritten are candidates", () => {
  it("idlePasses 1: armed at the first merge, merged at the next one if unwritten", () => {
    const engine = new Engine({ pageSize: PS, secure: true, autoCompact: false })
    expect(engine.core.idlePasses).toBe(1)
    const s = engine.createSpace({ size: 3 * PS })
    for (let i = 0; i < 3; i++) s.write(i * PS, page(6, 1))
    const r1 = s.merge()
    expect(r1.skipped.notIdle).toBe(3)
    for (let i = 0; i < 3; i++) expect(s.isWritable(i)).toBe(false)
    // Page 1 is written between the passes: a cheap fault (no copy), and it starts over.
    expect(writeCost(engine, s, 1)).toEqual({ cow: 0, random: 0, plain: 0 })
    s.writeU8(PS + 1, 6) // back to the shared content
    const r2 = s.merge()
    expect([r2.inserted, r2.merged, r2.skipped.notIdle]).toEqual([1, 1, 1])
    expect(s.frameAt(0)).toBe(s.frameAt(2))
    const r3 = s.merge()
    expect(r3.merged).toBe(1)
    expect(new Set(Array.from(s.frameTable())).size).toBe(1)
    checkCounters(engine)
    checkSecureInvariants(engine)
  })

  it("idlePasses 2 needs three passes; idlePasses 0 merges at once", () => {
    for (const [passes, want] of [
      [0, 1],
      [2, 3],
    ] as const) {
      const engine = new Engine({ pageSize: PS, secure: true, idlePasses: passes, autoCompact: false })
      const s = engine.createSpace({ size: 2 * PS })
      s.fill(0, s.size, 9)
      let n = 0
      while (s.frameAt(0) !== s.frameAt(1)) {
        s.merge()
        n++
        expect(n).toBeLessThanOrEqual(want)
      }
      expect(n).toBe(want)
    }
  })

  it("paths that make a page writable without a fault restart its idle count", () => {
    const engine = new Engine({ pageSize: PS, secure: true, autoCompact: false })
    const s = engine.createSpace({ size: 2 * PS })
    s.fill(0, s.size, 7)
    s.merge() // armed
    // writeProtect(false) makes the pages writable; writes then take no fault...
    s.writeProtect(0, s.size, true)
    s.writeProtect(0, s.size, false)
    s.writeU8(3, 1)
    s.writeU8(PS + 3, 1)
    s.writeProtect(0, s.size, true)
    // ...so the next pass must arm again, not merge.
    expect(s.merge().skipped.notIdle).toBe(2)
    expect(s.merge().merged).toBe(1)
    // unmerge gives writable private pages: same rule.
    s.unmerge()
    s.writeU8(5, 2)
    s.writeU8(PS + 5, 2)
    expect(s.merge().skipped.notIdle).toBe(2)
    checkSecureInvariants(engine)
    checkCounters(engine)
  })

  it("a fork child starts with no idle history; the parent's armed pages stay armed", () => {
    const engine = new Engine({ pageSize: PS, secure: true, autoCompact: false })
    const s = engine.createSpace({ size: 2 * PS })
    s.fill(0, s.size, 8)
    s.merge()
    const c = s.fork()
    expect(c.idle).not.toBe(null)
    expect(Array.from(c.idle!)).toEqual([0, 0])
    expect(c.merge().skipped.notIdle).toBe(2)
    expect(s.merge().merged + s.merge().merged).toBeGreaterThanOrEqual(1)
    checkSecureInvariants(engine)
    checkCounters(engine)
  })
})

describe("domains are the isolation boundary", () => {
  it("identical pages of two domains never share a frame, through merge() or fork()", () => {
    for (const opts of [{}, { secure: true, idlePasses: 0 }] as EngineOptions[]) {
      const engine = new Engine({ pageSize: PS, autoCompact: false, ...opts })
      const x = engine.createSpace({ size: 4 * PS, domain: "x" })
      const y = engine.createSpace({ size: 4 * PS, domain: "y" })
      for (const s of [x, y]) for (let i = 0; i < 4; i++) s.write(i * PS, page(i, 3))
      const xc = x.fork()
      expect(xc.domain).toBe("x")
      for (const s of [x, y, xc]) s.merge()
      for (let i = 0; i < 4; i++) {
        expect(y.frameAt(i)).not.toBe(x.frameAt(i))
        expect(y.frameAt(i)).not.toBe(xc.frameAt(i))
      }
      checkDomainIsolation(engine)
      checkCounters(engine)
    }
  })

  it("constant pages merge across secure domains only; other contents never", () => {
    const engine = new Engine({ pageSize: PS, secureDomains: ["a", "b"], idlePasses: 0, useZeroPages: false, autoCompact: false })
    const a = engine.createSpace({ size: 3 * PS, domain: "a" })
    const b = engine.createSpace({ size: 3 * PS, domain: "b" })
    const c = engine.createSpace({ size: 3 * PS, domain: "c" })
    for (const s of [a, b, c]) {
      s.fill(0, PS, 0x41) // constant
      s.fill(PS, PS, 0) // constant zero, useZeroPages off
      s.write(2 * PS, page(0x41, 1)) // almost constant
      s.merge()
    }
    expect(a.frameAt(0)).toBe(b.frameAt(0))
    expect(a.frameAt(1)).toBe(b.frameAt(1))
    expect(a.frameAt(2)).not.toBe(b.frameAt(2))
    // c is not secure: its constant pages stay in its own domain.
    expect(c.frameAt(0)).not.toBe(a.frameAt(0))
    expect(c.frameAt(1)).not.toBe(a.frameAt(1))
    expect(checkDomainIsolation(engine)).toBe(2)
    checkCounters(engine)
  })

  it("mergeAcrossDomains lifts the boundary, in both modes", () => {
    for (const opts of [{}, { secure: true, idlePasses: 0 }] as EngineOptions[]) {
      const engine = new Engine({ pageSize: PS, mergeAcrossDomains: true, autoCompact: false, ...opts })
      const x = engine.createSpace({ size: PS, domain: "x" })
      const y = engine.createSpace({ size: PS, domain: "y" })
      x.write(0, page(1, 9))
      y.write(0, page(1, 9))
      x.merge()
      y.merge()
      expect(x.frameAt(0)).toBe(y.frameAt(0))
    }
  })

  type Op =
    | { k: "create"; domain: number; pages: number }
    | { k: "write"; s: number; pg: number; n: number; byte: number; mark: number }
    | { k: "writeU32"; s: number; addr: number; v: number }
    | { k: "merge"; s: number }
    | { k: "unmerge"; s: number }
    | { k: "fork"; s: number }
    | { k: "discard"; s: number; pg: number }
    | { k: "dispose"; s: number }
    | { k: "tick"; n: number }
    | { k: "compact" }

  const opArb: fc.Arbitrary<Op> = fc.oneof(
    { weight: 2, arbitrary: fc.record({ k: fc.constant("create" as const), domain: fc.nat(2), pages: fc.integer({ min: 1, max: 6 }) }) },
    { weight: 6, arbitrary: fc.record({ k: fc.constant("write" as const), s: fc.nat(99), pg: fc.nat(9), n: fc.integer({ min: 1, max: 3 }), byte: fc.constantFrom(0, 1, 0x41), mark: fc.integer({ min: -1, max: 2 }) }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant("writeU32" as const), s: fc.nat(99), addr: fc.nat(6 * PS), v: fc.nat() }) },
    { weight: 4, arbitrary: fc.record({ k: fc.constant("merge" as const), s: fc.nat(99) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant("unmerge" as const), s: fc.nat(99) }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant("fork" as const), s: fc.nat(99) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant("discard" as const), s: fc.nat(99), pg: fc.nat(9) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant("dispose" as const), s: fc.nat(99) }) },
    { weight: 3, arbitrary: fc.record({ k: fc.constant("tick" as const), n: fc.integer({ min: 1, max: 40 }) }) },
    { weight: 1, arbitrary: fc.constant({ k: "compact" as const }) },
  )

  function run(ops: Op[], options: EngineOptions, policy: "ksm" | "tracked" | null): void {
    const engine = new Engine({ pageSize: PS, slabBytes: 8 * PS, maxPageSharing: 3, seed: 2, ...options })
    const scanner = policy === null ? null : engine.scanner({ policy, pagesToScan: 20, ...(policy === "tracked" ? { stablePasses: 1, rangePages: 4 } : {}) })
    const spaces: AddressSpace[] = []
    const ref = new Map<AddressSpace, Uint8Array>()
    const pick = (i: number): AddressSpace | undefined => (spaces.length === 0 ? undefined : spaces[i % spaces.length])
    for (const op of ops) {
      if (op.k === "create") {
        const s = engine.createSpace({ size: op.pages * PS, domain: `d${op.domain}` })
        s.setMergeAny(true)
        spaces.push(s)
        ref.set(s, new Uint8Array(s.size))
      } else if (op.k === "tick") {
        for (let i = 0; i < op.n && scanner !== null; i++) scanner.tick()
      } else if (op.k === "compact") {
        engine.compact()
      } else {
        const s = pick(op.s)
        if (s === undefined) continue
        const r = ref.get(s)!
        switch (op.k) {
          case "write": {
            const p0 = op.pg % s.pages
            const n = Math.min(op.n, s.pages - p0)
            for (let i = 0; i < n; i++) {
              const p = page(op.byte, op.mark)
              s.write((p0 + i) * PS, p)
              r.set(p, (p0 + i) * PS)
            }
            break
          }
          case "writeU32": {
            const a = op.addr % (s.size - 3)
            s.writeU32(a, op.v)
            new DataView(r.buffer).setUint32(a, op.v, true)
            break
          }
          case "merge":
            s.merge()
            break
          case "unmerge":
            s.unmerge()
            break
          case "fork": {
            const c = s.fork()
            spaces.push(c)
            ref.set(c, r.slice())
            break
          }
          case "discard": {
            const p = op.pg % s.pages
            s.discard(p * PS, PS)
            r.fill(0, p * PS, (p + 1) * PS)
            break
          }
          case "dispose":
            s.dispose()
            spaces.splice(spaces.indexOf(s), 1)
            ref.delete(s)
            break
        }
      }
      for (const s of spaces) expect(Buffer.compare(s.read(0, s.size), ref.get(s)!)).toBe(0)
      checkCounters(engine)
      checkDomainIsolation(engine)
      checkSecureInvariants(engine)
    }
    for (const s of [...spaces]) s.dispose()
    expect(engine.memory().framesInUse).toBe(0)
  }

  const modes: [string, EngineOptions][] = [
    ["default", {}],
    ["secure", { secure: true }],
    ["secure, idlePasses 0", { secure: true, idlePasses: 0 }],
    ["one secure domain", { secureDomains: ["d0"], idlePasses: 0 }],
  ]
  for (const [name, options] of modes) {
    for (const policy of [null, "ksm", "tracked"] as const) {
      it(`random programs (${name}, ${policy === null ? "merge() only" : `scanner ${policy}`}): contents exact, no frame crosses a domain, armed pages never writable`, () => {
        fc.assert(
          fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) =>
            run([{ k: "create", domain: 0, pages: 4 }, { k: "create", domain: 1, pages: 4 }, ...ops], options, policy),
          ),
          { numRuns: 60 },
        )
      })
    }
  }

  it("the scanner merges across spaces of one domain, in secure mode too", () => {
    for (const policy of ["ksm", "tracked"] as const) {
      const engine = new Engine({ pageSize: PS, secure: true, autoCompact: false })
      const x1 = engine.createSpace({ size: 4 * PS, domain: "x" })
      const x2 = engine.createSpace({ size: 4 * PS, domain: "x" })
      const y = engine.createSpace({ size: 4 * PS, domain: "y" })
      for (const s of [x1, x2, y]) {
        for (let i = 0; i < 4; i++) s.write(i * PS, page(i + 1, 4))
        s.setMergeAny(true)
      }
      const k = engine.scanner({ policy, ...(policy === "tracked" ? { stablePasses: 1 } : {}) })
      for (let i = 0; i < 12; i++) k.tick()
      for (let i = 0; i < 4; i++) {
        expect(x1.frameAt(i)).toBe(x2.frameAt(i))
        expect(y.frameAt(i)).not.toBe(x1.frameAt(i))
      }
      checkDomainIsolation(engine)
      checkSecureInvariants(engine)
      checkCounters(engine)
    }
  })

  it("ZERO_FRAME and Outcome are what the tests assume", () => {
    expect(ZERO_FRAME).toBe(0)
    expect(Outcome.NotIdle).toBe(7)
  })
})
