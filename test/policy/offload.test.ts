/**
 * The offload protocol (src/policy/offload.ts): a hashing thread's digests are used only while
 * they describe the frame's current bytes. Model-based: random programs interleave every host
 * operation of the shared program (writes of every kind, discards, forks, disposals, merges,
 * unmerges, advice, pins, write protection, compaction, batches of the scanner) with the two
 * halves of the thread's work, taken apart (read and hash a frame; publish later), at every
 * point. After every step: every digest the host would use equals a fresh hash of the frame,
 * and everything the shared model checks (contents, counters) holds.
 * Equivalence: on the same contents, the offloaded scanner takes the in-thread scanner's
 * decisions (same counters and the same page-to-frame sharing after the same passes).
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { ZERO_FRAME } from "../../src/memory/frames.ts"
import { HasherState, OffloadHasher } from "../../src/policy/offload.ts"
import { staleDigest } from "../helpers/digests.ts"
import { checkCounters } from "../helpers/recount.ts"
import { Engine } from "../helpers/internals.ts"
import { type Op, opArb, type Shape } from "../helpers/program.ts"
import { type Extension, check, newWorld, run, teardown, type World } from "../helpers/world.ts"

const PS = 512

type ThreadOp = { k: "take" } | { k: "publish" } | { k: "drain" }

/** A hashing thread driven by hand: take() and publish() are the two halves of one job. */
class HandThread {
  hasher: OffloadHasher | null = null
  pending = false
  readonly w: World
  constructor(w: World) {
    this.w = w
  }

  #hasher(): OffloadHasher {
    const ch = this.w.scanner!.offloadChannel()!
    if (this.hasher === null) this.hasher = new OffloadHasher(ch)
    return this.hasher
  }

  take(): void {
    if (this.pending) return
    const h = this.#hasher()
    let r = h.take()
    if (r === -HasherState.NeedChannel - 1) {
      h.update(this.w.scanner!.offloadChannel()!)
      r = h.take()
    }
    this.pending = r === 1
  }

  publish(): void {
    if (!this.pending) return
    this.hasher!.publish()
    this.pending = false
  }

  drain(): void {
    this.publish()
    const h = this.#hasher()
    for (;;) {
      const s = h.run()
      if (s !== HasherState.NeedChannel) return
      h.update(this.w.scanner!.offloadChannel()!)
    }
  }
}

/** Every digest the host would use (core.digested) equals a fresh hash of the frame's bytes. */
function checkDigests(w: World): void {
  const stale = staleDigest(w.engine, w.spaces.map((t) => t.space))
  if (stale !== null) throw new Error(stale)
}

const shape: Shape = { pages: 8, domains: 2, page: 10, run: 5, addr: 8 * PS, len: 2 * PS, bytes: [0, 1, 2], unique: false }
const ops = opArb<ThreadOp>(
  shape,
  { create: 2, fillPages: 6, write: 3, fill: 2, writeU32: 4, discard: 1, fork: 1, dispose: 1, merge: 2, unmerge: 1, advise: 1, mergeAny: 1, pin: 1, unpin: 1, writeProtect: 1, tick: 8, compact: 1, unmergeAll: 1 },
  [
    { weight: 6, arbitrary: fc.constant({ k: "take" as const }) },
    { weight: 6, arbitrary: fc.constant({ k: "publish" as const }) },
    { weight: 2, arbitrary: fc.constant({ k: "drain" as const }) },
  ],
)

const start: Op[] = [
  { k: "create", pages: 6, domain: 0, advise: true },
  { k: "create", pages: 5, domain: 0, advise: true },
  { k: "fillPages", s: 0, page: 0, n: 6, byte: 1, unique: false },
  { k: "fillPages", s: 1, page: 0, n: 5, byte: 1, unique: false },
]

describe("offload protocol, model-based", () => {
  it("random programs (ksm and tracked) interleaving host operations with the thread's read and publish: no stale digest is ever used", () => {
    fc.assert(
      fc.property(fc.array(ops, { minLength: 10, maxLength: 80, size: "max" }), fc.integer({ min: 1, max: 12 }), fc.boolean(), (program, pagesToScan, tracked) => {
        const policy = tracked ? { policy: "tracked" as const, stablePasses: 1, rangePages: 4 } : { policy: "ksm" as const }
        const w = newWorld({ pageSize: PS, maxPageSharing: 3, seed: 7, sharedMemory: true }, { ...policy, pagesToScan, offload: true })
        const thread = new HandThread(w)
        const ext: Extension<ThreadOp> = {
          step: (_w, op) => thread[op.k](),
          check: checkDigests,
        }
        run(w, [...start, ...program], ext)
        // Settle: the thread keeps up, the scanner converges, everything still holds.
        for (let i = 0; i < 40; i++) {
          w.scanner!.tick()
          thread.drain()
        }
        check(w, ext)
        teardown(w)
      }),
      { numRuns: 200 },
    )
  })
})

/** Spaces of random pages drawn from a few contents (some zero), the same in every engine built from `seed`. */
function fleet(engine: Engine, seed: number, spaces: number, pages: number, contents: number): void {
  let x = seed >>> 0 || 1
  const rnd = (): number => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 0x100000000
  }
  for (let s = 0; s < spaces; s++) {
    const sp = engine.createSpace({ size: pages * PS, name: `s${s}` })
    sp.advise(0, pages * PS, "mergeable")
    for (let p = 0; p < pages; p++) {
      const c = Math.floor(rnd() * contents)
      if (c === 0) continue
      for (let o = 0; o < PS; o += 64) sp.writeU32(p * PS + o, c * 0x01000193 + (o === 128 ? Math.floor(rnd() * 3) : 0))
    }
  }
}

describe("offload equivalence", () => {
  it.each(["ksm", "tracked"] as const)("%s: on the same contents, the offloaded scanner's counters and sharing equal the in-thread scanner's after the same passes", (policy) => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1e9 }),
        fc.integer({ min: 1, max: 40 }),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 2, max: 8 }),
        (seed, pagesToScan, smartScan, useZeroPages, passes) => {
          const a = new Engine({ pageSize: PS, seed: 3, useZeroPages, maxPageSharing: 4 })
          const b = new Engine({ pageSize: PS, seed: 3, useZeroPages, maxPageSharing: 4, sharedMemory: true })
          fleet(a, seed, 3, 40, 12)
          fleet(b, seed, 3, 40, 12)
          const opts = policy === "ksm" ? { policy, pagesToScan, smartScan } : { policy, pagesToScan, stablePasses: smartScan ? 1 : 2 }
          const sa = a.scanner(opts)
          const sb = b.scanner({ ...opts, offload: true })
          const h = new OffloadHasher(sb.offloadChannel()!)
          while (a.stats().fullScans < passes) sa.tick()
          let waited = 0
          while (b.stats().fullScans < passes) {
            if (sb.tick().waited) waited++
            if (h.run() === HasherState.NeedChannel) h.update(sb.offloadChannel()!)
          }
          expect(b.stats()).toEqual(a.stats())
          // The same pages share frames (frame numbers may differ; the partition may not).
          const sharing = (e: Engine) => e.spaces().map((sp) => sp.frameTable()).map((t) => Array.from(t, (f) => (f === ZERO_FRAME ? -1 : t.indexOf(f))))
          expect(sharing(b)).toEqual(sharing(a))
          for (let s = 0; s < 3; s++) expect(Buffer.compare(b.spaces()[s]!.read(0, 40 * PS), a.spaces()[s]!.read(0, 40 * PS))).toBe(0)
          // ksm: the host hashed nothing itself, every digest came from the thread.
          if (policy === "ksm") {
            expect(sb.hostHashes).toBe(0)
            expect(waited).toBeGreaterThan(0)
          }
        },
      ),
      { numRuns: 60 },
    )
  })
})

describe("store prefault: the hashing thread touches a shrink's new store", () => {
  const PAGE = 4096
  /** A shared engine with an offloading scanner and a hand-driven hasher; a half-duplicate space merged (frees half the store). */
  function merged(): { e: Engine; h: OffloadHasher; scanner: ReturnType<Engine["scanner"]>; ref: Uint8Array; space: ReturnType<Engine["createSpace"]> } {
    const e = new Engine({ seed: 5, sharedMemory: true })
    const scanner = e.scanner({ policy: "ksm", offload: true })
    const h = new OffloadHasher(scanner.offloadChannel()!)
    // 128 MiB: large enough that the shrink gives back store (stores over 4 MiB are at least 32 MiB).
    const pages = 32768
    const space = e.createSpace({ size: pages * PAGE })
    for (let p = 0; p < pages; p++) {
      space.fill(p * PAGE, PAGE, 1 + (p % 7))
      space.writeU32(p * PAGE, p % 2 === 0 ? p : 7)
    }
    const ref = space.read(0, space.size)
    space.merge()
    return { e, h, scanner, ref, space }
  }
  /** Run the hasher until it is idle (fetching a newer channel when it asks). */
  function drain(h: OffloadHasher, scanner: ReturnType<Engine["scanner"]>): void {
    for (;;) {
      const s = h.run()
      if (s !== HasherState.NeedChannel) return
      h.update(scanner.offloadChannel()!)
    }
  }
  const turn = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms))
  /** Let the background compaction move frames (a budget per turn) until the shrink asks for its store. */
  async function untilPrefaulting(e: Engine): Promise<void> {
    for (let i = 0; i < 500 && !e.pool.prefaulting; i++) await new Promise((r) => setImmediate(r))
    expect(e.pool.prefaulting).toBe(true)
  }

  it("an automatic shrink waits until the thread prefaulted the smaller store, then copies into that very store", async () => {
    const { e, h, scanner, ref, space } = merged()
    const before = e.memory().bytesReserved
    await untilPrefaulting(e)
    // The background continuation asked for a smaller store and waits: nothing shrank yet.
    expect(e.memory().bytesReserved).toBe(before)
    const spare = scanner.offloadChannel()!.spare!
    expect(spare.byteLength).toBeLessThan(before)
    drain(h, scanner)
    expect(e.pool.prefaulting).toBe(false)
    for (let i = 0; i < 50 && e.memory().bytesReserved === before; i++) await turn(5)
    expect(e.memory().bytesReserved).toBe(spare.byteLength)
    expect(e.pool.bytes.buffer).toBe(spare)
    expect(Buffer.compare(space.read(0, space.size), ref)).toBe(0)
    checkCounters(e)
  })

  it("without a thread to prefault, the shrink goes ahead after a bounded wait", async () => {
    const { e, ref, space } = merged()
    const before = e.memory().bytesReserved
    const t0 = performance.now()
    while (e.memory().bytesReserved === before && performance.now() - t0 < 3000) await turn(10)
    expect(e.memory().bytesReserved).toBeLessThan(before)
    expect(Buffer.compare(space.read(0, space.size), ref)).toBe(0)
    checkCounters(e)
  })

  it("the host's idle call (engine.maybeCompact) shrinks at once, without waiting", async () => {
    const { e, h, scanner, ref, space } = merged()
    const before = e.memory().bytesReserved
    await untilPrefaulting(e)
    e.maybeCompact()
    expect(e.memory().bytesReserved).toBeLessThan(before)
    expect(e.pool.prefaulting).toBe(false)
    // The thread finishing the old request later touches only the store nobody uses.
    drain(h, scanner)
    expect(Buffer.compare(space.read(0, space.size), ref)).toBe(0)
    checkCounters(e)
  })

  it("a spare counts in engine.memory() while it is held, and goes with the scanner", async () => {
    const { e, scanner } = merged()
    await untilPrefaulting(e)
    const spare = scanner.offloadChannel()!.spare!
    const held = e.memory().metadataBytes
    e.pool.dropSpare()
    expect(held - e.memory().metadataBytes).toBe(spare.byteLength)
    e.pool.prepareStore(1)
    expect(e.pool.prefaulting).toBe(true)
    // A scanner that does not offload replaces it: no prefaulter, no spare.
    e.scanner({ policy: "ksm" })
    expect(e.pool.prefaulter).toBeNull()
    expect(e.pool.prefaulting).toBe(false)
    expect(e.memory().metadataBytes).toBeLessThan(held - spare.byteLength)
  })
})
