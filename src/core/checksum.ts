/**
 * Page checksums. Both run over a frame's words in place (no copy, no allocation), and both
 * are keyed with secret material drawn per engine from the OS CSPRNG (see random.ts):
 *
 * - {@link keyedFullChecksum} ({@link makeFullChecksum} as a closure): every word of the page, like the kernel's `calc_checksum`
 *   (xxhash). The scanner uses it to decide whether a page stayed unchanged between two
 *   visits, and the merge table uses it as the second-level key of a crowded sampled key.
 * - {@link keyedSampledKey} ({@link makeSampledKey} as a closure): the merge table's index. It reads a keyed sample of the page
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
 * - A later review (issue 13) found a differential the rotation does not stop: bit 15 of a word
 *   becomes bit 31, which the keyed addition and the multiply pass on linearly, and bit 31 of the
 *   lane's next word cancels it, so every page has thousands of variants with its full checksum
 *   under every key. The merge table and the scanner's unstable index therefore move a crowded
 *   full-checksum key to a third level keyed by {@link keyedNh} (a universal hash: no
 *   key-independent collisions), rather than relying on the full checksum to resist crafting.
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

/** The 8 key words of an engine's full checksum (4 lane keys, 4 lane seeds), derived from its key material. */
export function fullChecksumKey(key: Uint32Array): Int32Array {
  return new Int32Array(derive(key, 0x46554c4c, 8))
}

/**
 * The keyed full-page checksum: four lanes, each word rotated and added to a secret lane key
 * before the multiply (no top-bit differential survives a step). About as fast as
 * {@link fullChecksum}. One function for every engine, its key a parameter
 * ({@link fullChecksumKey}): a closure per engine made the engine's call site see several
 * targets, and a process's later engines hashed 1.5-2x slower than its first.
 */
export function keyedFullChecksum(k: Int32Array, words: Uint32Array, start: number, count: number): number {
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

/** {@link keyedFullChecksum} under `key` as a {@link PageHash} (cold callers and tests). */
export function makeFullChecksum(key: Uint32Array): PageHash {
  const k = fullChecksumKey(key)
  return (words, start, count) => keyedFullChecksum(k, words, start, count)
}

/** Number of words {@link makeSampledKey} reads. */
export const SAMPLE_WORDS = 64

/** Runs of 4 words {@link keyedSampledKey} reads, one per sixteenth of the page. */
const RUNS = 16

/**
 * The key words of an engine's sampled key for pages of `wordsPerPage` words, derived from its
 * 128-bit key material (or a number, expanded with {@link expandSeed}): two seeds, then each
 * run's word offset, then each run's key.
 */
export function sampledKeyParams(wordsPerPage: number, key: Uint32Array | number): Int32Array {
  const material = typeof key === "number" ? expandSeed(key) : key
  const span = wordsPerPage / RUNS
  const d = derive(material, 0x53414d50, RUNS + 2 + RUNS)
  const p = new Int32Array(2 + 2 * RUNS)
  p[0] = d[RUNS]! | 0
  p[1] = d[RUNS + 1]! | 0
  for (let r = 0; r < RUNS; r++) p[2 + r] = r * span + (d[r]! % (span - 3))
  for (let r = 0; r < RUNS; r++) p[2 + RUNS + r] = d[RUNS + 2 + r]! | 0
  return p
}

/**
 * The keyed sampled key of the page at `words[start..]`: 16 runs of 4 words, one run in each
 * sixteenth of the page at a key-chosen offset ({@link sampledKeyParams}). Runs of 4 keep the
 * reads cache-friendly; one run per sixteenth keeps any localized difference likely to show.
 * One function for every engine (see {@link keyedFullChecksum} for why).
 */
export function keyedSampledKey(p: Int32Array, words: Uint32Array, start: number): number {
  let a = p[0]!
  let b = p[1]!
  for (let r = 0; r < RUNS; r += 2) {
    const i = start + p[2 + r]!
    const j = start + p[3 + r]!
    const ka = p[2 + RUNS + r]!
    const kb = p[3 + RUNS + r]!
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

/** {@link keyedSampledKey} for pages of `wordsPerPage` words under `key`, as a {@link PageHash} (cold callers and tests). */
export function makeSampledKey(wordsPerPage: number, key: Uint32Array | number): PageHash {
  const p = sampledKeyParams(wordsPerPage, key)
  return (words, start) => keyedSampledKey(p, words, start)
}

/** Second-level table key of a page whose sampled key `key` (already salted) is crowded. */
export function secondKey(fullSum: number, key: number): number {
  return fmix((fullSum ^ Math.imul(key, GOLDEN) ^ 0x2d4b5f1a) >>> 0)
}

/**
 * Key words of {@link keyedNh} for pages of `wordsPerPage` words: one 32-bit word per page word
 * (its two 16-bit halves are the NH keys of the word's two halves), derived from the key material.
 */
export function nhKey(material: Uint32Array, wordsPerPage: number): Int32Array {
  return new Int32Array(derive(material, 0x4e48_3136, wordsPerPage))
}

/**
 * NH (the universal hash of UMAC, RFC 4418) over 16-bit halves, keyed with {@link nhKey}: the sum
 * over the page's words of `((lo + klo) mod 2^16) * ((hi + khi) mod 2^16)` mod 2^32. For any two
 * different pages the probability over the key that they collide is at most 2^-16, however the
 * pages were chosen: unlike the fast hashes above it has no key-independent differentials, so
 * a page writer who does not know the key cannot make pages collide except by chance (spraying
 * 2^16 pages per expected collision). About 2x the full checksum's cost; the merge table uses it
 * only at its third key level, for full checksums that crowded (crafted pages).
 */
export function keyedNh(k: Int32Array, words: Uint32Array, start: number, count: number): number {
  let s0 = 0
  let s1 = 0
  const end = start + count
  for (let i = start, j = 0; i < end; i += 2, j += 2) {
    const w = words[i]!
    const v = words[i + 1]!
    const ka = k[j]!
    const kb = k[j + 1]!
    s0 = (s0 + Math.imul(((w & 0xffff) + (ka & 0xffff)) & 0xffff, ((w >>> 16) + (ka >>> 16)) & 0xffff)) | 0
    s1 = (s1 + Math.imul(((v & 0xffff) + (kb & 0xffff)) & 0xffff, ((v >>> 16) + (kb >>> 16)) & 0xffff)) | 0
  }
  return fmix(((s0 + s1) ^ count) >>> 0)
}

/** Third-level table key of a page whose second-level key `key2` crowded: its {@link keyedNh} with the key. */
export function thirdKey(nh: number, key2: number): number {
  return fmix((nh ^ Math.imul(key2, M1) ^ 0x6b43a9b5) >>> 0)
}

/** Adapt a user checksum over bytes to a {@link PageHash} (test and research use: it allocates a view). */
export function fromBytesChecksum(fn: ChecksumFunction): PageHash {
  return (words, start, count) => fn(new Uint8Array(words.buffer, words.byteOffset + start * 4, count * 4)) >>> 0
}

/** Salt that separates merge domains in the table key: a bijection of the domain id. */
export function domainSalt(domainId: number): number {
  return Math.imul(domainId, GOLDEN) >>> 0
}
