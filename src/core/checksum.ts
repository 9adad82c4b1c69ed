/**
 * Page checksums. Two functions, both over a frame's words in place (no copy, no allocation):
 *
 * - {@link fullChecksum}: every word of the page, like the kernel's `calc_checksum`
 *   (xxhash). The scanner uses it to decide whether a page stayed unchanged between
 *   two visits, so it must see every byte.
 * - {@link sampledKey}: the merge table's index. It reads a keyed sample of the page
 *   (64 words at positions derived from the engine's seed), which is what lets merge()
 *   run faster than a full hash. It only finds candidates: a match is always confirmed
 *   by a full memcmp, so a weak key can cost time but never correctness. The seed
 *   makes its sample positions and mixing unknown to whoever writes page contents.
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

/** Full-page checksum: four independent multiply lanes, so the loop runs at memory speed. */
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

/** Number of words {@link sampledKey} reads. */
export const SAMPLE_WORDS = 64

/**
 * Build the keyed sampler for pages of `wordsPerPage` words: 16 runs of 4 words, one run
 * in each sixteenth of the page at a seed-chosen offset. Runs of 4 keep the reads
 * cache-friendly; one run per sixteenth keeps any localized difference likely to show.
 */
export function makeSampledKey(wordsPerPage: number, seed: number): PageHash {
  const runs = 16
  const span = wordsPerPage / runs
  const offsets = new Int32Array(runs)
  let s = seed >>> 0
  for (let r = 0; r < runs; r++) {
    s = fmix(s + GOLDEN)
    offsets[r] = r * span + (s % (span - 3))
  }
  const seed0 = fmix(seed ^ M2)
  return (words: Uint32Array, start: number): number => {
    let a = seed0
    let b = seed0 ^ GOLDEN
    for (let r = 0; r < runs; r += 2) {
      const i = start + offsets[r]!
      const j = start + offsets[r + 1]!
      a = Math.imul(a ^ words[i]!, M1) + words[i + 1]!
      a = Math.imul(a ^ words[i + 2]!, M2) + words[i + 3]!
      b = Math.imul(b ^ words[j]!, M1) + words[j + 1]!
      b = Math.imul(b ^ words[j + 2]!, M2) + words[j + 3]!
    }
    return fmix(a ^ Math.imul(b, 5))
  }
}

/** Adapt a user checksum over bytes to a {@link PageHash} (test and research use: it allocates a view). */
export function fromBytesChecksum(fn: ChecksumFunction): PageHash {
  return (words, start, count) => fn(new Uint8Array(words.buffer, words.byteOffset + start * 4, count * 4)) >>> 0
}

/** Salt that separates merge domains in the table key: a bijection of the domain id. */
export function domainSalt(domainId: number): number {
  return Math.imul(domainId, GOLDEN) >>> 0
}
