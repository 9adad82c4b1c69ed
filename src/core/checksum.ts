/**
 * Page checksums. Both run over a frame's words in place (no copy, no allocation), and both
 * are keyed with secret material drawn per engine from the OS CSPRNG (see random.ts):
 *
 * - {@link makeFullChecksum}: every word of the page, like the kernel's `calc_checksum`
 *   (xxhash). The scanner uses it to decide whether a page stayed unchanged between two
 *   visits, and the merge table uses it as the second-level key of a crowded sampled key.
 * - {@link makeSampledKey}: the merge table's index. It reads a keyed sample of the page
 *   (64 words at positions derived from the key), which is what lets merge() run faster
 *   than a full hash. It only finds candidates: a match is always confirmed by a full
 *   memcmp, so a weak key can cost time but never correctness.
 *
 * Security notes (review of issue 7):
 * - Keys come from `crypto.getRandomValues`, not Math.random (recoverable by a guest in the
 *   same realm), and carry 128 bits rather than 32.
 * - The earlier mixers had seed-independent differentials: flipping bit 31 of every word
 *   left the sampled key unchanged (xor-then-multiply by an odd constant passes the top bit
 *   through linearly, and two top-bit additions cancel), whatever the seed. Each word now goes
 *   through a 16-bit rotation and a keyed addition before the multiply, so a difference in
 *   one word reaches the next step through carries that depend on secret key bits.
 * - No mixing can stop collisions of a *sampled* key: two pages that differ only in words the
 *   sample skips (15 of 16 words of a 4 KiB page) always share it, whatever the seed. Page
 *   writers can therefore always build many distinct pages with one key. What bounds the cost
 *   is the lookup (merge.ts: at most `maxCandidates` memcmps and a bounded walk per key level)
 *   and the full-page second-level key a crowded chain falls back to.
 * - These are fast non-cryptographic hashes: they resist blind flooding, not an adversary who
 *   can observe many lookups' timing and search for collisions adaptively. The work bound
 *   holds whatever the hash does.
 */

/** A checksum over one page: `(words, start, count)` covers `words[start .. start+count)`. */
export type PageHash = (words: Uint32Array, start: number, count: number) => number

/** A user-supplied checksum over page bytes (tests inject colliding ones). */
export type ChecksumFunction = (page: Uint8Array) => number

const M1 = 0x85ebca6b
const M2 = 0xc2b2ae35
const GOLDEN = 0x9e3779b1

function fmix(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, M1)
  h ^= h >>> 13
  h = Math.imul(h, M2)
  return (h ^ (h >>> 16)) >>> 0
}

/**
 * Unkeyed full-page checksum: four independent multiply lanes, so the loop runs at memory
 * speed. Kept for tools that need a value stable across engines; it has seed-independent
 * collisions, so nothing that sees untrusted pages indexes by it (the engine uses
 * {@link makeFullChecksum}).
 */
export function fullChecksum(words: Uint32Array, start: number, count: number): number {
  let a = 0x12345678
  let b = GOLDEN | 0
  let c = M1 | 0
  let d = M2 | 0
  const end = start + count
  for (let i = start; i < end; i += 4) {
    a = Math.imul(a ^ words[i]!, 0x01000193) ^ (a >>> 15)
    b = Math.imul(b ^ words[i + 1]!, 0x01000193) ^ (b >>> 15)
    c = Math.imul(c ^ words[i + 2]!, 0x01000193) ^ (c >>> 15)
    d = Math.imul(d ^ words[i + 3]!, 0x01000193) ^ (d >>> 15)
  }
  return fmix(a ^ Math.imul(b, 3) ^ Math.imul(c, 5) ^ Math.imul(d, 7) ^ count)
}

/** 128 bits of key material from a numeric seed (reproducible tests and benchmarks). */
export function expandSeed(seed: number): Uint32Array {
  const out = new Uint32Array(4)
  let s = seed >>> 0
  const hi = Math.floor(seed / 0x100000000) >>> 0
  for (let i = 0; i < 4; i++) {
    s = fmix((s + GOLDEN + Math.imul(hi, M1) + i) >>> 0)
    out[i] = s
  }
  return out
}

/** Derive `n` u32 words from 128-bit key material and a domain-separation tag (cold). */
function derive(key: Uint32Array, tag: number, n: number): Uint32Array {
  const out = new Uint32Array(n)
  let a = (key[0]! ^ tag) >>> 0
  let b = key[1]! >>> 0
  let c = key[2]! >>> 0
  let d = key[3]! >>> 0
  for (let i = 0; i < n; i++) {
    a = fmix((a + Math.imul(b, GOLDEN) + i) >>> 0)
    b = fmix((b ^ c ^ a) >>> 0)
    c = fmix((c + d + M1) >>> 0)
    d = fmix((d ^ a ^ M2) >>> 0)
    out[i] = (a ^ c) >>> 0
  }
  return out
}

/**
 * The keyed full-page checksum of an engine: four lanes, each word rotated and added to a
 * secret lane key before the multiply (no top-bit differential survives a step). About as
 * fast as {@link fullChecksum}.
 */
export function makeFullChecksum(key: Uint32Array): PageHash {
  const k = Int32Array.from(derive(key, 0x46554c4c, 8))
  return (words: Uint32Array, start: number, count: number): number => {
    // Keys into locals per call: with several engines' closures V8 stops specialising on the
    // context, and closure constants re-read (and unboxed) in the loop cost 2.6x (1.4 µs/page).
    const k0 = k[0]!
    const k1 = k[1]!
    const k2 = k[2]!
    const k3 = k[3]!
    let a = k[4]!
    let b = k[5]!
    let c = k[6]!
    let d = k[7]!
    const end = start + count
    for (let i = start; i < end; i += 4) {
      let x = a ^ words[i]!
      a = Math.imul(((x << 16) | (x >>> 16)) + k0, 0x01000193)
      x = b ^ words[i + 1]!
      b = Math.imul(((x << 16) | (x >>> 16)) + k1, 0x01000193)
      x = c ^ words[i + 2]!
      c = Math.imul(((x << 16) | (x >>> 16)) + k2, 0x01000193)
      x = d ^ words[i + 3]!
      d = Math.imul(((x << 16) | (x >>> 16)) + k3, 0x01000193)
    }
    return fmix(a ^ Math.imul(b ^ (a >>> 13), 3) ^ Math.imul(c, 5) ^ Math.imul(d, 7) ^ count)
  }
}

/** Number of words {@link makeSampledKey} reads. */
export const SAMPLE_WORDS = 64

/**
 * Build the keyed sampler for pages of `wordsPerPage` words: 16 runs of 4 words, one run
 * in each sixteenth of the page at a key-chosen offset. Runs of 4 keep the reads
 * cache-friendly; one run per sixteenth keeps any localized difference likely to show.
 * `key` is 128 bits of secret material (or a number, expanded with {@link expandSeed}).
 */
export function makeSampledKey(wordsPerPage: number, key: Uint32Array | number): PageHash {
  const material = typeof key === "number" ? expandSeed(key) : key
  const runs = 16
  const span = wordsPerPage / runs
  const d = derive(material, 0x53414d50, runs + 2 + runs)
  const offsets = new Int32Array(runs)
  for (let r = 0; r < runs; r++) offsets[r] = r * span + (d[r]! % (span - 3))
  const seed0 = d[runs]! | 0
  const seed1 = d[runs + 1]! | 0
  const add = new Int32Array(runs)
  for (let r = 0; r < runs; r++) add[r] = d[runs + 2 + r]! | 0
  return (words: Uint32Array, start: number): number => {
    let a = seed0
    let b = seed1
    for (let r = 0; r < runs; r += 2) {
      const i = start + offsets[r]!
      const j = start + offsets[r + 1]!
      const ka = add[r]!
      const kb = add[r + 1]!
      let x = a ^ words[i]!
      a = Math.imul(((x << 16) | (x >>> 16)) + ka, M1)
      x = a ^ words[i + 1]!
      a = Math.imul(((x << 16) | (x >>> 16)) + ka, M2)
      x = a ^ words[i + 2]!
      a = Math.imul(((x << 16) | (x >>> 16)) + ka, M1)
      x = a ^ words[i + 3]!
      a = Math.imul(((x << 16) | (x >>> 16)) + ka, M2)
      x = b ^ words[j]!
      b = Math.imul(((x << 16) | (x >>> 16)) + kb, M1)
      x = b ^ words[j + 1]!
      b = Math.imul(((x << 16) | (x >>> 16)) + kb, M2)
      x = b ^ words[j + 2]!
      b = Math.imul(((x << 16) | (x >>> 16)) + kb, M1)
      x = b ^ words[j + 3]!
      b = Math.imul(((x << 16) | (x >>> 16)) + kb, M2)
    }
    return fmix(a ^ Math.imul(b, 5))
  }
}

/** Second-level table key of a page whose sampled key `key` (already salted) is crowded. */
export function secondKey(fullSum: number, key: number): number {
  return fmix((fullSum ^ Math.imul(key, GOLDEN) ^ 0x2d4b5f1a) >>> 0)
}

/** Adapt a user checksum over bytes to a {@link PageHash} (test and research use: it allocates a view). */
export function fromBytesChecksum(fn: ChecksumFunction): PageHash {
  return (words, start, count) => fn(new Uint8Array(words.buffer, words.byteOffset + start * 4, count * 4)) >>> 0
}

/** Salt that separates merge domains in the table key: a bijection of the domain id. */
export function domainSalt(domainId: number): number {
  return Math.imul(domainId, GOLDEN) >>> 0
}
