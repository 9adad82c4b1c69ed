/**
 * Adversarial contents (issue 7): page writers who control every byte must not be able to
 * force a wrong merge (full memcmp), make one lookup do unbounded work (maxCandidates,
 * maxWalk, two key levels), predict the table key (secret 128-bit key material from the OS
 * CSPRNG), or deny the merging of a known page by flooding its key (second-level key).
 * Work is counted through core.lookupCompares / core.lookupVisits, never timed.
 */
import fc from "fast-check"
import { afterEach, describe, expect, it, vi } from "vitest"
import type { AddressSpace } from "../helpers/internals.ts"
import { expandSeed, fullChecksum, makeFullChecksum, makeSampledKey } from "../../src/core/checksum.ts"
import { Engine } from "../helpers/internals.ts"
import { ZERO_FRAME } from "../../src/memory/frames.ts"
import { checkCounters } from "../helpers/recount.ts"

const PS = 512
const WORDS = PS / 4

afterEach(() => {
  vi.restoreAllMocks()
})

/** A page of pseudo-random words from `seed`. */
function randomPage(seed: number, words = WORDS): Uint32Array {
  const w = new Uint32Array(words)
  let x = seed * 2654435761 + 1
  for (let i = 0; i < words; i++) {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x297a2d39) | 0
    w[i] = x >>> 0
  }
  return w
}

function bytesOf(w: Uint32Array): Uint8Array {
  return new Uint8Array(w.buffer.slice(0))
}

/** Merge page by page, returning the worst work one page's merge did. */
function mergeEachPage(engine: Engine, space: AddressSpace): { compares: number; visits: number } {
  const core = engine.core
  let compares = 0
  let visits = 0
  for (let pi = 0; pi < space.pages; pi++) {
    const c0 = core.lookupCompares
    const v0 = core.lookupVisits
    space.merge(pi * PS, PS)
    compares = Math.max(compares, core.lookupCompares - c0)
    visits = Math.max(visits, core.lookupVisits - v0)
  }
  return { compares, visits }
}

/** Contents equal the reference, and no frame is shared by pages whose reference contents differ. */
function checkCorrect(engine: Engine, spaces: AddressSpace[], ref: Map<AddressSpace, Uint8Array>): void {
  const owner = new Map<number, Uint8Array>()
  for (const s of spaces) {
    const want = ref.get(s)!
    expect(Buffer.compare(s.read(0, s.size), want)).toBe(0)
    for (let pi = 0; pi < s.pages; pi++) {
      const f = s.frameAt(pi)
      if (f === ZERO_FRAME) continue
      const page = want.subarray(pi * PS, (pi + 1) * PS)
      const seen = owner.get(f)
      if (seen === undefined) owner.set(f, page)
      else expect(Buffer.compare(seen, page)).toBe(0)
    }
  }
  checkCounters(engine)
}

describe("key material is secret", () => {
  it("comes from crypto.getRandomValues, not Math.random (a constant Math.random changes nothing)", () => {
    const spy = vi.spyOn(globalThis.crypto, "getRandomValues")
    vi.spyOn(Math, "random").mockReturnValue(0.5)
    const page = randomPage(1)
    const keys = new Set<number>()
    for (let i = 0; i < 8; i++) {
      const engine = new Engine({ pageSize: PS })
      const s = engine.createSpace({ size: PS })
      s.write(0, bytesOf(page))
      keys.add(engine.core.keyOf(s.frameAt(0)))
    }
    expect(spy).toHaveBeenCalled()
    // Eight engines, eight independent keys (a collision among 8 random u32s: ~1e-8).
    expect(keys.size).toBe(8)
  })

  it("sample positions depend on the key: the words a key ignores differ between engines", () => {
    const base = randomPage(2)
    const sensitive = (seed: number): string => {
      const key = makeSampledKey(WORDS, expandSeed(seed))
      const k0 = key(base, 0, WORDS)
      const out: number[] = []
      for (let i = 0; i < WORDS; i++) {
        const v = base.slice()
        v[i] = v[i]! ^ 0x5a5a5a5a
        if (key(v, 0, WORDS) !== k0) out.push(i)
      }
      return out.join(",")
    }
    const sets = new Set([1, 2, 3, 4, 5, 6].map(sensitive))
    expect(sets.size).toBeGreaterThan(4)
    // It reads 64 of 128 words of a 512-byte page: 16 runs of 4.
    expect(sensitive(1).split(",").length).toBe(64)
  })

  it("no seed-independent differential: flipping bit 31 of every word changes the sampled key", () => {
    // The previous mixer (xor, multiply by an odd constant, add) let these two pages collide
    // under every seed: two top-bit flips cancel through a multiply and an add.
    const page = randomPage(3)
    const flipped = page.map((w) => (w ^ 0x80000000) >>> 0)
    let same = 0
    for (let seed = 0; seed < 200; seed++) {
      const key = makeSampledKey(WORDS, expandSeed(seed))
      if (key(page, 0, WORDS) === key(flipped, 0, WORDS)) same++
    }
    expect(same).toBe(0)
  })

  it("the keyed full checksum has no seed-independent collision where the unkeyed one does", () => {
    // Lane differential of the unkeyed fullChecksum: flip bit 31 of words i and i+4, bit 16 of
    // i+8, bit 1 of i+12 (all in lane 0): the lane state is restored whatever its value.
    const page = randomPage(4)
    const twin = page.slice()
    twin[0] = twin[0]! ^ 0x80000000
    twin[4] = twin[4]! ^ 0x80000000
    twin[8] = twin[8]! ^ 0x10000
    twin[12] = twin[12]! ^ 0x2
    expect(fullChecksum(page, 0, WORDS)).toBe(fullChecksum(twin, 0, WORDS))
    let same = 0
    for (let seed = 0; seed < 200; seed++) {
      const sum = makeFullChecksum(expandSeed(seed))
      if (sum(page, 0, WORDS) === sum(twin, 0, WORDS)) same++
    }
    expect(same).toBe(0)
  })
})

describe("lookups stay bounded and merges correct under a weak checksum", () => {
  const kinds: [string, (p: Uint8Array) => number][] = [
    ["constant", () => 7],
    ["low-entropy (first byte)", (p) => p[0]!],
    ["two values", (p) => p[PS - 1]! & 1],
  ]
  for (const [name, checksum] of kinds) {
    it(`${name} injected key: at most 2*maxCandidates memcmps and 2*maxWalk+maxWalk visits per page; duplicates still merge`, () => {
      const maxCandidates = 8
      const engine = new Engine({ pageSize: PS, checksum, maxCandidates, seed: 11, autoCompact: false })
      const maxWalk = engine.core.maxWalk
      // 300 distinct pages, then every one of them again in a second space.
      const n = 300
      const a = engine.createSpace({ size: n * PS, domain: "d" })
      const b = engine.createSpace({ size: n * PS, domain: "d" })
      const ref = new Map<AddressSpace, Uint8Array>()
      const data = new Uint8Array(n * PS)
      for (let i = 0; i < n; i++) {
        const p = bytesOf(randomPage(1000 + i))
        p[0] = i & 0xff
        data.set(p, i * PS)
      }
      a.write(0, data)
      b.write(0, data)
      ref.set(a, data.slice())
      ref.set(b, data.slice())
      const wa = mergeEachPage(engine, a)
      const wb = mergeEachPage(engine, b)
      for (const w of [wa, wb]) {
        expect(w.compares).toBeLessThanOrEqual(2 * maxCandidates)
        expect(w.visits).toBeLessThanOrEqual(3 * maxWalk)
      }
      checkCorrect(engine, [a, b], ref)
      // The second level (keyed full checksum) still finds every duplicate whose original was
      // placed there; only the first maxCandidates+1 per sampled key sit out of its reach.
      const s = engine.stats()
      expect(s.pagesSharing).toBeGreaterThanOrEqual(n - (maxCandidates + 1) * 2)
      // Writes after merging keep every other mapper's bytes.
      for (let pi = 0; pi < n; pi += 7) {
        b.writeU8(pi * PS + 3, 0xee)
        ref.get(b)![pi * PS + 3] = 0xee
      }
      checkCorrect(engine, [a, b], ref)
    })
  }

  it("constant key AND constant full checksum: still bounded, never wrong; surplus pages are left out (crowded)", () => {
    const maxCandidates = 4
    const engine = new Engine({ pageSize: PS, checksum: () => 1, maxCandidates, seed: 5, autoCompact: false })
    Object.assign(engine.core, { checksum: () => 2 })
    const n = 120
    const a = engine.createSpace({ size: n * PS })
    const data = new Uint8Array(n * PS)
    for (let i = 0; i < n; i++) data.set(bytesOf(randomPage(50 + (i % 40))), i * PS)
    a.write(0, data)
    const w = mergeEachPage(engine, a)
    expect(w.compares).toBeLessThanOrEqual(2 * maxCandidates)
    expect(w.visits).toBeLessThanOrEqual(3 * engine.core.maxWalk)
    const r = a.merge()
    expect(r.alreadyMerged + r.skipped.crowded + r.merged + r.inserted).toBe(n)
    checkCorrect(engine, [a], new Map([[a, data]]))
  })

  it("property: random pages from a tiny alphabet under a random weak key never merge wrongly", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(5), fc.nat(3), fc.nat(PS - 1)), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 6 }),
        fc.nat(3),
        (pages, maxCandidates, mod) => {
          const engine = new Engine({ pageSize: PS, checksum: (p) => p[0]! % (mod + 1), maxCandidates, seed: 3, maxPageSharing: 3, autoCompact: false })
          const a = engine.createSpace({ size: pages.length * PS })
          const data = new Uint8Array(pages.length * PS)
          pages.forEach(([base, byte, at], i) => {
            data.fill(base, i * PS, (i + 1) * PS)
            data[i * PS + at] = byte
          })
          a.write(0, data)
          const w = mergeEachPage(engine, a)
          expect(w.compares).toBeLessThanOrEqual(2 * maxCandidates)
          checkCorrect(engine, [a], new Map([[a, data]]))
        },
      ),
      { numRuns: 150 },
    )
  })
})

describe("flooding with the real keyed key", () => {
  /** A seed under which word `w` of the test page is outside the sample (so variants collide). */
  function seedSkipping(word: number): number {
    for (let seed = 1; ; seed++) {
      const key = makeSampledKey(WORDS, expandSeed(seed))
      const p = randomPage(9)
      const v = p.slice()
      v[word] = v[word]! ^ 1
      if (key(p, 0, WORDS) === key(v, 0, WORDS)) return seed
    }
  }

  it("thousands of distinct pages on one sampled key: each lookup does bounded work", () => {
    const seed = seedSkipping(WORDS - 1)
    const engine = new Engine({ pageSize: PS, seed, autoCompact: false })
    const n = 2000
    const a = engine.createSpace({ size: n * PS })
    const base = randomPage(9)
    const data = new Uint8Array(n * PS)
    for (let i = 0; i < n; i++) {
      const v = base.slice()
      v[WORDS - 1] = i
      data.set(bytesOf(v), i * PS)
    }
    a.write(0, data)
    // They really do share the sampled key.
    expect(new Set([0, 1, 2, n - 1].map((i) => engine.core.keyOf(a.frameAt(i)))).size).toBe(1)
    const w = mergeEachPage(engine, a)
    expect(w.compares).toBeLessThanOrEqual(2 * engine.core.maxCandidates)
    expect(w.visits).toBeLessThanOrEqual(3 * engine.core.maxWalk)
    checkCorrect(engine, [a], new Map([[a, data]]))
  })

  it("an attacker's variants of a known page cannot stop two copies of it from merging", () => {
    const seed = seedSkipping(WORDS - 1)
    const engine = new Engine({ pageSize: PS, seed, autoCompact: false })
    const known = randomPage(9)
    // The attacker fills the known page's sampled key with 200 variants first (same domain).
    const attacker = engine.createSpace({ size: 200 * PS, domain: "shared" })
    for (let i = 0; i < 200; i++) {
      const v = known.slice()
      v[WORDS - 1] = v[WORDS - 1]! ^ (i + 1)
      attacker.write(i * PS, bytesOf(v))
    }
    attacker.merge()
    const victim = engine.createSpace({ size: 2 * PS, domain: "shared" })
    victim.write(0, bytesOf(known))
    victim.write(PS, bytesOf(known))
    const r = victim.merge()
    expect(r.merged).toBe(1)
    expect(victim.frameAt(0)).toBe(victim.frameAt(1))
    checkCounters(engine)
  })

  it("variants crafted to collide on the keyed full checksum too (a key-independent differential) cannot stop two copies from merging", () => {
    // Bit 15 of word v, rotated to bit 31, passes the keyed add and the multiply linearly; bit 31
    // of word v + 4 (same lane, next step) cancels it: the same full checksum under every key.
    // The third key level (NH, a universal hash) is what still separates them.
    const P = 4096
    const W = P / 4
    const engine = new Engine({ autoCompact: false }) // a secret key from the CSPRNG
    const known = new Uint32Array(W)
    for (let i = 0; i < W; i++) known[i] = Math.imul(i + 1, 0x9e3779b1) >>> 0
    const n = 200
    const attack = new Uint8Array(n * P)
    for (let v = 0; v < n; v++) {
      const w = known.slice()
      w[v] = w[v]! ^ 0x8000
      w[v + 4] = w[v + 4]! ^ 0x80000000
      attack.set(new Uint8Array(w.buffer), v * P)
    }
    const attacker = engine.createSpace({ size: n * P })
    attacker.write(0, attack)
    attacker.merge()
    // They do collide on the full checksum (the differential is real)...
    const sums = new Set<number>()
    for (let v = 0; v < n; v++) sums.add(engine.core.checksumOf(attacker.frameAt(v)))
    expect(sums.size).toBe(1)
    // ...and still two copies of the known page merge, and nothing else did.
    const victim = engine.createSpace({ size: 2 * P })
    victim.write(0, new Uint8Array(known.buffer))
    victim.write(P, new Uint8Array(known.buffer))
    const r = victim.merge()
    expect(r.merged).toBe(1)
    expect(r.skipped.crowded).toBe(0)
    expect(victim.frameAt(0)).toBe(victim.frameAt(1))
    expect(engine.stats().pagesSharing).toBe(1)
    checkCounters(engine)
  })

  it("the same crafted variants cannot stop the scanner (ksm) from pairing two copies in its unstable index", () => {
    const P = 4096
    const W = P / 4
    const engine = new Engine({ autoCompact: false })
    const known = new Uint32Array(W)
    for (let i = 0; i < W; i++) known[i] = Math.imul(i + 7, 0x85ebca6b) >>> 0
    const n = 200
    const attacker = engine.createSpace({ size: n * P })
    for (let v = 0; v < n; v++) {
      const w = known.slice()
      w[v] = w[v]! ^ 0x8000
      w[v + 4] = w[v + 4]! ^ 0x80000000
      attacker.write(v * P, new Uint8Array(w.buffer))
    }
    attacker.advise(0, attacker.size, "mergeable")
    // The victim's copies come after the attacker's variants in the scan order, every pass.
    const victim = engine.createSpace({ size: 2 * P })
    victim.write(0, new Uint8Array(known.buffer))
    victim.write(P, new Uint8Array(known.buffer))
    victim.advise(0, victim.size, "mergeable")
    const ksmd = engine.scanner({ policy: "ksm", pagesToScan: 1000 })
    while (engine.stats().fullScans < 6) ksmd.tick()
    expect(victim.frameAt(0)).toBe(victim.frameAt(1))
    expect(engine.stats().pagesSharing).toBe(1)
    checkCounters(engine)
  })

  it("constant key AND constant full checksum: the third level still merges every identical page and nothing else", () => {
    const maxCandidates = 4
    const engine = new Engine({ pageSize: PS, checksum: () => 1, maxCandidates, seed: 5, autoCompact: false })
    Object.assign(engine.core, { checksum: () => 2 })
    const n = 120
    const a = engine.createSpace({ size: 2 * n * PS })
    const data = new Uint8Array(2 * n * PS)
    // n distinct pages, each twice (the second copies in reverse order).
    for (let i = 0; i < n; i++) {
      const p = bytesOf(randomPage(1000 + i))
      data.set(p, i * PS)
      data.set(p, (2 * n - 1 - i) * PS)
    }
    a.write(0, data)
    const w = mergeEachPage(engine, a)
    expect(w.compares).toBeLessThanOrEqual(3 * maxCandidates)
    for (let i = 0; i < n; i++) expect(a.frameAt(i)).toBe(a.frameAt(2 * n - 1 - i))
    expect(engine.stats().pagesShared).toBe(n)
    expect(engine.stats().pagesSharing).toBe(n)
    checkCorrect(engine, [a], new Map([[a, data]]))
  })

  it("many dups of one content in one bucket do not slow lookups of other contents in that bucket", () => {
    // Keys chosen so every page lands in bucket 0 of the table: the 0x42 dups under key 0,
    // the others under distinct keys that are multiples of 2^24 (a walk bound, not the
    // compare bound, must stop their lookups).
    const checksum = (p: Uint8Array): number => (p[0] === 0x42 ? 0 : ((1 + p[1]!) << 24) >>> 0)
    const engine = new Engine({ pageSize: PS, maxPageSharing: 2, seed: 8, autoCompact: false, checksum })
    const n = 1000
    const a = engine.createSpace({ size: n * PS })
    a.fill(0, a.size, 0x42)
    a.merge()
    expect(engine.stats().pagesShared).toBe(n / 2)
    const b = engine.createSpace({ size: 64 * PS })
    for (let i = 0; i < 64; i++) {
      const p = bytesOf(randomPage(7000 + i))
      p[0] = 0
      p[1] = i
      b.write(i * PS, p)
    }
    const w = mergeEachPage(engine, b)
    expect(w.visits).toBeLessThanOrEqual(3 * engine.core.maxWalk)
    expect(w.compares).toBe(0)
    checkCounters(engine)
  })
})
