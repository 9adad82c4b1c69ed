/**
 * bench/word-loops.ts computes the same thing through every implementation: the benchmark's
 * ratios compare like with like only if a DataView, a Uint32Array, the method API, the
 * translate-once calls and the direct-access loop (with its TLB and epoch check) read and
 * store the same words. The direct loops are checked against a stub space that maps pages
 * to frames in reverse order and copies a page on its first write into a grown store (new
 * `memory`, new epoch), so a loop that kept a stale translation or a stale `words` fails;
 * and, once AddressSpace has the new API, against a real space after fork and merge.
 */
import { randomFillSync } from "node:crypto"
import { describe, expect, it } from "vitest"
import * as L from "../../bench/word-loops.ts"
import { Engine } from "../helpers/internals.ts"

const PS = 4096
const PAGES = 16
const SIZE = PAGES * PS

/** Pages map to frames in reverse; the first write to a page copies it into a new frame of a grown store. */
class StubSpace implements L.FastSpace {
  readonly pageSize = PS
  tlbEpoch = 0
  memory: L.DirectMemory
  translations = 0
  readonly #map = new Int32Array(PAGES)
  readonly #private = new Uint8Array(PAGES)
  #frames = PAGES

  constructor(contents: Uint8Array) {
    const bytes = new Uint8Array(SIZE)
    for (let p = 0; p < PAGES; p++) {
      this.#map[p] = PAGES - 1 - p
      bytes.set(contents.subarray(p * PS, (p + 1) * PS), (PAGES - 1 - p) * PS)
    }
    this.memory = memoryOf(bytes)
  }

  translate(addr: number, forWrite: boolean): number {
    this.translations++
    const p = Math.floor(addr / PS)
    if (forWrite && this.#private[p] === 0) {
      const grown = new Uint8Array((this.#frames + 1) * PS)
      grown.set(this.memory.bytes)
      grown.copyWithin(this.#frames * PS, this.#map[p]! * PS, (this.#map[p]! + 1) * PS)
      this.#map[p] = this.#frames++
      this.#private[p] = 1
      this.memory = memoryOf(grown)
      this.tlbEpoch++
    }
    return this.#map[p]! * PS
  }

  readU32(addr: number): number {
    return this.memory.view.getUint32(this.translate(addr, false) + (addr % PS), true)
  }
  writeU32(addr: number, value: number): void {
    const o = this.translate(addr, true) + (addr % PS) // first: it may replace `memory`
    this.memory.view.setUint32(o, value, true)
  }
  addU32(addr: number, delta: number): number {
    return this.updateU32(addr, (old) => (old + delta) >>> 0)
  }
  updateU32(addr: number, fn: (old: number) => number): number {
    const o = this.translate(addr, true) + (addr % PS)
    const v = fn(this.memory.view.getUint32(o, true)) >>> 0
    this.memory.view.setUint32(o, v, true)
    return v
  }
}

function memoryOf(bytes: Uint8Array): L.DirectMemory {
  return { bytes, words: new Uint32Array(bytes.buffer), view: new DataView(bytes.buffer) }
}

/** Every word of a space through readU32. */
function wordsOf(s: L.MethodSpace, size: number): Uint32Array {
  const out = new Uint32Array(size / 4)
  for (let i = 0; i < out.length; i++) out[i] = s.readU32(i * 4)
  return out
}

type Loop<T> = (target: T, addrs: Uint32Array, start: number, n: number) => number

/** Run each loop on a fresh copy of `contents`; return its result and the memory it leaves. */
function runAll(contents: Uint8Array, addrs: Uint32Array, loops: { dv: Loop<DataView>; u32: Loop<Uint32Array>; method: Loop<L.MethodSpace>; fast: Loop<L.FastSpace>[] }) {
  const n = 3 * addrs.length + 5
  const plain = (): Uint8Array => contents.slice()
  const out: { result: number; words: Uint32Array }[] = []
  const a = plain()
  out.push({ result: loops.dv(new DataView(a.buffer), addrs, 3, n), words: new Uint32Array(a.buffer) })
  const b = plain()
  out.push({ result: loops.u32(new Uint32Array(b.buffer), addrs, 3, n), words: new Uint32Array(b.buffer) })
  const m = new StubSpace(contents)
  out.push({ result: loops.method(m, addrs, 3, n), words: wordsOf(m, SIZE) })
  for (const f of loops.fast) {
    const s = new StubSpace(contents)
    out.push({ result: f(s, addrs, 3, n), words: wordsOf(s, SIZE) })
  }
  return out
}

describe("bench/word-loops", () => {
  const contents = randomFillSync(new Uint8Array(SIZE))
  const addrs = L.randomAddresses(256, SIZE, 7)
  const stream = L.streamAddresses(addrs, SIZE, 8)

  it("makes aligned in-range address lists and an emulator-like stream (mostly the next word)", () => {
    for (const a of addrs) expect(a % 4 === 0 && a >= 0 && a <= SIZE - 4).toBe(true)
    const unaligned = L.randomAddresses(256, SIZE, 9, true)
    expect(unaligned.some((a) => a % 4 !== 0)).toBe(true)
    for (const a of unaligned) expect(a >= 0 && a <= SIZE - 4).toBe(true)
    let next = 0
    for (let i = 1; i < stream.length; i++) if (stream[i] === stream[i - 1]! + 4) next++
    expect(next / stream.length).toBeGreaterThan(0.8)
    expect(next / stream.length).toBeLessThan(0.97)
  })

  it.each([
    ["random read", addrs],
    ["stream", stream],
  ])("%s: every implementation reads the same words", (_, list) => {
    const r = runAll(contents, list, { dv: L.readDataView, u32: L.readUint32Array, method: L.readMethod, fast: [L.readDirect] })
    for (const x of r) expect(x.result).toBe(r[0]!.result)
  })

  it("random write: every implementation leaves the same memory", () => {
    const r = runAll(contents, addrs, { dv: L.writeDataView, u32: L.writeUint32Array, method: L.writeMethod, fast: [L.writeDirect] })
    for (const x of r) expect(x.words).toEqual(r[0]!.words)
  })

  it.each([
    ["dependent", { dv: L.rmwDataView, u32: L.rmwUint32Array, method: L.rmwMethod, fast: [L.rmwAddU32, L.rmwUpdateU32, L.rmwDirect] }],
    ["independent", { dv: L.rmwIndepDataView, u32: L.rmwIndepUint32Array, method: L.rmwIndepMethod, fast: [L.rmwIndepAddU32, L.rmwIndepUpdateU32, L.rmwIndepDirect] }],
  ] as const)("%s read-modify-write: same values and same memory through all six", (_, loops) => {
    const r = runAll(contents, addrs, { ...loops, fast: [...loops.fast] })
    expect(r).toHaveLength(6)
    for (const x of r) {
      expect(x.result).toBe(r[0]!.result)
      expect(x.words).toEqual(r[0]!.words)
    }
  })

  it("the direct loops re-translate on a new page or epoch only", () => {
    const s = new StubSpace(contents)
    const page0 = Uint32Array.from({ length: 1024 }, (_, i) => i * 4) // every word of page 0
    L.readDirect(s, page0, 0, 1024)
    expect(s.translations).toBe(1)
    // The write translation copies the page (a new epoch and store); the loop takes the epoch
    // after translating, so it does not translate again.
    L.writeDirect(s, page0, 0, 1024)
    expect(s.translations).toBe(2)
  })

  const probe = new Engine().createSpace({ size: PS, name: "probe" })
  it.skipIf(!L.hasFastApi(probe))("direct loops agree with the method API on a real space after fork and merge", () => {
    const engine = new Engine()
    const parent = engine.createSpace({ size: SIZE, name: "parent" })
    parent.write(0, contents)
    parent.write(PS, contents.subarray(0, PS)) // pages 0 and 1 equal: merge shares them
    parent.merge()
    const child = parent.fork()
    const want = L.readMethod(parent, addrs, 0, 1000)
    expect(L.readDirect(child as unknown as L.FastSpace, addrs, 0, 1000)).toBe(want)
    const a = parent.fork()
    const b = parent.fork()
    expect(L.rmwDirect(a as unknown as L.FastSpace, addrs, 0, 1000)).toBe(L.rmwMethod(b, addrs, 0, 1000))
    expect(wordsOf(a, SIZE)).toEqual(wordsOf(b, SIZE))
    expect(L.readMethod(parent, addrs, 0, 1000)).toBe(want) // copy-on-write left the parent alone
  })
})
