/**
 * The platform seam: the only module of the library that touches what differs between
 * runtimes (Node, browsers, Web Workers). Everything else is plain ECMAScript over typed arrays.
 *
 * Each service has a portable implementation; where Node offers a faster primitive (a native
 * memcmp, process CPU time, an unref'd immediate), it is used when present, found by feature
 * detection on `globalThis` (never imported, so bundlers for the browser see no Node module).
 */

/** Node's Buffer, when the runtime has one (feature detection; not imported). */
interface NodeBufferLike {
  readonly prototype: { compare(this: Uint8Array, target: Uint8Array, tStart: number, tEnd: number, sStart: number, sEnd: number): number }
}
/** Node's process, when the runtime has one. */
interface NodeProcessLike {
  cpuUsage(): { user: number; system: number }
}

const g = globalThis as { Buffer?: NodeBufferLike; process?: NodeProcessLike; setImmediate?: (fn: () => void) => { unref?(): void } }
const nodeCompare = typeof g.Buffer?.prototype?.compare === "function" ? g.Buffer.prototype.compare : null
const nodeCpuUsage = typeof g.process?.cpuUsage === "function" ? g.process.cpuUsage.bind(g.process) : null
const nodeImmediate = typeof g.setImmediate === "function" ? g.setImmediate : null

/** Monotonic wall time in milliseconds (any origin; only differences matter). */
export function nowMillis(): number {
  return performance.now()
}

/**
 * CPU time of this process (Node: user + system) or, where the runtime cannot tell (browsers,
 * workers), wall time, both in microseconds. Only differences matter.
 */
export function cpuMicros(): number {
  if (nodeCpuUsage !== null) {
    const u = nodeCpuUsage()
    return u.user + u.system
  }
  return performance.now() * 1000
}

/** Whether {@link cpuMicros} measures CPU time (true) or falls back to wall time (false). */
export const measuresCpu: boolean = nodeCpuUsage !== null

/**
 * Run `fn` soon, after the current task, without keeping the process alive for it
 * (Node: an unref'd setImmediate; elsewhere a zero-delay timeout).
 */
export function defer(fn: () => void): void {
  if (nodeImmediate !== null) {
    nodeImmediate(fn).unref?.()
    return
  }
  setTimeout(fn, 0)
}

/** A cancellable timer that does not keep a Node process alive. Returns its cancel function. */
export function timer(fn: () => void, ms: number): () => void {
  const t = setTimeout(fn, Math.min(Math.max(0, ms), 0x7fffffff)) as unknown as { unref?(): void }
  t.unref?.()
  return () => clearTimeout(t as unknown as ReturnType<typeof setTimeout>)
}

/**
 * memcmp of `n` bytes: `a[ao..ao+n)` against `b[bo..bo+n)`; 0 when equal, else the sign of the
 * first differing byte. Node: the native comparison (no allocation); elsewhere a word loop.
 */
export const compareBytes: (a: Uint8Array, ao: number, b: Uint8Array, bo: number, n: number) => number =
  nodeCompare !== null
    ? (a, ao, b, bo, n) => nodeCompare.call(a, b, bo, bo + n, ao, ao + n)
    : portableCompare

/** The portable memcmp: 32-bit words while both offsets allow, then bytes. Exported for tests. */
export function portableCompare(a: Uint8Array, ao: number, b: Uint8Array, bo: number, n: number): number {
  let i = 0
  if (((a.byteOffset + ao) & 3) === 0 && ((b.byteOffset + bo) & 3) === 0) {
    const wa = new Uint32Array(a.buffer, a.byteOffset + ao, n >>> 2)
    const wb = new Uint32Array(b.buffer, b.byteOffset + bo, n >>> 2)
    const w = n >>> 2
    let k = 0
    while (k < w && wa[k] === wb[k]) k++
    i = k << 2
  }
  for (; i < n; i++) {
    const d = a[ao + i]! - b[bo + i]!
    if (d !== 0) return d < 0 ? -1 : 1
  }
  return 0
}

/**
 * Detach `buffer`: its memory moves to a new ArrayBuffer (a transfer, no copy) and every view of
 * `buffer` becomes unusable (reads give undefined, writes are dropped). Returns the new owner.
 */
export function detach(buffer: ArrayBuffer): ArrayBuffer {
  return structuredClone(buffer, { transfer: [buffer] })
}
