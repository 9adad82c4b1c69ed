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
  /** Whether the store is a SharedArrayBuffer (another thread may read frames; no revocation by detaching). */
  readonly shared: boolean
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
    shared: false,
    allocate: (bytes) => new Uint8Array(bytes),
    compare: compareBytes,
    isZero: (a, ao, n) => compareBytes(zeros, 0, a, ao, n) === 0,
  }
}

/** Whether this runtime can share memory with a worker (a browser page needs cross-origin isolation). */
export function sharedMemoryAvailable(): string | null {
  if (typeof SharedArrayBuffer !== "function") {
    return "SharedArrayBuffer is not available here (a browser page needs cross-origin isolation: serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)"
  }
  const g = globalThis as { crossOriginIsolated?: unknown }
  if (g.crossOriginIsolated === false) return "this page is not cross-origin isolated (crossOriginIsolated is false): serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp"
  return null
}

/**
 * A SharedArrayBuffer store: a worker thread can read frames in place (the worker scanner).
 * Zero-filled like an ArrayBuffer; untouched pages cost no resident memory either.
 */
export function sharedBacking(maxPageSize: number): FrameBacking {
  const zeros = new Uint8Array(maxPageSize)
  return {
    shared: true,
    allocate: (bytes) => new Uint8Array(new SharedArrayBuffer(bytes)),
    compare: compareBytes,
    isZero: (a, ao, n) => compareBytes(zeros, 0, a, ao, n) === 0,
  }
}
