/** xorshift32 (Marsaglia): a small seeded generator of unsigned 32-bit words, so every run, every implementation and every process sees the same sequence. Seed 0 becomes 1 (0 is a fixed point). */
export function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>>= 0)
  }
}
