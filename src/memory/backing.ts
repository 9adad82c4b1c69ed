/**
 * The frame-backing seam: how the bytes behind frames are allocated, compared, copied and
 * zeroed. The frame pool asks for slabs through it and does every byte operation on frames
 * through it, so a different store (one flat buffer, a SharedArrayBuffer for a worker
 * scanner, a resizable buffer that shrinks) replaces this file, not the pool.
 *
 * The default backs each slab with its own ArrayBuffer, and compares through the platform's
 * memcmp (native in Node, a word loop elsewhere).
 */
import { compareBytes } from "../platform.ts"

/** What the frame pool needs from the memory behind its slabs. */
export interface FrameBacking {
  /** A new zero-filled slab of `bytes` bytes; throws RangeError when the runtime refuses. */
  allocate(bytes: number): Uint8Array
  /** memcmp of `n` bytes: 0 when equal. */
  compare(a: Uint8Array, ao: number, b: Uint8Array, bo: number, n: number): number
  /** Copy `n` bytes from `src[so..]` to `dst[dso..]` (the ranges never overlap). */
  copy(src: Uint8Array, so: number, dst: Uint8Array, dso: number, n: number): void
  /** Whether `n` bytes at `a[ao..]` are all zero. */
  isZero(a: Uint8Array, ao: number, n: number): boolean
}

/** The default backing: one ArrayBuffer per slab. */
export function heapBacking(maxPageSize: number): FrameBacking {
  // A zero page to compare against: the native memcmp beats any JavaScript loop over 4 KiB.
  const zeros = new Uint8Array(maxPageSize)
  return {
    allocate: (bytes) => new Uint8Array(bytes),
    compare: compareBytes,
    // Within one slab copyWithin is a memmove; across slabs set() copies without a temporary.
    copy: (src, so, dst, dso, n) => (src === dst ? void dst.copyWithin(dso, so, so + n) : dst.set(src.subarray(so, so + n), dso)),
    isZero: (a, ao, n) => compareBytes(zeros, 0, a, ao, n) === 0,
  }
}
