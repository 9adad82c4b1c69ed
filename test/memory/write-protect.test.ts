/**
 * writeProtect: UFFDIO_WRITEPROTECT on a range registered with UFFD_FEATURE_WP_ASYNC (and
 * WP_UNPOPULATED). In async mode a write to a protected page is resolved by the kernel itself:
 * no message, the uffd-wp bit clears, and PAGEMAP_SCAN reads the page as WRITTEN. These tests
 * pin down what clears the protection (writes of every kind, copy-on-write faults, pin with
 * FOLL_WRITE, MADV_DONTNEED) and what keeps it (reads, merge, unmerge, fork in the parent).
 */
import { describe, expect, it } from "vitest"
import type { AddressSpace } from "../helpers/internals.ts"
import { Engine } from "../helpers/internals.ts"
import { PAGE_UFFD_REG, PAGE_UFFD_WP } from "../../src/memory/flags.ts"
import { PageCategory, type PageRegion } from "../../src/memory/pagemap.ts"
import { checkCounters } from "../helpers/recount.ts"
import { expectTag } from "../helpers/errors.ts"

const PS = 4096
const { WPALLOWED, WRITTEN, PRESENT } = PageCategory

function setup(pages = 8): { engine: Engine; a: AddressSpace } {
  const engine = new Engine()
  return { engine, a: engine.createSpace({ size: pages * PS }) }
}

/** The written pages, as page indexes (no reset). */
function written(a: AddressSpace): number[] {
  const out: number[] = []
  for (const r of a.pagemapScan({ start: 0, end: a.size, categoryMask: WRITTEN, returnMask: WRITTEN }).regions) {
    for (let p = r.start / PS; p < r.end / PS; p++) out.push(p)
  }
  return out
}

/** Get-and-reset: the written pages, re-protected. */
function collect(a: AddressSpace): PageRegion[] {
  return a.pagemapScan({ start: 0, end: a.size, categoryMask: WRITTEN, returnMask: WRITTEN, wpMatching: true, checkWpAsync: true }).regions
}


describe("writeProtect (uffd-wp async)", () => {
  it("a write to a protected private page clears the protection in place: no copy, no new frame", () => {
    const { engine, a } = setup(4)
    a.fill(0, a.size, 1)
    a.writeProtect(0, a.size)
    expect(written(a)).toEqual([])
    const frames = engine.memory().framesInUse
    const f = a.frameAt(1)
    a.writeU8(PS + 5, 9)
    expect(a.cowFaults).toBe(0)
    expect(a.frameAt(1)).toBe(f)
    expect(engine.memory().framesInUse).toBe(frames)
    expect(a.readU8(PS + 5)).toBe(9)
    expect(a.readU8(PS + 6)).toBe(1)
    expect(written(a)).toEqual([1])
    checkCounters(engine)
  })

  it("protection makes a page not writable; unprotecting restores direct writes for private frames", () => {
    const { a } = setup(2)
    a.fill(0, a.size, 1)
    expect(a.isWritable(0)).toBe(true)
    a.writeProtect(0, a.size)
    expect([a.isWritable(0), a.pflags[0]! & (PAGE_UFFD_WP | PAGE_UFFD_REG)]).toEqual([false, PAGE_UFFD_WP | PAGE_UFFD_REG])
    a.writeProtect(0, PS, false)
    expect([a.isWritable(0), a.pflags[0]! & (PAGE_UFFD_WP | PAGE_UFFD_REG)]).toEqual([true, PAGE_UFFD_REG])
    // An unprotected page reads WRITTEN: there is no protection left to have been cleared.
    expect(written(a)).toEqual([0])
  })

  it("the first call registers the pages, protecting or not (WPALLOWED)", () => {
    const { a } = setup(4)
    a.writeProtect(0, PS, true)
    a.writeProtect(PS, PS, false)
    const allowed = a.pagemapScan({ start: 0, end: a.size, categoryMask: WPALLOWED, returnMask: 0 })
    expect(allowed.regions).toEqual([{ start: 0, end: 2 * PS, categories: 0 }])
  })

  it("every kind of write clears exactly the pages it touches", () => {
    const { a } = setup(8)
    a.fill(0, a.size, 1)
    a.writeProtect(0, a.size)
    a.writeU32(PS - 2, 0xdeadbeef) // straddles pages 0 and 1
    a.writeU16(3 * PS, 7)
    a.write(5 * PS + 100, new Uint8Array(10))
    a.fill(7 * PS, 1, 3)
    expect(written(a)).toEqual([0, 1, 3, 5, 7])
    expect(collect(a).length).toBe(4)
    expect(written(a)).toEqual([])
  })

  it("reads never clear the protection", () => {
    const { a } = setup(2)
    a.fill(0, a.size, 1)
    a.writeProtect(0, a.size)
    a.read(0, a.size)
    a.readU32(PS - 2)
    a.readInto(0, new Uint8Array(PS))
    expect(written(a)).toEqual([])
  })

  it("pin faults for writing (FOLL_WRITE): it counts as a write", () => {
    const { a } = setup(4)
    a.fill(0, a.size, 1)
    a.writeProtect(0, a.size)
    a.pin(PS, PS)
    expect(written(a)).toEqual([1])
  })

  it("discard (MADV_DONTNEED) counts as a write and keeps the registration", () => {
    const { engine, a } = setup(4)
    a.fill(0, 2 * PS, 1)
    a.writeProtect(0, a.size)
    a.discard(0, PS)
    a.discard(3 * PS, PS) // never populated, protected by a marker
    expect(written(a)).toEqual([0, 3])
    expect(a.pagemapScan({ start: 0, end: PS, returnMask: 0xff }).regions[0]!.categories).toBe(WPALLOWED | WRITTEN)
    // Re-arm; the next write to the dropped page populates it and reads as written again.
    expect(collect(a)).toEqual([
      { start: 0, end: PS, categories: WRITTEN },
      { start: 3 * PS, end: 4 * PS, categories: WRITTEN },
    ])
    a.writeU8(0, 2)
    expect(written(a)).toEqual([0])
    checkCounters(engine)
  })

  it("writing a protected, never-populated page populates it and reads as written", () => {
    const { engine, a } = setup(2)
    a.writeProtect(0, a.size)
    a.writeU8(PS + 1, 1)
    expect(engine.memory().framesInUse).toBe(1)
    expect(a.pagemapScan({ start: 0, end: a.size, returnMask: WRITTEN | PRESENT | WPALLOWED }).regions).toEqual([
      { start: 0, end: PS, categories: WPALLOWED },
      { start: PS, end: 2 * PS, categories: WPALLOWED | WRITTEN | PRESENT },
    ])
  })

  it("merge and unmerge keep the protection; a copy-on-write write on a merged page clears it", () => {
    const { engine, a } = setup(8)
    a.fill(0, a.size, 0x33)
    a.writeProtect(0, a.size)
    a.merge()
    expect(a.ksmStat().ksmMergingPages).toBe(8)
    expect(written(a)).toEqual([])
    // Protecting merged pages does not unshare them.
    a.writeProtect(0, a.size)
    expect(a.ksmStat().ksmMergingPages).toBe(8)
    const cow = a.cowFaults
    a.writeU8(2 * PS, 1)
    expect(a.cowFaults).toBe(cow + 1)
    expect(written(a)).toEqual([2])
    expect(a.ksmStat().ksmMergingPages).toBe(7)
    collect(a)
    // unmerge is FAULT_FLAG_UNSHARE, not a write.
    expect(a.unmerge()).toBe(7)
    expect(written(a)).toEqual([])
    a.writeU8(4 * PS, 1)
    expect(written(a)).toEqual([4])
    checkCounters(engine)
  })

  it("unprotecting merged or fork-shared pages never makes a shared frame writable", () => {
    const { engine, a } = setup(4)
    a.fill(0, a.size, 0x44)
    const child = a.fork()
    a.writeProtect(0, a.size, true)
    a.writeProtect(0, a.size, false)
    for (let p = 0; p < 4; p++) expect(a.isWritable(p)).toBe(false)
    a.writeU8(0, 1)
    expect(child.readU8(0)).toBe(0x44)
    const b = engine.createSpace({ size: 2 * PS })
    b.fill(0, b.size, 0x55)
    b.merge()
    b.writeProtect(0, b.size, false)
    b.writeU8(0, 1)
    expect(b.readU8(PS)).toBe(0x55)
    checkCounters(engine)
  })

  it("fork: the child is not registered and has no uffd-wp bits; the parent keeps its protection", () => {
    const { engine, a } = setup(4)
    a.fill(0, a.size, 1)
    a.writeProtect(0, a.size)
    const child = a.fork()
    for (let p = 0; p < 4; p++) expect(child.pflags[p]! & (PAGE_UFFD_WP | PAGE_UFFD_REG)).toBe(0)
    expect(written(a)).toEqual([])
    a.writeU8(0, 2) // copy-on-write in the parent
    expect(a.cowFaults).toBe(1)
    expect(written(a)).toEqual([0])
    expect(child.readU8(0)).toBe(1)
    checkCounters(engine)
  })

  it("argument errors throw and change nothing; an empty range is a no-op", () => {
    const { a } = setup(4)
    a.fill(0, a.size, 1)
    const before = Array.from(a.pflags)
    expectTag(() => a.writeProtect(1, PS), "InvalidArgument")
    expectTag(() => a.writeProtect(0, PS + 1), "InvalidArgument")
    expectTag(() => a.writeProtect(0, a.size + PS), "OutOfBounds")
    expectTag(() => a.writeProtect(-PS, PS), "OutOfBounds")
    expectTag(() => a.writeProtect(0, PS, 1 as unknown as boolean), "InvalidArgument")
    a.writeProtect(PS, 0)
    expect(Array.from(a.pflags)).toEqual(before)
    a.dispose()
    expectTag(() => a.writeProtect(0, PS), "SpaceDisposed")
  })
})
