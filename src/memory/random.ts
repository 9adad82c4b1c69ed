/**
 * Secret randomness for secure mode and the keyed table hash. Cold code.
 *
 * Seeds come from the operating system's CSPRNG (`crypto.getRandomValues`), never from
 * `Math.random`: V8's Math.random is xorshift128+, whose state a guest running in the same
 * realm (or a host that prints a few outputs) can recover, and with it every later "random"
 * seed. The per-engine generator that picks random frames is xoshiro128**: fast, not
 * cryptographic, but seeded secretly and never exposed.
 */

/** `n` u32 words from the OS CSPRNG. */
export function secretWords(n: number): Uint32Array {
  const out = new Uint32Array(n)
  globalThis.crypto.getRandomValues(out)
  return out
}

/** A u32 generator: each call returns a uniformly distributed integer in [0, 2^32). */
export type RandomU32 = () => number

/**
 * xoshiro128** seeded with 128 secret bits (or the given words, for reproducible tests).
 * An all-zero state is replaced, as the algorithm requires.
 */
export function makeRandom(seed: Uint32Array = secretWords(4)): RandomU32 {
  let a = seed[0]! | 0
  let b = seed[1]! | 0
  let c = seed[2]! | 0
  let d = seed[3]! | 0
  if ((a | b | c | d) === 0) a = 0x9e3779b9
  return () => {
    const r = Math.imul(rotl(Math.imul(b, 5), 7), 9)
    const t = b << 9
    c ^= a
    d ^= b
    b ^= c
    a ^= d
    c ^= t
    d = rotl(d, 11)
    return r >>> 0
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k))
}
