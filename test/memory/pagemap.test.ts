/**
 * PAGEMAP_SCAN: the kernel's tools/testing/selftests/mm/pagemap_ioctl.c ported to
 * space.pagemapScan (the scenarios that apply to anonymous, non-huge memory), plus the
 * category rules sksm chose and a property test against a naive per-page reference that
 * follows the kernel's pagemap_scan_output / pagemap_scan_push_range step by step.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { AddressSpace } from "../helpers/internals.ts"
import { Engine } from "../helpers/internals.ts"
import { PageCategory as IndexPageCategory } from "../../src/index.ts"
import { PAGE_KSM_ZERO, PAGE_SOFT_DIRTY, PAGE_UFFD_REG, PAGE_UFFD_WP } from "../../src/memory/flags.ts"
import { PageCategory, type PagemapScanArgs, type PagemapScanResult, type PageRegion } from "../../src/memory/pagemap.ts"
import { checkCounters } from "../helpers/recount.ts"
import { expectTag } from "../helpers/errors.ts"

const PS = 4096
const { WPALLOWED, WRITTEN, FILE, PRESENT, SWAPPED, PFNZERO, HUGE, SOFT_DIRTY } = PageCategory
/** PAGEMAP_BITS_ALL of the selftest (SOFT_DIRTY is not in it). */
const BITS_ALL = WPALLOWED | WRITTEN | FILE | PRESENT | SWAPPED | PFNZERO | HUGE
/** PAGEMAP_NON_WRITTEN_BITS of the selftest. */
const NON_WRITTEN_BITS = WPALLOWED | FILE | PRESENT | SWAPPED | PFNZERO | HUGE
const WP = 1 // PM_SCAN_WP_MATCHING
const CHECK = 2 // PM_SCAN_CHECK_WPASYNC
/** The kernel's max_pages = -1 (ULONG_MAX). */
const ULONG_MAX = Number.MAX_SAFE_INTEGER

/** The engine each test space came from (spaces do not expose their engine). */
const engineOf = new WeakMap<AddressSpace, Engine>()

function space(pages: number, engine = new Engine()): AddressSpace {
  const s = engine.createSpace({ size: pages * PS })
  engineOf.set(s, engine)
  return s
}

/**
 * pagemap_ioc(start, len, vec, vec_len, flag, max_pages, required, anyof, excluded, return):
 * the selftest's helper, same argument order. vec_len 0 is "no output buffer".
 */
function ioc(
  a: AddressSpace,
  start: number,
  len: number,
  vecLen: number,
  flags: number,
  maxPages: number,
  required: number,
  anyof: number,
  excluded: number,
  ret: number,
): PagemapScanResult {
  return a.pagemapScan({
    start,
    end: start + len,
    maxRegions: vecLen,
    wpMatching: (flags & WP) !== 0,
    checkWpAsync: (flags & CHECK) !== 0,
    maxPages,
    categoryMask: required,
    categoryAnyofMask: anyof,
    categoryInverted: excluded,
    returnMask: ret,
  })
}

/** ...the same returning the region count (the ioctl's return value). */
function ioctl(a: AddressSpace, start: number, len: number, vecLen: number, flags: number, maxPages: number, required: number, anyof: number, excluded: number, ret: number): number {
  return ioc(a, start, len, vecLen, flags, maxPages, required, anyof, excluded, ret).regions.length
}

/** wp_init: UFFDIO_REGISTER (WP) + UFFDIO_WRITEPROTECT over the range. */
function wpInit(a: AddressSpace, start = 0, len = a.size): void {
  a.writeProtect(start, len, true)
}

/** wp_addr_range: PAGEMAP_SCAN with no output buffer, WP_MATCHING | CHECK_WPASYNC, WRITTEN. */
function wpAddrRange(a: AddressSpace, start = 0, len = a.size): void {
  expect(ioctl(a, start, len, 0, WP | CHECK, 0, WRITTEN, 0, 0, WRITTEN)).toBe(0)
}

/** `mem[addr]++` */
function inc(a: AddressSpace, addr: number): void {
  a.writeU8(addr, a.readU8(addr) + 1)
}

const LEN = (r: PageRegion | undefined): number => (r === undefined ? -1 : (r.end - r.start) / PS)

/** Everything a scan may change or that must not change: flags, page table, counters. */
function snapshot(a: AddressSpace): unknown {
  return { pflags: Array.from(a.pflags), pte: Array.from(a.frameTable()), writable: writableOf(a), cow: a.cowFaults, stats: engineOf.get(a)!.stats() }
}

/** Each page's PTE_WRITABLE. */
function writableOf(a: AddressSpace): boolean[] {
  return Array.from({ length: a.pages }, (_, pi) => a.isWritable(pi))
}

describe("PageCategory", () => {
  it("has the kernel's bit values and is exported from the package root", () => {
    expect(PageCategory).toEqual({ WPALLOWED: 1, WRITTEN: 2, FILE: 4, PRESENT: 8, SWAPPED: 16, PFNZERO: 32, HUGE: 64, SOFT_DIRTY: 128 })
    expect(IndexPageCategory).toBe(PageCategory)
  })
})

describe("pagemap_ioctl.c sanity_tests_sd: argument errors", () => {
  const a = space(1000)
  wpInit(a)
  wpAddrRange(a)

  it("zero range size is valid; the output buffer can be 0", () => {
    expect(ioc(a, 0, 0, 500, 0, 0, BITS_ALL, 0, 0, BITS_ALL)).toEqual({ regions: [], walkEnd: 0 })
    expect(ioctl(a, 0, a.size, 0, 0, 0, BITS_ALL, 0, 0, BITS_ALL)).toBe(0)
  })

  it("wrong flags: non-boolean flag values and unknown keys are InvalidArgument", () => {
    const base = { start: 0, end: a.size, categoryMask: WRITTEN, returnMask: WRITTEN }
    expectTag(() => a.pagemapScan({ ...base, wpMatching: 1 as unknown as boolean }), "InvalidArgument")
    expectTag(() => a.pagemapScan({ ...base, checkWpAsync: "yes" as unknown as boolean }), "InvalidArgument")
    // "flag has extra bits specified": an unknown option is rejected, not ignored.
    expectTag(() => a.pagemapScan({ ...base, wpMatching: true, flags: 0xff } as unknown as PagemapScanArgs), "InvalidArgument")
    expectTag(() => a.pagemapScan({ ...base, maxpages: 1 } as unknown as PagemapScanArgs), "InvalidArgument")
  })

  it("no selection mask is valid; no return mask coalesces", () => {
    expect(ioctl(a, 0, a.size, 500, 0, 0, 0, 0, 0, WRITTEN)).toBeGreaterThanOrEqual(0)
    expect(ioctl(a, 0, a.size, 500, 0, 0, WRITTEN, WRITTEN, 0, 0)).toBe(0)
  })

  it("wrong return mask, mixture of correct and wrong category bits: InvalidArgument", () => {
    expectTag(() => ioctl(a, 0, a.size, 500, 0, 0, WRITTEN, 0, 0, 0x1000), "InvalidArgument")
    expectTag(() => ioctl(a, 0, a.size, 500, WP | CHECK, 0, 0xfff, WRITTEN, 0, WRITTEN), "InvalidArgument")
    expectTag(() => ioctl(a, 0, a.size, 500, 0, 0, 0, 0x100, 0, WRITTEN), "InvalidArgument")
    expectTag(() => ioctl(a, 0, a.size, 500, 0, 0, 0, 0, -1, WRITTEN), "InvalidArgument")
    expectTag(() => ioctl(a, 0, a.size, 500, 0, 0, 1.5, 0, 0, WRITTEN), "InvalidArgument")
  })

  it("PAGEMAP_BITS_ALL can be specified with WP_MATCHING | CHECK_WPASYNC", () => {
    expect(ioctl(a, 0, a.size, 500, WP | CHECK, 0, 0, 0, BITS_ALL, WRITTEN)).toBeGreaterThanOrEqual(0)
  })

  it("range errors: unaligned start, start > end, end past the space; bad counts; bad args object", () => {
    const args = (o: Partial<PagemapScanArgs>): PagemapScanArgs => ({ start: 0, end: a.size, returnMask: WRITTEN, ...o })
    expectTag(() => a.pagemapScan(args({ start: 1 })), "InvalidArgument")
    expectTag(() => a.pagemapScan(args({ start: 2 * PS, end: PS })), "OutOfBounds")
    expectTag(() => a.pagemapScan(args({ end: a.size + 1 })), "OutOfBounds")
    expectTag(() => a.pagemapScan(args({ start: -PS })), "OutOfBounds")
    expectTag(() => a.pagemapScan(args({ end: Number.NaN })), "InvalidArgument")
    expectTag(() => a.pagemapScan(args({ maxPages: -1 })), "InvalidArgument")
    expectTag(() => a.pagemapScan(args({ maxRegions: 0.5 })), "InvalidArgument")
    expectTag(() => a.pagemapScan({ start: 0, end: a.size } as PagemapScanArgs), "InvalidArgument")
    expectTag(() => a.pagemapScan(null as unknown as PagemapScanArgs), "InvalidArgument")
  })

  it("end is rounded up to a page boundary", () => {
    const b = space(4)
    b.fill(0, 2 * PS, 1)
    expect(b.pagemapScan({ start: 0, end: 1, categoryMask: WRITTEN, returnMask: WRITTEN })).toEqual({
      regions: [{ start: 0, end: PS, categories: WRITTEN }],
      walkEnd: PS,
    })
    expect(b.pagemapScan({ start: PS, end: PS + 1, categoryMask: WRITTEN, returnMask: WRITTEN }).walkEnd).toBe(2 * PS)
  })

  it("a rejected call with wpMatching protects nothing", () => {
    const b = space(8)
    wpInit(b)
    b.fill(0, b.size, 7)
    const before = snapshot(b)
    const bad: Partial<PagemapScanArgs>[] = [
      { start: 1 },
      { end: b.size + PS },
      { returnMask: 0x100 },
      { categoryMask: -2 },
      { maxPages: -1 },
      { maxRegions: Number.POSITIVE_INFINITY },
      { checkWpAsync: 1 as unknown as boolean },
    ]
    for (const o of bad) {
      expect(() => b.pagemapScan({ start: 0, end: b.size, categoryMask: WRITTEN, returnMask: WRITTEN, wpMatching: true, ...o })).toThrow()
      expect(snapshot(b)).toEqual(before)
    }
    expect(ioctl(b, 0, b.size, 8, 0, 0, WRITTEN, 0, 0, WRITTEN)).toBe(1)
  })

  it("checkWpAsync on a range with an unregistered page fails before protecting anything (EPERM)", () => {
    const b = space(8)
    wpInit(b, 0, 4 * PS)
    b.fill(0, b.size, 7)
    const before = snapshot(b)
    expectTag(() => ioctl(b, 0, b.size, 8, WP | CHECK, 0, WRITTEN, 0, 0, WRITTEN), "InvalidArgument")
    expectTag(() => ioctl(b, 0, b.size, 8, CHECK, 0, WRITTEN, 0, 0, WRITTEN), "InvalidArgument")
    expect(snapshot(b)).toEqual(before)
    // Inside the registered part it works; WP_MATCHING alone skips the unregistered part silently.
    expect(ioctl(b, 0, 4 * PS, 8, WP | CHECK, 0, WRITTEN, 0, 0, WRITTEN)).toBe(1)
    b.fill(0, b.size, 8)
    expect(ioc(b, 0, b.size, 8, WP, 0, WRITTEN, 0, 0, WRITTEN).regions).toEqual([{ start: 0, end: 4 * PS, categories: WRITTEN }])
    // A plain scan still reports the unregistered pages (present = written outside uffd).
    expect(ioc(b, 0, b.size, 8, 0, 0, WRITTEN, 0, 0, WRITTEN).regions).toEqual([{ start: 4 * PS, end: 8 * PS, categories: WRITTEN }])
  })

  it("a disposed space throws SpaceDisposed", () => {
    const b = space(2)
    b.dispose()
    expectTag(() => b.pagemapScan({ start: 0, end: 0, returnMask: 0 }), "SpaceDisposed")
  })
})

describe("pagemap_ioctl.c sanity_tests_sd: written/non-written patterns", () => {
  const numPages = 1000
  const vecSize = numPages / 2

  it("clear; repeated pattern; in parts; max_pages; only 2 dirty pages", () => {
    const a = space(numPages)
    const memSize = a.size
    wpInit(a)
    wpAddrRange(a)
    // 2. Clear area with larger vec size
    expect(ioctl(a, 0, memSize, vecSize, WP | CHECK, 0, WRITTEN, 0, 0, WRITTEN)).toBeGreaterThanOrEqual(0)
    // 3. Repeated pattern of written and non-written pages
    for (let i = 0; i < memSize; i += 2 * PS) inc(a, i)
    expect(ioctl(a, 0, memSize, vecSize, 0, 0, WRITTEN, 0, 0, WRITTEN)).toBe(memSize / (PS * 2))
    // 4. ... in parts
    const r1 = ioctl(a, 0, memSize, vecSize, WP | CHECK, numPages / 2 - 2, WRITTEN, 0, 0, WRITTEN)
    const r2 = ioctl(a, 0, memSize, 2, 0, 0, WRITTEN, 0, 0, WRITTEN)
    const r3 = ioctl(a, 0, memSize, vecSize, WP | CHECK, 0, WRITTEN, 0, 0, WRITTEN)
    expect([r1 + r3, r2]).toEqual([numPages / 2, 2])
    expect(r1).toBe(numPages / 2 - 2)
    // 5. ... max_pages
    for (let i = 0; i < memSize; i += 2 * PS) inc(a, i)
    inc(a, (memSize / PS - 1) * PS)
    const m1 = ioctl(a, 0, memSize, vecSize, WP | CHECK, numPages / 2, WRITTEN, 0, 0, WRITTEN)
    const m2 = ioctl(a, 0, memSize, vecSize, WP | CHECK, 0, WRITTEN, 0, 0, WRITTEN)
    expect([m1, m2]).toEqual([numPages / 2, 1])
    // 6. only get 2 dirty pages and clear them as well
    a.fill(0, memSize, 0xff)
    const got = ioc(a, PS, 2 * PS, 1, WP | CHECK, 2, WRITTEN, 0, 0, WRITTEN)
    const all = ioc(a, 0, memSize, memSize / PS, 0, 0, WRITTEN, 0, 0, WRITTEN)
    expect(got.regions.length).toBe(1)
    expect([got.regions[0]!.start, LEN(got.regions[0])]).toEqual([PS, 2])
    expect(all.regions.length).toBe(2)
    expect([all.regions[0]!.start, LEN(all.regions[0])]).toEqual([0, 1])
    expect([all.regions[1]!.start, LEN(all.regions[1])]).toEqual([3 * PS, memSize / PS - 3])
  })

  it("7. two regions: protecting one space leaves the other's written state alone", () => {
    const engine = new Engine()
    const m0 = space(numPages, engine)
    const m1 = space(numPages, engine)
    wpInit(m0)
    wpInit(m1)
    wpAddrRange(m0)
    wpAddrRange(m1)
    m0.fill(0, m0.size, 0x61)
    m1.fill(0, m1.size, 0x62)
    wpAddrRange(m0)
    const r = ioc(m1, 0, m1.size, 1, 0, 0, WRITTEN, 0, 0, WRITTEN)
    expect(r.regions.length).toBe(1)
    expect(LEN(r.regions[0])).toBe(numPages)
    expect(ioctl(m0, 0, m0.size, 1, 0, 0, WRITTEN, 0, 0, WRITTEN)).toBe(0)
  })

  it("8. smaller max_pages: three WP scans of max_pages/5 collect every written page once", () => {
    const a = space(1050)
    const memSize = a.size
    const vec = memSize / (PS * 2)
    wpInit(a)
    wpAddrRange(a)
    expect(ioctl(a, 0, memSize, vec, WP | CHECK, 0, WRITTEN, 0, 0, WRITTEN)).toBe(0)
    for (let i = 0; i < memSize / PS; i += 2) inc(a, i * PS)
    let total = 0
    for (let k = 0; k < 3; k++) total += ioctl(a, 0, memSize, vec, WP | CHECK, memSize / (PS * 5), WRITTEN, 0, 0, WRITTEN)
    expect(total).toBe(memSize / (PS * 2))
  })

  it("9. smaller vec: resuming from walkEnd with 50 regions reads back every random write exactly once", () => {
    const a = space(10000)
    const memSize = a.size
    const vec = 50
    wpInit(a)
    wpAddrRange(a)
    let seed = 12345
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) >>> 0
      return seed >>> 16
    }
    for (let count = 0; count < 20; count++) {
      let writes = 0
      let reads = 0
      let walkEnd = 0
      for (let i = 0; i < memSize; i += PS) {
        if (rand() % 2) {
          inc(a, i)
          writes++
        }
      }
      while (reads < writes) {
        const r = ioc(a, walkEnd, memSize - walkEnd, vec, WP | CHECK, 0, WRITTEN, 0, 0, WRITTEN)
        expect(r.regions.length).toBeLessThanOrEqual(vec)
        for (const g of r.regions) reads += LEN(g)
        expect(r.walkEnd).toBeGreaterThan(walkEnd)
        walkEnd = r.walkEnd
      }
      expect(reads).toBe(writes)
      expect(ioctl(a, 0, memSize, vec, 0, 0, WRITTEN, 0, 0, WRITTEN)).toBe(0)
    }
  })

  it("10. walk_end tester", () => {
    const vs = 1000
    const a = space(vs)
    const memSize = a.size
    wpInit(a)
    wpAddrRange(a)
    a.fill(0, memSize, 0)
    const t = (len: number, vec: number, flags: number, maxPages: number): [number, number] => {
      const r = ioc(a, 0, len, vec, flags, maxPages, WRITTEN, 0, 0, WRITTEN)
      return [r.regions.length, r.walkEnd]
    }
    expect(t(0, vs, 0, 0)).toEqual([0, 0]) // Same start and end address
    expect(t(0, vs, WP | CHECK, 0)).toEqual([0, 0]) // Same start and end with WP
    expect(t(0, 0, WP | CHECK, 0)).toEqual([0, 0]) // Same start and end with 0 output buffer
    expect(t(memSize, vs, 0, 0)).toEqual([1, memSize]) // Big vec
    expect(t(memSize, 1, 0, 0)).toEqual([1, memSize]) // vec of minimum length
    expect(t(memSize, 1, 0, vs)).toEqual([1, memSize]) // Max pages specified
    expect(t(memSize, vs, 0, vs / 2)).toEqual([1, memSize / 2]) // Half max pages
    expect(t(memSize, vs, 0, 1)).toEqual([1, PS]) // 1 max page
    expect(t(memSize, vs, 0, ULONG_MAX)).toEqual([1, memSize]) // max pages
    wpAddrRange(a)
    for (let i = 0; i < memSize; i += 2 * PS) inc(a, i)
    expect(t(memSize, vs, 0, 0)).toEqual([vs / 2, memSize]) // sparse: Big vec
    expect(t(memSize, 1, 0, 0)).toEqual([1, 2 * PS]) // sparse: vec of minimum length
    expect(t(memSize, 1, 0, vs)).toEqual([1, 2 * PS]) // sparse: Max pages specified
    expect(t(memSize, vs / 2, 0, vs)).toEqual([vs / 2, memSize]) // sparse: Max pages specified
    expect(t(memSize, vs, 0, vs)).toEqual([vs / 2, memSize]) // sparse: Max pages specified
    expect(t(memSize, vs, 0, vs / 2)).toEqual([vs / 2, memSize]) // sparse: Half max pages
    expect(t(memSize, vs, 0, 1)).toEqual([1, 2 * PS]) // sparse: 1 max page
  })
})

/** base_tests(prefix, mem, mem_size): the "Page testing" and "Large Page testing" runs. */
function baseTests(pages: number): void {
  const a = space(pages)
  const memSize = a.size
  const vecSize = memSize / PS
  wpInit(a)
  wpAddrRange(a)
  // 1. all new pages must not be written (dirty)
  expect(ioctl(a, 0, memSize, 1, WP | CHECK, vecSize - 2, WRITTEN, 0, 0, WRITTEN)).toBe(0)
  // 2. all pages must be written
  a.fill(0, memSize, 0xff)
  const r2 = ioc(a, 0, memSize, 1, 0, 0, WRITTEN, 0, 0, WRITTEN)
  expect([r2.regions.length, LEN(r2.regions[0])]).toEqual([1, vecSize])
  // 3. all pages dirty other than first and the last one
  ioctl(a, 0, memSize, 1, WP | CHECK, 0, WRITTEN, 0, 0, WRITTEN)
  a.fill(PS, memSize - 2 * PS, 0)
  const r3 = ioc(a, 0, memSize, 1, WP | CHECK, 0, WRITTEN, 0, 0, WRITTEN)
  expect(r3.regions.length).toBe(1)
  expect(r3.regions[0]).toEqual({ start: PS, end: memSize - PS, categories: WRITTEN })
  expect(ioctl(a, 0, memSize, 1, 0, 0, WRITTEN, 0, 0, WRITTEN)).toBe(0)
  // 4. only middle page dirty
  ioctl(a, 0, memSize, 1, WP | CHECK, 0, WRITTEN, 0, 0, WRITTEN)
  inc(a, Math.floor(vecSize / 2) * PS)
  const r4 = ioc(a, 0, memSize, vecSize, 0, 0, WRITTEN, 0, 0, WRITTEN)
  expect(r4.regions).toEqual([{ start: Math.floor(vecSize / 2) * PS, end: (Math.floor(vecSize / 2) + 1) * PS, categories: WRITTEN }])
  // 5. only two middle pages dirty and walk over only middle pages
  ioctl(a, 0, memSize, 1, WP | CHECK, 0, WRITTEN, 0, 0, WRITTEN | HUGE)
  const mid = Math.floor(vecSize / 2) * PS
  inc(a, mid)
  inc(a, mid + PS)
  const r5 = ioc(a, mid, 2 * PS, 1, 0, 0, WRITTEN, 0, 0, WRITTEN | HUGE)
  expect(r5.regions).toEqual([{ start: mid, end: mid + 2 * PS, categories: WRITTEN }])
  checkCounters(engineOf.get(a)!)
}

describe("pagemap_ioctl.c base_tests", () => {
  it("Page testing: 10 pages", () => baseTests(10))
  it("Large Page testing: 5120 pages (no THP in sksm: HUGE is never set)", () => baseTests(512 * 10))
})

describe("pagemap_ioctl.c test_simple, sanity_tests, mprotect_tests, transact_test, userfaultfd_tests", () => {
  it("test_simple: 100 rounds of protect / write / scan on one page", () => {
    const a = space(1)
    wpInit(a)
    wpAddrRange(a)
    for (let i = 0; i < 100; i++) {
      expect(ioctl(a, 0, PS, 1, 0, 0, WRITTEN, 0, 0, WRITTEN)).toBe(0)
      wpAddrRange(a)
      inc(a, 0)
      expect(ioctl(a, 0, PS, 1, 0, 0, WRITTEN, 0, 0, WRITTEN)).toBe(1)
      wpAddrRange(a)
    }
  })

  it("sanity_tests 1: every mask may take PAGEMAP_BITS_ALL", () => {
    const a = space(10)
    wpInit(a)
    wpAddrRange(a)
    const n = 10
    expect(ioctl(a, 0, a.size, n, WP | CHECK, 0, BITS_ALL, 0, 0, BITS_ALL)).toBeGreaterThanOrEqual(0)
    expect(ioctl(a, 0, a.size, n, 0, 0, BITS_ALL, 0, 0, BITS_ALL)).toBeGreaterThanOrEqual(0)
    expect(ioctl(a, 0, a.size, n, 0, 0, 0, BITS_ALL, 0, BITS_ALL)).toBeGreaterThanOrEqual(0)
    expect(ioctl(a, 0, a.size, n, 0, 0, 0, 0, BITS_ALL, BITS_ALL)).toBeGreaterThanOrEqual(0)
    expect(ioctl(a, 0, a.size, n, 0, 0, BITS_ALL, BITS_ALL, 0, BITS_ALL)).toBeGreaterThanOrEqual(0)
  })

  it("sanity_tests 2-8: anyof, required, excluded, and written present pages with a return mask", () => {
    const a = space(10)
    const vs = 10
    wpInit(a)
    wpAddrRange(a)
    a.fill(0, a.size, 0)
    // 2. anyof
    const r2 = ioc(a, 0, a.size, vs, 0, 0, 0, BITS_ALL, 0, BITS_ALL)
    expect(r2.regions).toEqual([{ start: 0, end: a.size, categories: WPALLOWED | WRITTEN | PRESENT }])
    // 3. required = BITS_ALL needs FILE|SWAPPED|PFNZERO|HUGE too: nothing matches. (The C test
    //    passes on its stale buffer from step 2.)
    expect(ioctl(a, 0, a.size, vs, 0, 0, BITS_ALL, 0, 0, BITS_ALL)).toBe(0)
    // 4. required and anyof
    expect(ioc(a, 0, a.size, vs, 0, 0, WRITTEN, PRESENT, 0, BITS_ALL).regions).toEqual(r2.regions)
    // 5. Don't get sd pages; 6. Don't get present pages
    expect(ioctl(a, 0, a.size, vs, 0, 0, WRITTEN, 0, WRITTEN, BITS_ALL)).toBe(0)
    expect(ioctl(a, 0, a.size, vs, 0, 0, PRESENT, 0, PRESENT, BITS_ALL)).toBe(0)
    // 8. Find written present pages with return mask (and re-protect them)
    const b = space(10)
    wpInit(b)
    wpAddrRange(b)
    b.fill(0, b.size, 0)
    expect(ioc(b, 0, b.size, vs, WP | CHECK, 0, 0, BITS_ALL, 0, WRITTEN).regions).toEqual([{ start: 0, end: b.size, categories: WRITTEN }])
    expect(ioctl(b, 0, b.size, vs, 0, 0, WRITTEN, 0, 0, WRITTEN)).toBe(0)
  })

  it("mprotect_tests (mprotect has no model; the remap is a discard + re-register)", () => {
    const a = space(2)
    wpInit(a)
    wpAddrRange(a)
    a.fill(0, 2 * PS, 1)
    const r1 = ioc(a, 0, 2 * PS, 1, 0, 0, WRITTEN, 0, 0, WRITTEN)
    expect([r1.regions.length, LEN(r1.regions[0])]).toEqual([1, 2]) // Both pages written
    wpAddrRange(a, 0, 2 * PS)
    expect(ioctl(a, 0, 2 * PS, 1, 0, 0, WRITTEN, 0, 0, WRITTEN)).toBe(0) // Both pages are not written
    a.discard(PS, PS) // mmap(MAP_FIXED) over the second page
    wpInit(a, PS, PS)
    wpAddrRange(a, PS, PS)
    a.fill(0, 2 * PS, 2)
    const r3 = ioc(a, 0, 2 * PS, 1, 0, 0, WRITTEN, 0, 0, WRITTEN)
    expect([r3.regions.length, LEN(r3.regions[0])]).toEqual([1, 2]) // Both pages written after remap
    wpAddrRange(a, 0, 2 * PS)
    a.fill(0, 2 * PS, 0x41)
    const r4 = ioc(a, 0, 2 * PS, 1, 0, 0, WRITTEN, 0, 0, WRITTEN)
    expect([r4.regions.length, LEN(r4.regions[0])]).toEqual([1, 2]) // Clear and make the pages written
  })

  it("transact_test, single-threaded: get-and-reset never loses or repeats a write", () => {
    const threads = 6
    const perThread = 32
    const access = 8
    const a = space(threads * perThread)
    wpInit(a)
    wpAddrRange(a)
    a.fill(0, a.size, 0)
    const getDirtyReset = (): number => {
      const r = a.pagemapScan({ start: 0, end: a.size, maxPages: threads * perThread, maxRegions: 256, wpMatching: true, checkWpAsync: true, categoryMask: WRITTEN, returnMask: WRITTEN })
      let n = 0
      for (const g of r.regions) {
        expect(g.categories).toBe(WRITTEN)
        n += LEN(g)
      }
      return n
    }
    expect(getDirtyReset()).toBe(threads * perThread)
    expect(getDirtyReset()).toBe(0)
    for (let iter = 0; iter < 200; iter++) {
      for (let t = 0; t < threads; t++) {
        for (let i = 0; i < access; i++) {
          const addr = (t * perThread + i) * PS
          a.writeU32(addr, a.readU32(addr) + 1)
        }
      }
      expect(getDirtyReset()).toBe(threads * access)
      expect(getDirtyReset()).toBe(0)
    }
    expect(a.readU32(0)).toBe(200)
  })

  it("userfaultfd_tests: all new pages must not be written", () => {
    const a = space(16)
    const memSize = a.size
    wpInit(a)
    wpAddrRange(a, memSize / 16, memSize - 2 * (memSize / 8))
    wpAddrRange(a)
    expect(ioctl(a, 0, memSize, 1, WP | CHECK, memSize / PS - 2, WRITTEN, 0, 0, WRITTEN)).toBe(0)
  })

  it("unmapped_region_tests analogue: unregistered never-touched pages report no category", () => {
    const a = space(64)
    expect(ioctl(a, 0, a.size, 64, 0, 0, NON_WRITTEN_BITS, 0, 0, NON_WRITTEN_BITS)).toBe(0)
    expect(ioc(a, 0, a.size, 64, 0, 0, 0, 0, 0, BITS_ALL | SOFT_DIRTY).regions).toEqual([{ start: 0, end: a.size, categories: 0 }])
  })
})

describe("coalescing and matching expressions", () => {
  it("returnMask 0 coalesces every contiguous matching run; a full mask splits on category changes", () => {
    const a = space(12)
    wpInit(a, 0, 8 * PS)
    a.fill(0, 2 * PS, 1) // 0-1: registered, written, present
    // 2-3: registered, protected, unpopulated
    a.fill(4 * PS, PS, 1)
    a.writeProtect(4 * PS, PS) // 4: registered, protected, present
    a.discard(5 * PS, PS) // 5: registered, unpopulated, discarded = written
    a.writeProtect(6 * PS, 2 * PS, false) // 6-7: registered, unprotected, unpopulated = written
    a.fill(9 * PS, 2 * PS, 3) // 9-10: unregistered, present
    // 8, 11: unregistered, unpopulated: category 0, never match a non-empty anyof.
    const anyof = WRITTEN | WPALLOWED | PRESENT
    const coalesced = a.pagemapScan({ start: 0, end: a.size, categoryAnyofMask: anyof, returnMask: 0 })
    expect(coalesced.regions).toEqual([
      { start: 0, end: 8 * PS, categories: 0 },
      { start: 9 * PS, end: 11 * PS, categories: 0 },
    ])
    const full = a.pagemapScan({ start: 0, end: a.size, categoryAnyofMask: anyof, returnMask: 0xff })
    expect(full.regions).toEqual([
      { start: 0, end: 2 * PS, categories: WPALLOWED | WRITTEN | PRESENT | SOFT_DIRTY },
      { start: 2 * PS, end: 4 * PS, categories: WPALLOWED },
      { start: 4 * PS, end: 5 * PS, categories: WPALLOWED | PRESENT | SOFT_DIRTY },
      { start: 5 * PS, end: 8 * PS, categories: WPALLOWED | WRITTEN },
      { start: 9 * PS, end: 11 * PS, categories: WRITTEN | PRESENT | SOFT_DIRTY },
    ])
    // maxRegions counts coalesced regions; the walk stops at the first page that needs one more.
    expect(a.pagemapScan({ start: 0, end: a.size, categoryAnyofMask: anyof, returnMask: 0xff, maxRegions: 2 })).toEqual({
      regions: full.regions.slice(0, 2),
      walkEnd: 4 * PS,
    })
    // maxPages cuts the last region.
    expect(a.pagemapScan({ start: 0, end: a.size, categoryAnyofMask: anyof, returnMask: 0, maxPages: 5 })).toEqual({
      regions: [{ start: 0, end: 5 * PS, categories: 0 }],
      walkEnd: 5 * PS,
    })
  })

  it("inverted + mask + anyof expresses A & (B | !C): registered & (written | !present)", () => {
    const a = space(6)
    wpInit(a, 0, 5 * PS)
    a.fill(0, PS, 1) // 0: written present -> yes
    a.fill(PS, PS, 1)
    a.writeProtect(PS, PS) // 1: protected present -> no
    // 2: protected unpopulated -> yes (not present)
    a.discard(3 * PS, PS) // 3: discarded -> yes (written)
    a.fill(4 * PS, PS, 2)
    a.writeProtect(4 * PS, PS) // 4: protected present -> no
    a.fill(5 * PS, PS, 2) // 5: unregistered -> no
    const r = a.pagemapScan({ start: 0, end: a.size, categoryInverted: PRESENT, categoryMask: WPALLOWED, categoryAnyofMask: WRITTEN | PRESENT, returnMask: 0 })
    expect(r.regions).toEqual([
      { start: 0, end: PS, categories: 0 },
      { start: 2 * PS, end: 4 * PS, categories: 0 },
    ])
    // The old API's "excluded" maps to inverted with mask = required | excluded.
    const excludedPresent = a.pagemapScan({ start: 0, end: a.size, categoryInverted: PRESENT, categoryMask: WPALLOWED | PRESENT, returnMask: 0 })
    expect(excludedPresent.regions).toEqual([{ start: 2 * PS, end: 4 * PS, categories: 0 }])
  })
})

describe("category rules sksm chose", () => {
  it("unpopulated pages: protected -> WPALLOWED; unprotected or discarded -> WPALLOWED|WRITTEN; unregistered -> 0", () => {
    const a = space(4)
    a.writeProtect(0, PS, true)
    a.writeProtect(PS, PS, false)
    a.writeProtect(2 * PS, PS, true)
    a.discard(2 * PS, PS)
    const r = a.pagemapScan({ start: 0, end: a.size, returnMask: 0xff })
    expect(r.regions).toEqual([
      { start: 0, end: PS, categories: WPALLOWED },
      { start: PS, end: 3 * PS, categories: WPALLOWED | WRITTEN },
      { start: 3 * PS, end: 4 * PS, categories: 0 },
    ])
  })

  it("reads never populate and never count as writes", () => {
    const a = space(2)
    wpInit(a)
    expect(a.read(0, a.size).every((b) => b === 0)).toBe(true)
    a.fill(PS, PS, 5)
    a.writeProtect(PS, PS)
    expect(a.readU32(PS)).toBe(0x05050505)
    expect(a.pagemapScan({ start: 0, end: a.size, returnMask: 0xff }).regions).toEqual([
      { start: 0, end: PS, categories: WPALLOWED },
      { start: PS, end: 2 * PS, categories: WPALLOWED | PRESENT | SOFT_DIRTY },
    ])
  })

  it("discard counts as written, for populated and for protected-unpopulated pages", () => {
    const a = space(4)
    wpInit(a)
    a.fill(0, 2 * PS, 9)
    wpAddrRange(a)
    a.discard(0, PS) // populated, protected
    a.discard(2 * PS, PS) // unpopulated, protected (a marker)
    expect(ioc(a, 0, a.size, 4, WP | CHECK, 0, WRITTEN, 0, 0, WRITTEN).regions).toEqual([
      { start: 0, end: PS, categories: WRITTEN },
      { start: 2 * PS, end: 3 * PS, categories: WRITTEN },
    ])
    // wpMatching re-armed them (the kernel installs a marker on pte_none).
    expect(ioctl(a, 0, a.size, 4, 0, 0, WRITTEN, 0, 0, WRITTEN)).toBe(0)
    expect(a.pagemapScan({ start: 0, end: PS, returnMask: 0xff }).regions[0]!.categories).toBe(WPALLOWED)
  })

  it("merge is not a write; a copy-on-write fault on a merged page is", () => {
    const engine = new Engine()
    const a = space(8, engine)
    a.fill(0, 6 * PS, 0x5a) // 0-5 identical
    a.fill(6 * PS, 2 * PS, 0) // 6-7 zero: merge maps the zero frame
    wpInit(a)
    const m = a.merge()
    expect(m.merged + m.inserted).toBe(6)
    expect(m.zeroMapped).toBe(2)
    expect(ioctl(a, 0, a.size, 8, 0, 0, WRITTEN, 0, 0, WRITTEN)).toBe(0)
    expect(a.pagemapScan({ start: 0, end: a.size, categoryMask: PRESENT, returnMask: PRESENT | PFNZERO | WRITTEN }).regions).toEqual([
      { start: 0, end: 6 * PS, categories: PRESENT },
      { start: 6 * PS, end: 8 * PS, categories: PRESENT | PFNZERO },
    ])
    const cow = a.cowFaults
    a.writeU8(3 * PS + 17, 1)
    a.writeU8(7 * PS, 1)
    expect(a.cowFaults).toBe(cow + 1) // the merged page copied; the zero page got a fresh frame
    expect(ioc(a, 0, a.size, 8, WP | CHECK, 0, WRITTEN, 0, 0, WRITTEN | PFNZERO | PRESENT).regions).toEqual([
      { start: 3 * PS, end: 4 * PS, categories: WRITTEN | PRESENT },
      { start: 7 * PS, end: 8 * PS, categories: WRITTEN | PRESENT },
    ])
    expect(ioctl(a, 0, a.size, 8, 0, 0, WRITTEN, 0, 0, WRITTEN)).toBe(0)
    checkCounters(engine)
  })

  it("a fork child is not registered: its present pages read WRITTEN, wpMatching skips it, checkWpAsync fails", () => {
    const engine = new Engine()
    const a = space(4, engine)
    a.fill(0, 2 * PS, 1)
    wpInit(a)
    const child = a.fork()
    expect(child.pagemapScan({ start: 0, end: child.size, returnMask: 0xff }).regions).toEqual([
      { start: 0, end: 2 * PS, categories: WRITTEN | PRESENT | SOFT_DIRTY },
      { start: 2 * PS, end: 4 * PS, categories: 0 },
    ])
    expect(ioctl(child, 0, child.size, 4, WP, 0, WRITTEN, 0, 0, WRITTEN)).toBe(0)
    expect(child.pflags.every((f) => (f & (PAGE_UFFD_WP | PAGE_UFFD_REG)) === 0)).toBe(true)
    expectTag(() => ioctl(child, 0, child.size, 4, WP | CHECK, 0, WRITTEN, 0, 0, WRITTEN), "InvalidArgument")
    // The parent keeps tracking: a child write is not the parent's; a parent write is (after a COW copy).
    child.writeU8(0, 2)
    expect(ioctl(a, 0, a.size, 4, 0, 0, WRITTEN, 0, 0, WRITTEN)).toBe(0)
    a.writeU8(PS, 3)
    expect(ioc(a, 0, a.size, 4, 0, 0, WRITTEN, 0, 0, WRITTEN).regions).toEqual([{ start: PS, end: 2 * PS, categories: WRITTEN }])
    checkCounters(engine)
  })

  it("maxRegions 0: no output, whole range walked, wpMatching re-arms every matched written page", () => {
    const a = space(8)
    wpInit(a)
    a.fill(0, a.size, 1)
    expect(a.pagemapScan({ start: 0, end: a.size, categoryMask: WRITTEN, returnMask: WRITTEN, maxRegions: 0, maxPages: 1, wpMatching: true })).toEqual({
      regions: [],
      walkEnd: a.size,
    })
    expect(ioctl(a, 0, a.size, 8, 0, 0, WRITTEN, 0, 0, WRITTEN)).toBe(0)
  })

  it("soft-dirty: set by a write fault, kept across fork, cleared by discard", () => {
    const a = space(3)
    a.fill(0, 2 * PS, 1)
    const sd = (s: AddressSpace): PageRegion[] => s.pagemapScan({ start: 0, end: s.size, categoryMask: SOFT_DIRTY, returnMask: SOFT_DIRTY }).regions
    expect(sd(a)).toEqual([{ start: 0, end: 2 * PS, categories: SOFT_DIRTY }])
    const child = a.fork()
    expect(sd(child)).toEqual([{ start: 0, end: 2 * PS, categories: SOFT_DIRTY }])
    a.discard(0, PS)
    expect(sd(a)).toEqual([{ start: PS, end: 2 * PS, categories: SOFT_DIRTY }])
  })
})

// ------------------------------------------------------------------ property: vs a naive reference

/** The categories of one page, read straight from the rules (independent of pagemap.ts's table). */
function naiveCategories(fl: number, frame: number): number {
  const registered = (fl & PAGE_UFFD_REG) !== 0
  const present = frame !== 0 || (fl & PAGE_KSM_ZERO) !== 0
  let c = 0
  if (registered) c |= WPALLOWED
  if (registered ? (fl & PAGE_UFFD_WP) === 0 : present) c |= WRITTEN
  if (present) c |= PRESENT
  if (present && frame === 0) c |= PFNZERO
  if ((fl & PAGE_SOFT_DIRTY) !== 0) c |= SOFT_DIRTY
  return c
}

interface Expected {
  error: boolean
  regions: PageRegion[]
  walkEnd: number
  pflags: number[]
  writable: boolean[]
}

/** do_pagemap_scan, one page per step, written after the kernel's functions. */
function reference(pflags: Uint8Array, pte: Int32Array, writable: boolean[], a: Required<PagemapScanArgs>): Expected {
  const fl = Array.from(pflags)
  const w = writable.slice()
  const end = Math.ceil(a.end / PS) * PS
  if (a.checkWpAsync) {
    for (let addr = a.start; addr < end; addr += PS) if ((fl[addr / PS]! & PAGE_UFFD_REG) === 0) return { error: true, regions: [], walkEnd: 0, pflags: fl, writable: w }
  }
  const maxPages = a.maxPages === 0 ? Number.POSITIVE_INFINITY : a.maxPages
  const buf: { start: number; end: number; categories: number }[] = []
  let found = 0
  let walkEnd: number | null = null
  const push = (cats: number, addr: number, e: number): boolean => {
    const cur = buf[buf.length - 1]
    if (cur !== undefined && addr === cur.end && cats === cur.categories) {
      cur.end = e
      return true
    }
    if (cur !== undefined && buf.length >= a.maxRegions) return false
    buf.push({ start: addr, end: e, categories: cats })
    return true
  }
  /** pagemap_scan_output: returns the (possibly cut) end. */
  const output = (cats: number, addr: number, e: number): number => {
    if (a.maxRegions === 0) return e
    cats &= a.returnMask
    let n = (e - addr) / PS
    let enospc = false
    if (found + n > maxPages) {
      const tooMuch = found + n - maxPages
      e -= tooMuch * PS
      n -= tooMuch
      enospc = true
    }
    if (!push(cats, addr, e)) {
      e = addr
      n = 0
      enospc = true
    }
    found += n
    if (enospc) walkEnd = e
    return e
  }
  for (let addr = a.start; addr < end; addr += PS) {
    const pi = addr / PS
    const c = naiveCategories(fl[pi]!, pte[pi]!)
    if (a.wpMatching && (c & WPALLOWED) === 0) continue
    const x = c ^ a.categoryInverted
    if ((x & a.categoryMask) !== a.categoryMask) continue
    if (a.categoryAnyofMask !== 0 && (x & a.categoryAnyofMask) === 0) continue
    const next = output(c, addr, addr + PS)
    if (next === addr) break
    if (a.wpMatching && (c & WRITTEN) !== 0) {
      fl[pi] = fl[pi]! | PAGE_UFFD_WP
      w[pi] = false
    }
  }
  return { error: false, regions: buf.filter((r) => r.end !== r.start), walkEnd: walkEnd ?? end, pflags: fl, writable: w }
}

type Op =
  | { k: "write"; page: number; byte: number }
  | { k: "fill"; page: number; n: number; byte: number }
  | { k: "discard"; page: number; n: number }
  | { k: "protect"; page: number; n: number; on: boolean }
  | { k: "merge"; page: number; n: number }
  | { k: "unmerge"; page: number; n: number }
  | { k: "scan"; args: Required<PagemapScanArgs> }

const N = 24
const pageArb = fc.nat(N - 1)
const countArb = fc.integer({ min: 1, max: 8 })
const maskArb = fc.oneof(fc.constantFrom(0, WRITTEN, PRESENT, WPALLOWED, WRITTEN | PRESENT, PFNZERO, SOFT_DIRTY, FILE), fc.integer({ min: 0, max: 255 }))
const scanArb: fc.Arbitrary<Required<PagemapScanArgs>> = fc
  .record({
    p0: fc.nat(N),
    len: fc.nat(N),
    frac: fc.constantFrom(0, 0, 0, 1, PS - 1),
    categoryMask: maskArb,
    categoryInverted: fc.oneof(fc.constant(0), maskArb),
    categoryAnyofMask: fc.oneof(fc.constant(0), maskArb),
    returnMask: maskArb,
    maxPages: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: N + 2 })),
    maxRegions: fc.oneof(fc.constant(Number.MAX_SAFE_INTEGER), fc.integer({ min: 0, max: 6 })),
    wpMatching: fc.boolean(),
    checkWpAsync: fc.oneof(fc.constant(false), fc.constant(false), fc.constant(true)),
  })
  .map((r) => {
    const start = Math.min(r.p0, N) * PS
    const endPage = Math.min(r.p0 + r.len, N)
    const end = endPage === r.p0 || endPage === N ? endPage * PS : (endPage - 1) * PS + r.frac
    return {
      start,
      end: Math.max(start, end),
      categoryMask: r.categoryMask,
      categoryInverted: r.categoryInverted,
      categoryAnyofMask: r.categoryAnyofMask,
      returnMask: r.returnMask,
      maxPages: r.maxPages,
      maxRegions: r.maxRegions,
      wpMatching: r.wpMatching,
      checkWpAsync: r.checkWpAsync,
    }
  })
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant("write" as const), page: pageArb, byte: fc.constantFrom(1, 2) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("fill" as const), page: pageArb, n: countArb, byte: fc.constantFrom(0, 1, 2) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("discard" as const), page: pageArb, n: countArb }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("protect" as const), page: pageArb, n: countArb, on: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("merge" as const), page: pageArb, n: countArb }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("unmerge" as const), page: pageArb, n: countArb }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant("scan" as const), args: scanArb }) },
)

describe("property: pagemapScan equals the naive per-page reference", () => {
  it("over random write / discard / protect / merge histories and random scan args", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 30 }), (ops) => {
        const engine = new Engine()
        const a = space(N, engine)
        for (const op of ops) {
          if (op.k === "write") {
            a.writeU8(op.page * PS + 7, op.byte)
            continue
          }
          if (op.k !== "scan") {
            // A range op on pages [page, page + n).
            const [addr, len] = [op.page * PS, Math.min(op.n, N - op.page) * PS]
            if (op.k === "fill") a.fill(addr, len, op.byte)
            else if (op.k === "discard") a.discard(addr, len)
            else if (op.k === "protect") a.writeProtect(addr, len, op.on)
            else if (op.k === "merge") a.merge(addr, len)
            else a.unmerge(addr, len)
            continue
          }
          // A scan: the result, or the refusal, equals the reference's.
          const want = reference(a.pflags, a.frameTable(), writableOf(a), op.args)
          const before = snapshot(a)
          let got: PagemapScanResult | undefined
          let err: unknown
          try {
            got = a.pagemapScan(op.args)
          } catch (e) {
            err = e
          }
          if (want.error) {
            expect((err as { _tag?: string } | undefined)?._tag).toBe("InvalidArgument")
            expect(snapshot(a)).toEqual(before)
          } else {
            expect(err).toBeUndefined()
            expect(got).toEqual({ regions: want.regions, walkEnd: want.walkEnd })
            expect(Array.from(a.pflags)).toEqual(want.pflags)
            expect(writableOf(a)).toEqual(want.writable)
          }
        }
        checkCounters(engine)
      }),
      { numRuns: 300 },
    )
  })
})
