/**
 * The page census behind `sksm estimate` (src/cli/census.ts): ksmCounts follows the kernel's
 * max_page_sharing rule (against greedy grouping), and PageCensus counts contents, zero pages
 * and per-region savings that add up to the totals.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { ksmCounts, PageCensus } from "../../src/cli/census.ts"

const PS = 4096

/** A page whose content is identified by `c` (0 = all zero). */
function page(c: number): Buffer {
  const b = Buffer.alloc(PS)
  if (c !== 0) b.writeUInt32LE(c, 100)
  return b
}

/** Reference: greedy KSM grouping, one page at a time (a stable frame takes up to m mappers). */
function simulate(n: number, m: number): { shared: number; sharing: number } {
  let shared = 0
  let sharing = 0
  let left = n
  while (left >= 2) {
    const take = Math.min(m, left)
    shared++
    sharing += take - 1
    left -= take
  }
  return { shared, sharing }
}

describe("ksmCounts (ksm-semantics B.10)", () => {
  it("matches the selftest expectations", () => {
    expect(ksmCounts(10, 256)).toEqual({ shared: 1, sharing: 9 })
    expect(ksmCounts(256, 256)).toEqual({ shared: 1, sharing: 255 })
    expect(ksmCounts(257, 256)).toEqual({ shared: 1, sharing: 255 })
    expect(ksmCounts(258, 256)).toEqual({ shared: 2, sharing: 256 })
    expect(ksmCounts(1, 256)).toEqual({ shared: 0, sharing: 0 })
    expect(ksmCounts(98304, 98304)).toEqual({ shared: 1, sharing: 98303 })
  })
  it("equals greedy grouping for every n and m", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 2, max: 300 }), (n, m) => {
      expect(ksmCounts(n, m)).toEqual(simulate(n, m))
    }))
  })
})

describe("PageCensus", () => {
  it("counts contents, zero pages and KSM's counters", () => {
    const c = new PageCensus({ pageSize: PS, maxPageSharing: 3, useZeroPages: false })
    const r = c.region(0, "r", 0, 0)
    for (const x of [0, 0, 7, 7, 7, 7, 9, 9, 5]) c.addPage(r, page(x), 0)
    const t = c.totals()
    expect(t).toMatchObject({ pages: 9, zeroPages: 2, duplicatePages: 6, distinctContents: 4, duplicatedContents: 2, ksmZeroPages: 0 })
    // zero x2 -> 1/1; 7 x4 with m=3 -> 1 shared, 2 sharing, 1 unshared; 9 x2 -> 1/1; 5 unique.
    expect(t.pagesShared).toBe(3)
    expect(t.pagesSharing).toBe(4)
    expect(t.pagesUnshared).toBe(2)
    expect(t.savedBytes).toBe(4 * PS)
    expect(t.profitBytes).toBe(4 * PS - 9 * 64)
  })

  it("with useZeroPages, zero pages become ksm_zero_pages and leave the stable counts", () => {
    const c = new PageCensus({ pageSize: PS, maxPageSharing: 256, useZeroPages: true })
    const r = c.region(0, "r", 0, 0)
    for (const x of [0, 0, 0, 1, 1]) c.addPage(r, page(x), 0)
    expect(c.totals()).toMatchObject({ ksmZeroPages: 3, pagesShared: 1, pagesSharing: 1, savedBytes: 4 * PS })
    expect(c.regions()[0]).toMatchObject({ ksmZeroPages: 3, pagesShared: 1, pagesSharing: 1 })
  })

  it("attributes savings to regions so that they add up to the totals", () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.integer({ min: 0, max: 6 }), { maxLength: 40 }), { minLength: 1, maxLength: 5 }), fc.integer({ min: 2, max: 5 }), fc.boolean(), (regions, m, zp) => {
        const c = new PageCensus({ pageSize: PS, maxPageSharing: m, useZeroPages: zp })
        regions.forEach((contents, i) => {
          const r = c.region(i, `r${i}`, 0, 0)
          for (const x of contents) c.addPage(r, page(x), 0)
        })
        const t = c.totals()
        const rs = c.regions()
        const sum = (k: "pages" | "zeroPages" | "duplicatePages" | "pagesShared" | "pagesSharing" | "ksmZeroPages") => rs.reduce((a, r) => a + r[k], 0)
        expect(sum("pages")).toBe(t.pages)
        expect(sum("zeroPages")).toBe(t.zeroPages)
        expect(sum("duplicatePages")).toBe(t.duplicatePages)
        expect(sum("pagesShared")).toBe(t.pagesShared)
        expect(sum("pagesSharing")).toBe(t.pagesSharing)
        expect(sum("ksmZeroPages")).toBe(t.ksmZeroPages)
        expect(t.pagesShared + t.pagesSharing + t.pagesUnshared + t.ksmZeroPages).toBe(t.pages)
      }),
      { numRuns: 200 },
    )
  })

  it("keeps counting correctly past table growth (many distinct contents)", () => {
    const c = new PageCensus({ pageSize: PS, maxPageSharing: 256, useZeroPages: false })
    const r = c.region(0, "r", 0, 0)
    const b = Buffer.alloc(PS)
    for (let round = 0; round < 2; round++)
      for (let i = 1; i <= 10000; i++) {
        b.writeUInt32LE(i, 0)
        c.addPage(r, b, 0)
      }
    const t = c.totals()
    expect(t).toMatchObject({ pages: 20000, distinctContents: 10000, duplicatePages: 20000, pagesShared: 10000, pagesSharing: 10000 })
    const top = c.top(3)
    expect(top.map((x) => x.count)).toEqual([2, 2, 2])
    expect(c.bytesHeld).toBeLessThan(20000 * PS * 0.05)
  })

  it("previews the most duplicated contents, with the uniform byte when there is one", () => {
    const c = new PageCensus({ pageSize: PS, maxPageSharing: 256, useZeroPages: false })
    const r = c.region(0, "r", 0, 0)
    for (let i = 0; i < 5; i++) c.addPage(r, Buffer.alloc(PS, 0x5a), 0)
    const text = Buffer.alloc(PS)
    text.write("hello")
    for (let i = 0; i < 3; i++) c.addPage(r, text, 0)
    c.addPage(r, Buffer.alloc(PS), 0)
    const top = c.top(10)
    expect(top.map((x) => [x.count, x.uniformByte])).toEqual([[5, 0x5a], [3, -1]])
    expect(Buffer.from(top[1]!.preview.subarray(0, 5)).toString()).toBe("hello")
  })
})
