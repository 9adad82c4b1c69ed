/**
 * The default frame backing (src/memory/backing.ts): zero-filled slabs of the asked size,
 * memcmp, copies within one slab and across slabs, and the zero test, at any offset.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { heapBacking } from "../../src/memory/backing.ts"

const PS = 512

describe("heapBacking", () => {
  it("allocates zero-filled slabs of the asked size, each its own memory", () => {
    const b = heapBacking(PS)
    const s1 = b.allocate(4 * PS)
    const s2 = b.allocate(4 * PS)
    expect(s1.byteLength).toBe(4 * PS)
    expect(s1.every((x) => x === 0)).toBe(true)
    s1[0] = 1
    expect(s2[0]).toBe(0)
  })

  it("compare, copy and isZero agree with a byte-by-byte reference, within and across slabs", () => {
    fc.assert(
      fc.property(fc.nat(3), fc.nat(3), fc.boolean(), fc.array(fc.record({ at: fc.nat(PS - 1), byte: fc.nat(255) }), { maxLength: 4 }), (fa, fb, sameSlab, writes) => {
        const b = heapBacking(PS)
        const x = b.allocate(4 * PS)
        const y = sameSlab ? x : b.allocate(4 * PS)
        if (sameSlab && fa === fb) return
        const [ao, bo] = [fa * PS, fb * PS]
        for (const w of writes) x[ao + w.at] = w.byte
        const xs = x.slice(ao, ao + PS)
        const ys = y.slice(bo, bo + PS)
        expect(b.isZero(x, ao, PS)).toBe(xs.every((v) => v === 0))
        expect(Math.sign(b.compare(x, ao, y, bo, PS))).toBe(Buffer.compare(xs, ys))
        b.copy(x, ao, y, bo, PS)
        expect(y.slice(bo, bo + PS)).toEqual(xs)
        expect(b.compare(x, ao, y, bo, PS)).toBe(0)
        // Nothing outside the destination frame changed.
        for (let f = 0; f < 4; f++) if (f !== fb && !(sameSlab && f === fa)) expect(y.slice(f * PS, f * PS + PS).every((v) => v === 0)).toBe(true)
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
