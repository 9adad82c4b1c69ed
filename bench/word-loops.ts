/**
 * The measured loops of bench/word-access.ts, one function per (loop, implementation), so
 * every call site inside a loop sees one receiver type (monomorphic, as a host's would).
 *
 * Every loop takes an address list (a power-of-two length of aligned addresses, except for
 * the any-alignment read) and runs `n` operations on the entries `start, start+1, ...`
 * (wrapping), returning a value the caller consumes so the JIT cannot drop the loop.
 *
 * Loops:
 * - read: random reads, XOR-accumulated (independent loads: the CPU overlaps their misses).
 * - write: random stores of the loop counter.
 * - rmw: dependent read-modify-write. The new value (old + DELTA) picks the word of the next
 *   access within its 64-byte line (address XOR (value & 15) << 2), so each access waits for
 *   the previous one: misses cannot overlap, and the address and value chain through the reads.
 *   The XOR stays inside the aligned 64-byte block, so the address stays in bounds and in
 *   the same page.
 * - stream: the read loop over an emulator-like address list (see {@link streamAddresses}).
 * - rmwIndep: the read-modify-write without the chain (an extra loop, not one of the issue's
 *   four): throughput-bound where rmw is latency-bound.
 *
 * Implementations: a DataView and a Uint32Array over one plain ArrayBuffer; sksm through its
 * method API (readU32 / writeU32); the translate-once calls (addU32 / updateU32, read-modify-write
 * only); and direct access, a one-entry software TLB per loop kept the way an emulator keeps
 * one: re-translate when the page changes (a TLB miss), then index `memory.words` (reads
 * translate with forWrite false, writes with true). `tlbEpoch` changes only inside a call into
 * the engine, so it is checked after each translate (re-reading `memory.words` when it moved),
 * not on every access: the loop makes no other engine call. Page numbers are kept int32
 * (`| 0`), so the TLB tag compare is an integer compare, not a float64 one (uint32 against -1).
 */

import { xorshift32 } from "./xorshift.ts"

/** The delta the read-modify-write loop adds: odd, below 2^31 (an int32, the usual fast path). */
export const DELTA = 0x61c88647

/** The method API every sksm space has. */
export interface MethodSpace {
  readonly pageSize: number
  readU32(addr: number): number
  writeU32(addr: number, value: number): void
}

/** The frame store a direct-access host indexes (shared by all spaces of an engine). */
export interface DirectMemory {
  readonly bytes: Uint8Array
  readonly words: Uint32Array
  readonly view: DataView
}

/** The translate-once and direct-access API of issue 12 (on AddressSpace once the new store lands). */
export interface FastSpace extends MethodSpace {
  addU32(addr: number, delta: number): number
  updateU32(addr: number, fn: (old: number) => number): number
  readonly memory: DirectMemory
  translate(addr: number, forWrite: boolean): number
  readonly tlbEpoch: number
}

/** True when `s` has issue 12's addU32 / updateU32 / translate / memory / tlbEpoch. */
export function hasFastApi(s: MethodSpace): s is FastSpace {
  const f = s as Partial<FastSpace>
  return typeof f.addU32 === "function" && typeof f.updateU32 === "function" && typeof f.translate === "function"
}

// ------------------------------------------------------------------------------------ read

export function readDataView(dv: DataView, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  let x = 0
  for (let i = 0; i < n; i++) x ^= dv.getUint32(addrs[(start + i) & m]!, true)
  return x
}

export function readUint32Array(u32: Uint32Array, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  let x = 0
  for (let i = 0; i < n; i++) x ^= u32[addrs[(start + i) & m]! >>> 2]!
  return x
}

export function readMethod(s: MethodSpace, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  let x = 0
  for (let i = 0; i < n; i++) x ^= s.readU32(addrs[(start + i) & m]!)
  return x
}

export function readDirect(s: FastSpace, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  const shift = 31 - Math.clz32(s.pageSize)
  const offMask = s.pageSize - 1
  let words = s.memory.words
  let epoch = s.tlbEpoch
  let tlbPage = -1
  let tlbBase = 0
  let x = 0
  for (let i = 0; i < n; i++) {
    const a = addrs[(start + i) & m]!
    const page = (a >>> shift) | 0
    if (page !== tlbPage) {
      tlbBase = s.translate(a, false)
      tlbPage = page
      if (s.tlbEpoch !== epoch) {
        words = s.memory.words
        epoch = s.tlbEpoch
      }
    }
    x ^= words[(tlbBase + (a & offMask)) >>> 2]!
  }
  return x
}

// ----------------------------------------------------------------------------------- write

export function writeDataView(dv: DataView, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  for (let i = 0; i < n; i++) dv.setUint32(addrs[(start + i) & m]!, i, true)
  return n
}

export function writeUint32Array(u32: Uint32Array, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  for (let i = 0; i < n; i++) u32[addrs[(start + i) & m]! >>> 2] = i
  return n
}

export function writeMethod(s: MethodSpace, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  for (let i = 0; i < n; i++) s.writeU32(addrs[(start + i) & m]!, i)
  return n
}

export function writeDirect(s: FastSpace, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  const shift = 31 - Math.clz32(s.pageSize)
  const offMask = s.pageSize - 1
  let words = s.memory.words
  let epoch = s.tlbEpoch
  let tlbPage = -1
  let tlbBase = 0
  for (let i = 0; i < n; i++) {
    const a = addrs[(start + i) & m]!
    const page = (a >>> shift) | 0
    if (page !== tlbPage) {
      tlbBase = s.translate(a, true)
      tlbPage = page
      if (s.tlbEpoch !== epoch) {
        words = s.memory.words
        epoch = s.tlbEpoch
      }
    }
    words[(tlbBase + (a & offMask)) >>> 2] = i
  }
  return n
}

// ------------------------------------------------------------ dependent read-modify-write

export function rmwDataView(dv: DataView, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  let v = 0
  for (let i = 0; i < n; i++) {
    const a = addrs[(start + i) & m]! ^ ((v & 15) << 2)
    v = (dv.getUint32(a, true) + DELTA) >>> 0
    dv.setUint32(a, v, true)
  }
  return v
}

export function rmwUint32Array(u32: Uint32Array, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  let v = 0
  for (let i = 0; i < n; i++) {
    const w = (addrs[(start + i) & m]! ^ ((v & 15) << 2)) >>> 2
    v = (u32[w]! + DELTA) >>> 0
    u32[w] = v
  }
  return v
}

export function rmwMethod(s: MethodSpace, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  let v = 0
  for (let i = 0; i < n; i++) {
    const a = addrs[(start + i) & m]! ^ ((v & 15) << 2)
    v = (s.readU32(a) + DELTA) >>> 0
    s.writeU32(a, v)
  }
  return v
}

export function rmwAddU32(s: FastSpace, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  let v = 0
  for (let i = 0; i < n; i++) v = s.addU32(addrs[(start + i) & m]! ^ ((v & 15) << 2), DELTA)
  return v
}

/** The update function is hoisted (one closure for the whole loop), as a host would write it. */
const addDelta = (old: number): number => (old + DELTA) >>> 0

export function rmwUpdateU32(s: FastSpace, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  let v = 0
  for (let i = 0; i < n; i++) v = s.updateU32(addrs[(start + i) & m]! ^ ((v & 15) << 2), addDelta)
  return v
}

export function rmwDirect(s: FastSpace, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  const shift = 31 - Math.clz32(s.pageSize)
  const offMask = s.pageSize - 1
  let words = s.memory.words
  let epoch = s.tlbEpoch
  let tlbPage = -1
  let tlbBase = 0
  let v = 0
  for (let i = 0; i < n; i++) {
    const a = addrs[(start + i) & m]! ^ ((v & 15) << 2)
    const page = (a >>> shift) | 0
    if (page !== tlbPage) {
      tlbBase = s.translate(a, true)
      tlbPage = page
      if (s.tlbEpoch !== epoch) {
        words = s.memory.words
        epoch = s.tlbEpoch
      }
    }
    const w = (tlbBase + (a & offMask)) >>> 2
    v = (words[w]! + DELTA) >>> 0
    words[w] = v
  }
  return v
}

// ---------------------------------------------------------- independent read-modify-write

// The same update at addresses that do not depend on earlier values: the CPU overlaps the
// misses, so per-access instruction overhead shows instead of memory latency. Returns the
// XOR of the stored values.

export function rmwIndepDataView(dv: DataView, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  let x = 0
  for (let i = 0; i < n; i++) {
    const a = addrs[(start + i) & m]!
    const v = (dv.getUint32(a, true) + DELTA) >>> 0
    dv.setUint32(a, v, true)
    x ^= v
  }
  return x
}

export function rmwIndepUint32Array(u32: Uint32Array, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  let x = 0
  for (let i = 0; i < n; i++) {
    const w = addrs[(start + i) & m]! >>> 2
    const v = (u32[w]! + DELTA) >>> 0
    u32[w] = v
    x ^= v
  }
  return x
}

export function rmwIndepMethod(s: MethodSpace, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  let x = 0
  for (let i = 0; i < n; i++) {
    const a = addrs[(start + i) & m]!
    const v = (s.readU32(a) + DELTA) >>> 0
    s.writeU32(a, v)
    x ^= v
  }
  return x
}

export function rmwIndepAddU32(s: FastSpace, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  let x = 0
  for (let i = 0; i < n; i++) x ^= s.addU32(addrs[(start + i) & m]!, DELTA)
  return x
}

export function rmwIndepUpdateU32(s: FastSpace, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  let x = 0
  for (let i = 0; i < n; i++) x ^= s.updateU32(addrs[(start + i) & m]!, addDelta)
  return x
}

export function rmwIndepDirect(s: FastSpace, addrs: Uint32Array, start: number, n: number): number {
  const m = addrs.length - 1
  const shift = 31 - Math.clz32(s.pageSize)
  const offMask = s.pageSize - 1
  let words = s.memory.words
  let epoch = s.tlbEpoch
  let tlbPage = -1
  let tlbBase = 0
  let x = 0
  for (let i = 0; i < n; i++) {
    const a = addrs[(start + i) & m]!
    const page = (a >>> shift) | 0
    if (page !== tlbPage) {
      tlbBase = s.translate(a, true)
      tlbPage = page
      if (s.tlbEpoch !== epoch) {
        words = s.memory.words
        epoch = s.tlbEpoch
      }
    }
    const w = (tlbBase + (a & offMask)) >>> 2
    const v = (words[w]! + DELTA) >>> 0
    words[w] = v
    x ^= v
  }
  return x
}

// --------------------------------------------------------------------------- address lists

/** `count` (a power of two) random addresses in [0, size - 4], multiples of 4 unless `anyAlignment`. */
export function randomAddresses(count: number, size: number, seed: number, anyAlignment = false): Uint32Array {
  if ((count & (count - 1)) !== 0) throw new Error("count must be a power of two")
  const next = xorshift32(seed)
  const out = new Uint32Array(count)
  const words = size / 4
  // Two draws make a 53-bit-ish uniform value: no bias for sizes up to 4 GiB.
  for (let i = 0; i < count; i++) out[i] = anyAlignment ? Math.floor(((next() * 2 ** 32 + next()) / 2 ** 64) * (size - 3)) : Math.floor(((next() * 2 ** 32 + next()) / 2 ** 64) * words) * 4
  return out
}

/**
 * An emulator-like access stream as long as `targets`: each access is the next word (90%)
 * or a jump to one of `targets` (10%); the word after the last one of the space wraps to 0.
 * Runs average 10 words, so a page is mostly reused by the next access, as an instruction
 * fetch or a sequential data walk would.
 */
export function streamAddresses(targets: Uint32Array, size: number, seed: number): Uint32Array {
  const next = xorshift32(seed)
  const out = new Uint32Array(targets.length)
  const m = targets.length - 1
  let pc = targets[0]!
  for (let i = 0; i < out.length; i++) {
    if (i > 0) pc = next() % 10 === 0 ? targets[next() & m]! : pc + 4 >= size ? 0 : pc + 4
    out[i] = pc
  }
  return out
}
