/**
 * The default frame backing (src/memory/backing.ts): zero-filled stores of the asked size,
 * memcmp between frames of one store or of two, and the zero test, at any offset.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { heapBacking } from "../../src/memory/backing.ts"

const PS = 512

describe("heapBacking", () => {
  it("allocates zero-filled stores of the asked size, each its own memory", () => {
    const b = heapBacking(PS)
    const s1 = b.allocate(4 * PS)
    const s2 = b.allocate(4 * PS)
    expect(s1.byteLength).toBe(4 * PS)
    expect(s1.every((x) => x === 0)).toBe(true)
    s1[0] = 1
    expect(s2[0]).toBe(0)
  })

  it("compare and isZero agree with a byte-by-byte reference, within one store and across two", () => {
    fc.assert(
      fc.property(fc.nat(3), fc.nat(3), fc.boolean(), fc.array(fc.record({ at: fc.nat(PS - 1), byte: fc.nat(255), frame: fc.nat(1) }), { maxLength: 4 }), (fa, fb, sameStore, writes) => {
        const b = heapBacking(PS)
        const x = b.allocate(4 * PS)
        const y = sameStore ? x : b.allocate(4 * PS)
        const [ao, bo] = [fa * PS, fb * PS]
        for (const w of writes) (w.frame === 0 ? x : y)[(w.frame === 0 ? ao : bo) + w.at] = w.byte
        const xs = x.slice(ao, ao + PS)
        const ys = y.slice(bo, bo + PS)
        expect(b.isZero(x, ao, PS)).toBe(xs.every((v) => v === 0))
        expect(b.isZero(y, bo, PS)).toBe(ys.every((v) => v === 0))
        expect(Math.sign(b.compare(x, ao, y, bo, PS))).toBe(Buffer.compare(xs, ys))
      }),
      { numRuns: 500 },
    )
  })

  it("isZero looks at exactly n bytes at the offset, up to the page size", () => {
    const b = heapBacking(PS)
    const s = b.allocate(2 * PS)
    s[PS - 1] = 1
    expect(b.isZero(s, 0, PS - 1)).toBe(true)
    expect(b.isZero(s, 0, PS)).toBe(false)
    expect(b.isZero(s, PS, PS)).toBe(true)
  })
})
