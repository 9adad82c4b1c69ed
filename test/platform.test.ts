/**
 * The platform seam (src/platform.ts): the portable memcmp agrees with Node's native one on
 * random buffers (unaligned offsets and views included, the sign of the first differing byte
 * too), compareBytes is that comparison, the clock, defer and timer services behave, and detach
 * transfers a buffer leaving its views unusable.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { compareBytes, cpuMicros, defer, detach, measuresCpu, nowMillis, portableCompare, timer } from "../src/platform.ts"

/** Node's memcmp on the two ranges (-1, 0 or 1). */
function nodeCompare(a: Uint8Array, ao: number, b: Uint8Array, bo: number, n: number): number {
  return Buffer.compare(a.subarray(ao, ao + n), b.subarray(bo, bo + n))
}

/** Two buffers inside larger ones (so views start unaligned), mostly equal, differing at a few places. */
const pair = fc
  .record({
    n: fc.integer({ min: 0, max: 300 }),
    viewA: fc.nat(7),
    viewB: fc.nat(7),
    ao: fc.nat(9),
    bo: fc.nat(9),
    fill: fc.nat(255),
    diffs: fc.array(fc.record({ at: fc.nat(299), byte: fc.nat(255) }), { maxLength: 3 }),
  })
  .map(({ n, viewA, viewB, ao, bo, fill, diffs }) => {
    const a = new Uint8Array(new ArrayBuffer(viewA + ao + n + 8), viewA, ao + n + 4).fill(fill)
    const b = new Uint8Array(new ArrayBuffer(viewB + bo + n + 8), viewB, bo + n + 4).fill(fill)
    for (const d of diffs) if (d.at < n) b[bo + d.at] = d.byte
    return { a, ao, b, bo, n }
  })

describe("memcmp", () => {
  it("portableCompare equals Node's memcmp in sign, at any alignment of views and offsets", () => {
    fc.assert(
      fc.property(pair, ({ a, ao, b, bo, n }) => {
        const want = nodeCompare(a, ao, b, bo, n)
        expect(Math.sign(portableCompare(a, ao, b, bo, n))).toBe(want)
        expect(Math.sign(portableCompare(b, bo, a, ao, n))).toBe(0 - want)
        expect(Math.sign(compareBytes(a, ao, b, bo, n))).toBe(want)
      }),
      { numRuns: 3000 },
    )
  })

  it("the sign is the first differing byte's, wherever it falls in a 32-bit word", () => {
    const a = new Uint8Array(64)
    for (let at = 0; at < 64; at++) {
      const b = new Uint8Array(64)
      b[at] = 1
      // A later byte the other way round must not decide it.
      if (at + 1 < 64) a[at + 1] = 2
      expect([portableCompare(a, 0, b, 0, 64), portableCompare(b, 0, a, 0, 64)], `first difference at ${at}`).toEqual([-1, 1])
      a.fill(0)
    }
  })

  it("compares only n bytes: differences past the range do not count", () => {
    const a = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9)
    const b = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 0)
    expect(portableCompare(a, 0, b, 0, 8)).toBe(0)
    expect(compareBytes(a, 0, b, 0, 8)).toBe(0)
    expect(portableCompare(a, 0, b, 0, 9)).toBe(1)
    expect(portableCompare(a, 0, b, 0, 0)).toBe(0)
  })
})

describe("clocks and scheduling", () => {
  it("nowMillis is monotonic; cpuMicros measures CPU time under Node", () => {
    const t0 = nowMillis()
    const c0 = cpuMicros()
    let x = 0
    while (nowMillis() - t0 < 20) x++
    expect(x).toBeGreaterThan(0)
    expect(nowMillis()).toBeGreaterThanOrEqual(t0)
    expect(measuresCpu).toBe(true)
    expect(cpuMicros() - c0).toBeGreaterThan(5000)
  })

  it("defer runs its function after the current task, not during it", async () => {
    const order: string[] = []
    const done = new Promise<void>((resolve) =>
      defer(() => {
        order.push("deferred")
        resolve()
      }),
    )
    order.push("sync")
    await done
    expect(order).toEqual(["sync", "deferred"])
  })

  it("timer fires after its delay; cancel stops it; delays are clamped into setTimeout's range", async () => {
    const fired: string[] = []
    timer(() => fired.push("10ms"), 10)
    timer(() => fired.push("negative"), -5)
    const cancel = timer(() => fired.push("cancelled"), 5)
    const huge = timer(() => fired.push("2^40 ms"), 2 ** 40)
    cancel()
    await new Promise((r) => setTimeout(r, 60))
    huge()
    expect(fired.sort()).toEqual(["10ms", "negative"])
  })
})

describe("detach", () => {
  it("moves a buffer's memory to a new owner without copying; every view of the old one becomes unusable", () => {
    const old = new ArrayBuffer(16)
    const view = new Uint8Array(old)
    view[3] = 7
    const owner = detach(old)
    expect(owner).not.toBe(old)
    expect(new Uint8Array(owner)[3]).toBe(7)
    expect([old.byteLength, view.byteLength, view[3]]).toEqual([0, 0, undefined])
    view[3] = 9 // dropped
    expect(new Uint8Array(owner)[3]).toBe(7)
  })
})
