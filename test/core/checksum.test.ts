/**
 * Page checksums (src/core/checksum.ts) on their own: the keyed full checksum and the sampled
 * table key are functions of the key material and the page only; they differ across seeds;
 * every bit of every word counts for the full checksum, while the sampled key reads exactly
 * its 64-word sample (16 runs of 4, one per sixteenth of the page) and nothing else;
 * expandSeed, secondKey, domainSalt and the bytes adapter.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { xorshift32 } from "../../bench/xorshift.ts"
import { domainSalt, expandSeed, fromBytesChecksum, fullChecksum, keyedNh, makeFullChecksum, makeSampledKey, nhKey, type PageHash, SAMPLE_WORDS, secondKey, thirdKey } from "../../src/core/checksum.ts"

const WORDS = 1024 // a 4 KiB page

function randomPage(seed: number, words = WORDS): Uint32Array {
  const page = new Uint32Array(words)
  const next = xorshift32(seed | 1)
  for (let i = 0; i < words; i++) page[i] = next()
  return page
}

/** The word indices `hash` reads from `page` (through a Proxy that records every index read). */
function wordsRead(hash: PageHash, page: Uint32Array, start = 0): Set<number> {
  const read = new Set<number>()
  const spy = new Proxy(page, {
    get(target, prop) {
      if (typeof prop === "string" && /^\d+$/.test(prop)) read.add(Number(prop))
      return Reflect.get(target, prop, target)
    },
  })
  hash(spy, start, WORDS)
  return read
}

const full = (seed: number) => makeFullChecksum(expandSeed(seed))
const sampled = (seed: number) => makeSampledKey(WORDS, seed)

describe("keyed full checksum", () => {
  it("is a function of the key material and the page: equal material, equal sums", () => {
    const page = randomPage(1)
    expect(makeFullChecksum(expandSeed(5))(page, 0, WORDS)).toBe(makeFullChecksum(Uint32Array.from(expandSeed(5)))(page, 0, WORDS))
    expect(full(5)(page, 0, WORDS)).toBe(full(5)(page.slice(), 0, WORDS))
  })

  it("differs across seeds for the same page", () => {
    const page = randomPage(2)
    const sums = new Set(Array.from({ length: 200 }, (_, s) => full(s)(page, 0, WORDS)))
    expect(sums.size).toBe(200)
  })

  it("every bit of every word matters: one flipped bit anywhere changes the sum (keyed and unkeyed)", () => {
    fc.assert(
      fc.property(fc.nat(), fc.nat(WORDS - 1), fc.nat(31), fc.nat(), (pageSeed, word, bit, keySeed) => {
        const page = randomPage(pageSeed)
        const flipped = page.slice()
        flipped[word]! ^= 1 << bit
        expect(full(keySeed)(flipped, 0, WORDS)).not.toBe(full(keySeed)(page, 0, WORDS))
        expect(fullChecksum(flipped, 0, WORDS)).not.toBe(fullChecksum(page, 0, WORDS))
      }),
      { numRuns: 2000 },
    )
  })

  it("reads every word of its range and nothing outside it", () => {
    const big = randomPage(3, 3 * WORDS)
    expect(wordsRead(full(1), big, WORDS)).toEqual(new Set(Array.from({ length: WORDS }, (_, i) => WORDS + i)))
    // The same content at another offset sums the same.
    expect(full(1)(big, WORDS, WORDS)).toBe(full(1)(big.slice(WORDS, 2 * WORDS), 0, WORDS))
  })
})

describe("sampled table key", () => {
  it("is a function of the key material and the page; a numeric seed means expandSeed(seed)", () => {
    const page = randomPage(4)
    expect(sampled(9)(page, 0, WORDS)).toBe(makeSampledKey(WORDS, expandSeed(9))(page, 0, WORDS))
    expect(sampled(9)(page, 0, WORDS)).toBe(sampled(9)(page.slice(), 0, WORDS))
  })

  it("differs across seeds for the same page", () => {
    const page = randomPage(5)
    const keys = new Set(Array.from({ length: 200 }, (_, s) => sampled(s)(page, 0, WORDS)))
    expect(keys.size).toBe(200)
  })

  it("reads exactly its sample: 16 runs of 4 words, one in each sixteenth of the page, at key-chosen offsets", () => {
    for (const seed of [0, 1, 2, 77]) {
      const read = [...wordsRead(sampled(seed), randomPage(6))].sort((a, b) => a - b)
      expect(read.length).toBe(SAMPLE_WORDS)
      const span = WORDS / 16
      for (let r = 0; r < 16; r++) {
        const run = read.slice(r * 4, r * 4 + 4)
        expect(run[3]! - run[0]!, `run ${r} is 4 consecutive words`).toBe(3)
        expect(Math.floor(run[0]! / span), `run ${r} lies in sixteenth ${r}`).toBe(r)
        expect(Math.floor(run[3]! / span)).toBe(r)
      }
    }
    // The sample depends on the key.
    expect(wordsRead(sampled(1), randomPage(6))).not.toEqual(wordsRead(sampled(2), randomPage(6)))
  })

  it("words outside the sample never change the key; a bit flipped inside it does", () => {
    const key = sampled(11)
    const page = randomPage(7)
    const sample = wordsRead(key, page)
    const k0 = key(page, 0, WORDS)
    const other = randomPage(8)
    for (const i of sample) other[i] = page[i]!
    expect(key(other, 0, WORDS)).toBe(k0)
    for (const i of sample) {
      const flipped = page.slice()
      flipped[i]! ^= 1 << (i & 31)
      expect(key(flipped, 0, WORDS), `word ${i}`).not.toBe(k0)
    }
  })

  it("reads its sample at `start`: the same content at another offset keys the same", () => {
    const key = sampled(12)
    const big = randomPage(9, 2 * WORDS)
    const read = wordsRead(key, big, WORDS)
    for (const i of read) expect(i).toBeGreaterThanOrEqual(WORDS)
    expect(key(big, WORDS, WORDS)).toBe(key(big.slice(WORDS), 0, WORDS))
  })
})

describe("third-level hash (keyed NH)", () => {
  /** NH over 16-bit halves, written plainly (the definition). */
  function nhReference(k: Int32Array, w: Uint32Array): number {
    let sum = 0
    for (let i = 0; i < w.length; i++) {
      const lo = ((w[i]! & 0xffff) + (k[i]! & 0xffff)) % 65536
      const hi = ((w[i]! >>> 16) + (k[i]! >>> 16)) % 65536
      sum = (sum + lo * hi) % 2 ** 32
    }
    return sum
  }

  it("is NH: equal NH sums give equal hashes and the hash is a bijection of the sum", () => {
    const k = nhKey(expandSeed(3), WORDS)
    const pages = Array.from({ length: 50 }, (_, i) => randomPage(100 + i))
    const bySum = new Map<number, number>()
    for (const p of pages) {
      const h = keyedNh(k, p, 0, WORDS)
      const r = nhReference(k, p)
      if (bySum.has(r)) expect(bySum.get(r)).toBe(h)
      bySum.set(r, h)
    }
    expect(new Set(pages.map((p) => keyedNh(k, p, 0, WORDS))).size).toBe(new Set(pages.map((p) => nhReference(k, p))).size)
  })

  it("the full checksum's key-independent differential (bit 15 of word i, bit 31 of word i + 4) does not carry over", () => {
    const p = randomPage(7)
    let fullCollisions = 0
    let nhCollisions = 0
    for (let seed = 1; seed <= 300; seed++) {
      const material = expandSeed(seed)
      const v = p.slice()
      const i = seed % (WORDS - 4)
      v[i] = v[i]! ^ 0x8000
      v[i + 4] = v[i + 4]! ^ 0x80000000
      if (makeFullChecksum(material)(p, 0, WORDS) === makeFullChecksum(material)(v, 0, WORDS)) fullCollisions++
      const k = nhKey(material, WORDS)
      if (keyedNh(k, p, 0, WORDS) === keyedNh(k, v, 0, WORDS)) nhCollisions++
    }
    // The weakness the third level is there for, and that it does not share it.
    expect(fullCollisions).toBe(300)
    expect(nhCollisions).toBe(0)
  })

  it("thirdKey is deterministic and one-to-one in each argument, and differs from secondKey", () => {
    expect(new Set(Array.from({ length: 70_000 }, (_, i) => thirdKey(i * 2654435761, 7))).size).toBe(70_000)
    expect(new Set(Array.from({ length: 10_000 }, (_, i) => thirdKey(7, i * 40503))).size).toBe(10_000)
    expect(thirdKey(5, 9)).not.toBe(secondKey(5, 9))
  })
})

describe("key material and derived keys", () => {
  it("expandSeed: 128 bits, deterministic, different for different seeds (the high bits above 2^32 too)", () => {
    expect(expandSeed(42)).toEqual(expandSeed(42))
    expect(expandSeed(42).length).toBe(4)
    const seeds = [0, 1, 2, 2 ** 32, 2 ** 32 + 1, 2 ** 40 + 1, Number.MAX_SAFE_INTEGER]
    const expanded = new Set(seeds.map((s) => expandSeed(s).join(",")))
    expect(expanded.size).toBe(seeds.length)
  })

  it("secondKey is deterministic and one-to-one in each argument", () => {
    expect(secondKey(123, 456)).toBe(secondKey(123, 456))
    const byFull = new Set(Array.from({ length: 70_000 }, (_, i) => secondKey(i * 2654435761, 7)))
    const byKey = new Set(Array.from({ length: 10_000 }, (_, i) => secondKey(7, i * 40503)))
    expect(byFull.size).toBe(70_000)
    expect(byKey.size).toBe(10_000)
    // The second level differs from the first: a crowded key's pages leave its chain.
    expect(secondKey(0, 0)).not.toBe(0)
  })

  it("domainSalt gives distinct domains distinct salts, domain 0 none", () => {
    expect(domainSalt(0)).toBe(0)
    expect(new Set(Array.from({ length: 10_000 }, (_, i) => domainSalt(i))).size).toBe(10_000)
  })

  it("fromBytesChecksum hands the user function exactly the page's bytes", () => {
    const big = randomPage(10, 3 * WORDS)
    let seen: Uint8Array | null = null
    const hash = fromBytesChecksum((bytes) => {
      seen = bytes.slice()
      return -1
    })
    // A negative result is taken as a u32.
    expect(hash(big, WORDS, WORDS)).toBe(0xffffffff)
    expect(seen).toEqual(new Uint8Array(big.buffer, WORDS * 4, WORDS * 4))
  })
})
