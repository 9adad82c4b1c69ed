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
import { type HashOffload, HasherState, OffloadHasher } from "../../src/policy/offload.ts"
import { staleDigest } from "../helpers/digests.ts"
import { checkCounters } from "../helpers/recount.ts"
import { Engine } from "../helpers/internals.ts"
import { type Op, opArb, type Shape } from "../helpers/program.ts"
import { type Extension, check, newWorld, run, teardown, type World } from "../helpers/world.ts"

const PS = 512

/** A scanner's ring to its hashing thread (ScannerBase.offload is protected). */
const offloadOf = (scanner: object): HashOffload => (scanner as unknown as { offload: HashOffload }).offload

/** Step 1 of the protocol by hand for pages `pis` of `space` (write-protect, queue), then publish and ring. */
function queueByHand(off: HashOffload, space: ReturnType<Engine["createSpace"]>, pis: Iterable<number>): void {
  for (const pi of pis) {
    space.revokeWrite(pi)
    off.push(space.frameAt(pi))
  }
  off.flush(true)
}
/** 0, 1, ..., n - 1. */
const upTo = (n: number): number[] => Array.from({ length: n }, (_, i) => i)

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
    // Runs where the thread's equality certificates replaced compares on the host (most; the decisions stay the same).
    let certifiedRuns = 0
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
          if (b.pool.certified > 0) certifiedRuns++
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
    expect(certifiedRuns).toBeGreaterThan(30)
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
    // Each idle call makes a budgeted step (moves while the thread is still filling), none waits; they shrink.
    for (let i = 0; i < 200 && e.memory().bytesReserved === before; i++) e.maybeCompact()
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
    // The store, and per frame of the pool the write generation noted for the pre-copy and the planned move (8 bytes).
    expect(held - e.memory().metadataBytes).toBeGreaterThanOrEqual(spare.byteLength)
    expect(held - e.memory().metadataBytes).toBeLessThanOrEqual(spare.byteLength + 8 * (e.pool.bytes.byteLength / 4096))
    e.pool.prepareStore(1, () => {})
    expect(e.pool.prefaulting).toBe(true)
    // A scanner that does not offload replaces it: no prefaulter, no spare.
    e.scanner({ policy: "ksm" })
    expect(e.pool.prefaulter).toBeNull()
    expect(e.pool.prefaulting).toBe(false)
    expect(e.memory().metadataBytes).toBeLessThan(held - spare.byteLength)
  })
})

describe("doorbell: the host wakes the thread only when it must", () => {
  const PAGE = 4096
  /** An offloading scanner over `pages` distinct pages, a hand-driven hasher, and the ring's bell word. */
  function setup(pages = 64): { e: Engine; scanner: ReturnType<Engine["scanner"]>; h: OffloadHasher; bell: () => number } {
    const e = new Engine({ seed: 9, sharedMemory: true })
    const scanner = e.scanner({ policy: "ksm", offload: true, pagesToScan: 8, sleepMillis: 20 })
    const space = e.createSpace({ size: pages * PAGE })
    for (let p = 0; p < pages; p++) space.writeU32(p * PAGE, p + 1)
    space.advise(0, space.size, "mergeable")
    const h = new OffloadHasher(scanner.offloadChannel()!)
    return { e, scanner, h, bell: () => Atomics.load(h.ctl, h.bellIndex) }
  }

  it("the scanner's loop sets the poll period to its sleepMillis while it runs, 0 otherwise", async () => {
    const { scanner, h } = setup()
    expect(h.pollMillis).toBe(0)
    scanner.start()
    expect(h.pollMillis).toBe(20)
    scanner.set({ sleepMillis: 35 })
    expect(h.pollMillis).toBe(35)
    await scanner.stop()
    expect(h.pollMillis).toBe(0)
  })

  it("routine jobs reach a sleeping thread by its poll, without a ring; a batch that waits rings it, once", async () => {
    const { scanner, h, bell } = setup()
    scanner.start()
    await scanner.stop()
    offloadOf(scanner).pollMillis = 20
    expect(h.run()).toBe(HasherState.Idle)
    expect(h.sleep()).toBe(true)
    const b0 = bell()
    // The first tick waits at its first page (no digest yet) and rings; the thread is then awake for the host.
    let r = scanner.tick()
    expect(r.waited).toBe(true)
    expect(bell()).toBe(b0 + 1)
    // Still marked awake (the host cleared SLEEP when it rang): a second waiting batch does not ring again.
    r = scanner.tick()
    expect(bell()).toBe(b0 + 1)
    h.woke()
    expect(h.run()).toBe(HasherState.Idle)
    // Now every page the next batches walk is hashed or queued ahead: a batch that does not wait publishes without a ring.
    expect(h.sleep()).toBe(true)
    r = scanner.tick()
    expect(r.waited).toBe(false)
    expect(r.scanned).toBe(8)
    expect(bell()).toBe(b0 + 1)
    // The jobs are there for the thread to find when its poll period ends.
    h.woke()
    expect(h.run()).toBe(HasherState.Idle)
    expect(h.hashed).toBeGreaterThan(8)
  })

  it("with poll 0 (no loop running) every publish rings a sleeping thread; a thread that is not asleep is never rung", () => {
    const { scanner, h, bell } = setup(600)
    expect(h.run()).toBe(HasherState.Idle)
    const b0 = bell()
    scanner.tick() // the thread is not asleep: published, not rung
    expect(bell()).toBe(b0)
    expect(h.run()).toBe(HasherState.Idle)
    expect(scanner.tick().scanned).toBe(8)
    expect(h.sleep()).toBe(true)
    // This batch queues the 8 pages the last one moved the window over.
    expect(scanner.tick().scanned).toBe(8)
    expect(bell()).toBe(b0 + 1)
  })

  it("a thread about to sleep sees jobs published after its last look (no lost wake-up)", () => {
    const { scanner, h, bell } = setup()
    expect(h.run()).toBe(HasherState.Idle)
    const b0 = bell()
    // Published between run() going idle and sleep(): not rung (SLEEP not set yet), so sleep() must see them.
    scanner.tick()
    expect(bell()).toBe(b0)
    expect(h.sleep()).toBe(false)
    expect(h.run()).toBe(HasherState.Idle)
    expect(h.hashed).toBeGreaterThan(0)
    // A stop always rings, asleep or not.
    expect(h.sleep()).toBe(true)
    offloadOf(scanner).stop()
    expect(bell()).toBe(b0 + 1)
    expect(h.run()).toBe(HasherState.Stopped)
  })
})

describe("pre-copy: the thread copies the live frames into a shrink's store; the host copies only what changed since", () => {
  const PAGE = 4096
  type HostOp =
    | { k: "write"; page: number; value: number }
    | { k: "hot"; page: number; value: number }
    | { k: "fill"; page: number; byte: number }
    | { k: "discard"; page: number }
    | { k: "newSpace"; pages: number; byte: number }
    | { k: "pin"; page: number; value: number }
    | { k: "fork" }
    | { k: "compact"; budget: number }
    | { k: "thread"; chunks: number }
  const PAGES = 1536 // 6 MiB, three quarters duplicates: the shrink takes a 32 MiB store down to a few MiB
  const opArbP: fc.Arbitrary<HostOp> = fc.oneof(
    fc.record({ k: fc.constant("write" as const), page: fc.nat(PAGES - 1), value: fc.nat() }),
    fc.record({ k: fc.constant("hot" as const), page: fc.nat(15), value: fc.nat() }),
    fc.record({ k: fc.constant("fill" as const), page: fc.nat(PAGES - 1), byte: fc.nat(255) }),
    fc.record({ k: fc.constant("discard" as const), page: fc.nat(PAGES - 1) }),
    fc.record({ k: fc.constant("newSpace" as const), pages: fc.integer({ min: 1, max: 8 }), byte: fc.integer({ min: 1, max: 255 }) }),
    fc.record({ k: fc.constant("pin" as const), page: fc.nat(PAGES - 1), value: fc.nat() }),
    fc.constant({ k: "fork" as const }),
    fc.record({ k: fc.constant("compact" as const), budget: fc.integer({ min: 1, max: 64 }) }),
    fc.record({ k: fc.constant("thread" as const), chunks: fc.integer({ min: 1, max: 48 }) }),
  )

  it("random host work (writes, fills, discards, new frames, pins, forks, compaction) interleaved with the thread's copy chunks: every byte exact after the shrink", async () => {
    let precopied = 0
    let dirty = 0
    await fc.assert(
      fc.asyncProperty(fc.array(opArbP, { maxLength: 24 }), async (ops) => {
        const e = new Engine({ seed: 3, sharedMemory: true })
        const scanner = e.scanner({ policy: "ksm", offload: true })
        // 64 KiB per job: a 1-2 MiB copy takes many steps, so host work lands between them.
        const h = new OffloadHasher(scanner.offloadChannel()!, 64 << 10)
        const space = e.createSpace({ size: PAGES * PAGE })
        for (let p = 0; p < PAGES; p++) space.writeU32(p * PAGE, p % 4 === 0 ? p + 1 : 9)
        // A space the host keeps writing, in the top frames (so compaction moves them): its pages are
        // writable when the pre-copy is asked for, so the request must write-protect them.
        const hot = e.createSpace({ size: 16 * PAGE })
        for (let p = 0; p < 16; p++) hot.writeU32(p * PAGE + 4, 0xabc0 + p)
        space.merge()
        const all: { s: ReturnType<Engine["createSpace"]>; ref: Uint8Array }[] = [
          { s: space, ref: space.read(0, space.size) },
          { s: hot, ref: hot.read(0, hot.size) },
        ]
        // The background compaction moves frames, then asks for the smaller store (the pre-copy starts).
        for (let i = 0; i < 500 && !e.pool.prefaulting; i++) await new Promise((r) => setImmediate(r))
        expect(e.pool.prefaulting).toBe(true)
        const step = (n: number): void => {
          for (let i = 0; i < n; i++) {
            const r = h.take()
            if (r === -HasherState.NeedChannel - 1) h.update(scanner.offloadChannel()!)
            else if (r === 1) h.publish()
          }
        }
        const pinned = new Set<number>()
        for (const op of ops) {
          const ref = all[0]!.ref
          if (op.k === "write") {
            space.writeU32(op.page * PAGE + 8, op.value)
            new DataView(ref.buffer).setUint32(op.page * PAGE + 8, op.value, true)
          } else if (op.k === "hot") {
            hot.writeU32(op.page * PAGE + 8, op.value)
            new DataView(all[1]!.ref.buffer).setUint32(op.page * PAGE + 8, op.value, true)
          } else if (op.k === "fill") {
            space.fill(op.page * PAGE, PAGE, op.byte)
            ref.fill(op.byte, op.page * PAGE, (op.page + 1) * PAGE)
          } else if (op.k === "discard") {
            if (pinned.has(op.page)) continue // discard refuses a pinned page (PinnedPage)
            space.discard(op.page * PAGE, PAGE)
            ref.fill(0, op.page * PAGE, (op.page + 1) * PAGE)
          } else if (op.k === "newSpace") {
            const s = e.createSpace({ size: op.pages * PAGE })
            s.fill(0, s.size, op.byte)
            all.push({ s, ref: s.read(0, s.size) })
          } else if (op.k === "pin") {
            space.pin(op.page * PAGE, PAGE)
            pinned.add(op.page)
            space.writeU32(op.page * PAGE + 12, op.value)
            new DataView(ref.buffer).setUint32(op.page * PAGE + 12, op.value, true)
          } else if (op.k === "fork") {
            const c = space.fork()
            all.push({ s: c, ref: ref.slice() })
          } else if (op.k === "compact") {
            // Moves frames into frames that were free when the pre-copy was asked for (no write generation moves).
            all.push(...[1, 2, 3].map((i) => {
              const s = e.createSpace({ size: 64 * PAGE })
              s.fill(0, s.size, i)
              return { s, ref: s.read(0, s.size) }
            }))
            all.at(-2)!.s.dispose()
            all.splice(all.length - 2, 1)
            e.compact({ budgetPages: op.budget })
          } else step(op.chunks)
        }
        // The thread finishes the fill; the host's idle call shrinks at once into that store.
        step(1 << 12)
        expect(e.pool.prefaulting).toBe(false)
        const spare = scanner.offloadChannel()!.spare
        const before = e.memory().bytesReserved
        e.maybeCompact()
        if (e.memory().bytesReserved < before && spare !== null && e.pool.bytes.buffer === spare) {
          // Taken pre-copied: the host copied fewer frames than are in use.
          expect(e.pool.shrinkCopied).toBeLessThan(e.pool.framesInUse)
          precopied++
          if (e.pool.shrinkCopied > 0) dirty++
        }
        for (const { s, ref } of all) expect(Buffer.compare(s.read(0, s.size), ref)).toBe(0)
        scanner.detach?.()
      }),
      { numRuns: 60, examples: [[[{ k: "thread", chunks: 48 }, { k: "thread", chunks: 48 }, { k: "hot", page: 0, value: 5 }]]] },
    )
    // The runs took the pre-copied store, and in some the host had frames to copy again.
    expect(precopied).toBeGreaterThan(20)
    expect(dirty).toBeGreaterThan(5)
  }, 120_000)
})

describe("equality certificates: the thread's compare stands in for the host's", () => {
  const P = 4096
  const W = P / 4
  /** A page's words, and the same page under the keyed full checksum's key-independent differential (same sum, other bytes). */
  const X = new Uint32Array(W).map((_, i) => Math.imul(i + 1, 0x9e3779b1) >>> 0)
  const Y = X.slice()
  Y[7] = Y[7]! ^ 0x8000
  Y[11] = Y[11]! ^ 0x80000000
  const bytes = (w: Uint32Array): Uint8Array => new Uint8Array(w.buffer.slice(0))
  /** An engine with an offloading scanner whose ring the test fills page by page, and a hand-driven thread. */
  function setup(pages: Uint32Array[]) {
    const e = new Engine({ seed: 11, sharedMemory: true, autoCompact: false })
    const scanner = e.scanner({ policy: "ksm", offload: true })
    const h = new OffloadHasher(scanner.offloadChannel()!)
    const space = e.createSpace({ size: pages.length * P })
    pages.forEach((w, i) => space.write(i * P, bytes(w)))
    /** Step 1 of the protocol for pages `pis`, then the thread hashes them. */
    const hash = (...pis: number[]): void => {
      queueByHand(offloadOf(scanner), space, pis)
      expect(h.run()).toBe(HasherState.Idle)
    }
    return { e, space, hash, f: (pi: number) => space.frameAt(pi) }
  }

  it("equal bytes get a certificate the host takes without comparing; a checksum collision gets none", () => {
    const { e, space, hash, f } = setup([X, Y, X, X])
    expect(e.core.checksum(new Uint32Array(bytes(X).buffer), 0, W)).toBe(e.core.checksum(new Uint32Array(bytes(Y).buffer), 0, W))
    hash(0, 1, 2, 3)
    const d = e.pool.digests!
    // Y collides with X on the sum but not in its bytes: compared, no certificate; X after it compared with Y, none either; the last X with the X before it.
    expect([0, 1, 2, 3].map((pi) => d.rep[f(pi)]! - 1)).toEqual([-1, -1, -1, f(2)])
    expect(staleDigest(e, [space])).toBeNull()
    const before = e.pool.certified
    expect(e.pool.equal(f(2), f(3))).toBe(true)
    expect(e.pool.certified).toBe(before + 1)
    expect(e.pool.equal(f(0), f(1))).toBe(false)
    expect(e.pool.equal(f(0), f(2))).toBe(true) // no certificate: the compare
    expect(e.pool.certified).toBe(before + 1)
  })

  it("a certificate is taken only while the frame it names has the generation it was compared at", () => {
    // First X, then its second copy (the one later copies are compared with), then a third.
    const { e, space, hash, f } = setup([X, X, X, Y])
    hash(0, 1, 2)
    const d = e.pool.digests!
    expect([1, 2].map((pi) => d.rep[f(pi)]! - 1)).toEqual([f(0), f(1)])
    // The second copy is rewritten with Y (same sum) and hashed again: page 2's certificate names it at its old generation.
    space.write(1 * P, bytes(Y))
    hash(1)
    expect(e.pool.equal(f(1), f(2))).toBe(false)
    // Page 3 (Y) compared with page 1 as it is now (Y): a certificate at page 1's new generation, which the host takes...
    hash(3)
    expect(d.rep[f(3)]! - 1).toBe(f(1))
    expect(e.pool.equal(f(1), f(3))).toBe(true)
    // ...but pages 2 (X) and 3 (Y) both name page 1, at different generations: not equal.
    expect(e.pool.equal(f(2), f(3))).toBe(false)
    expect(staleDigest(e, [space])).toBeNull()
  })

  it("a page written after it was certified loses its certificate with its digest", () => {
    const { e, space, hash, f } = setup([X, X])
    hash(0, 1)
    expect(e.pool.digests!.rep[f(1)]! - 1).toBe(f(0))
    space.writeU32(1 * P + 64, 1)
    expect(e.pool.equal(f(0), f(1))).toBe(false)
    expect(staleDigest(e, [space])).toBeNull()
  })

  it("two certificates naming one frame at the same generation prove nothing once that frame changed before either was used", () => {
    const { e, space, hash, f } = setup([X, X, X, Y, X])
    hash(0, 1, 2) // page 2 certified against page 1 (X)
    // Page 1 becomes Y; page 3 (Y) is hashed before page 1 is hashed again: compared with page 1 as it is now (Y), named at page 1's old generation.
    space.write(1 * P, bytes(Y))
    hash(3)
    const d = e.pool.digests!
    expect(d.rep[f(3)]! - 1).toBe(f(1))
    expect(d.repGen[f(3)]).toBe(d.repGen[f(2)])
    // Page 2 is X, page 3 is Y: page 1's generation moved, so neither certificate holds.
    expect(e.pool.equal(f(2), f(3))).toBe(false)
    expect(staleDigest(e, [space])).toBeNull()
  })
})

describe("the thread's pace: how long a waiting loop holds its next batch back", () => {
  it("is measured only over intervals the thread was busy throughout, and estimates the time for a number of queued jobs", () => {
    const e = new Engine({ seed: 13, sharedMemory: true })
    const scanner = e.scanner({ policy: "ksm", offload: true })
    const h = new OffloadHasher(scanner.offloadChannel()!)
    const space = e.createSpace({ size: 64 * 4096 })
    for (let p = 0; p < 64; p++) space.writeU32(p * 4096, p + 1)
    const off = offloadOf(scanner)
    queueByHand(off, space, upTo(64))
    off.noteProgress(0)
    expect(off.millisFor(10)).toBe(0) // not measured yet
    h.run(16)
    off.noteProgress(8) // 16 jobs in 8 ms, still busy: 2 jobs per ms
    expect(off.millisFor(10)).toBeCloseTo(5)
    expect(off.millisFor(1000)).toBeCloseTo(24) // at most what is queued (48 jobs)
    h.run() // the thread finishes and goes idle: the next interval says nothing of its pace
    off.noteProgress(100)
    expect(off.millisFor(10)).toBe(0) // nothing queued
    expect(off.millisFor(0)).toBe(0)
  })
})

describe("a stuck thread: no progress for OFFLOAD_STUCK_MILLIS while a batch waits", () => {
  function setup() {
    const e = new Engine({ seed: 17, sharedMemory: true })
    const scanner = e.scanner({ policy: "ksm", offload: true, pagesToScan: 32 })
    const space = e.createSpace({ size: 256 * 4096 })
    for (let p = 0; p < 256; p++) space.writeU32(p * 4096, p + 1)
    space.advise(0, space.size, "mergeable")
    const h = new OffloadHasher(scanner.offloadChannel()!)
    const counts = () => scanner as unknown as { stuckEvents: number; hostHashes: number }
    return { e, scanner, h, counts }
  }
  const until = (ms: number): number => performance.now() + ms

  it("a thread that does nothing is judged stuck after the bound and the host hashes meanwhile", () => {
    const { scanner, counts } = setup()
    const end = until(250)
    while (performance.now() < end && counts().stuckEvents === 0) scanner.tick()
    expect(counts().stuckEvents).toBeGreaterThan(0)
    expect(counts().hostHashes).toBeGreaterThan(0)
  })

  it("a slow thread that keeps making progress is never judged stuck, however long the batch waits", () => {
    const { e, scanner, h, counts } = setup()
    // 64 jobs queued ahead of everything the scanner asks for (another space's pages, not mergeable):
    // the digest a batch waits for stays behind them for seconds at one job per 50 ms.
    const other = e.createSpace({ size: 64 * 4096 })
    for (let p = 0; p < 64; p++) other.writeU32(p * 4096, 1000 + p)
    queueByHand(offloadOf(scanner), other, upTo(64))
    const end = until(400)
    let last = performance.now()
    while (performance.now() < end) {
      expect(scanner.tick().waited).toBe(true)
      if (performance.now() - last > 50) {
        h.run(1)
        last = performance.now()
      }
    }
    expect(counts().stuckEvents).toBe(0)
    expect(counts().hostHashes).toBe(0)
  })
})
