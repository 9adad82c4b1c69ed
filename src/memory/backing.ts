/**
 * The frame-backing seam: how the memory behind frames is allocated, compared and tested for
 * zero. The frame pool asks for its store through it, so a different kind of memory (a
 * SharedArrayBuffer for a worker scanner) replaces this file, not the pool.
 *
 * The default backs the store with an ArrayBuffer, and compares through the platform's memcmp
 * (native in Node, a word loop elsewhere).
 */
import { compareBytes } from "../platform.ts"

/** What the frame pool needs from the memory behind its slabs. */
export interface FrameBacking {
  /** A new zero-filled store of `bytes` bytes; throws RangeError when the runtime refuses. */
  allocate(bytes: number): Uint8Array
  /** memcmp of `n` bytes: 0 when equal. */
  compare(a: Uint8Array, ao: number, b: Uint8Array, bo: number, n: number): number
  /** Whether `n` bytes at `a[ao..]` are all zero. */
  isZero(a: Uint8Array, ao: number, n: number): boolean
}

/** The default backing: an ArrayBuffer. */
export function heapBacking(maxPageSize: number): FrameBacking {
  // A zero page to compare against: the native memcmp beats any JavaScript loop over 4 KiB.
  const zeros = new Uint8Array(maxPageSize)
  return {
    allocate: (bytes) => new Uint8Array(bytes),
    compare: compareBytes,
    isZero: (a, ao, n) => compareBytes(zeros, 0, a, ao, n) === 0,
  }
}
