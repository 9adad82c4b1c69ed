/**
 * The engine's address space (src/space/mergeable-space.ts): what it adds to the memory model
 * on the way to the merge core. merge()/unmerge() ranges (whole space by default, every page a
 * range touches, nothing for an empty one), advise on exactly its range, setMergeAny, the
 * ksm_stat figures, fork's adoption, dispose, and the guarded constructor.
 */
import { describe, expect, it } from "vitest"
import { InvalidArgument, OutOfMemory } from "../../src/errors.ts"
import { PAGE_MERGEABLE, PAGE_MERGED } from "../../src/memory/flags.ts"
import { RMAP_ITEM_BYTES } from "../../src/space/address-space.ts"
import { MergeableSpace } from "../../src/space/mergeable-space.ts"
import { expectTag } from "../helpers/errors.ts"
import { type AddressSpace, Engine } from "../helpers/internals.ts"
import { checkCounters } from "../helpers/recount.ts"

const PS = 4096

/** A space of `pages` pages, all holding `byte`. */
function filled(engine: Engine, pages: number, byte: number): AddressSpace {
  const s = engine.createSpace({ size: pages * PS, name: "s" })
  s.fill(0, s.size, byte)
  return s
}

/** Which pages of `s` are merged, as a string of 0/1. */
const mergedPages = (s: AddressSpace) => Array.from(s.pflags, (f) => ((f & PAGE_MERGED) !== 0 ? 1 : 0)).join("")
const advised = (s: AddressSpace) => Array.from(s.pflags, (f) => ((f & PAGE_MERGEABLE) !== 0 ? 1 : 0)).join("")

describe("merge() and unmerge() ranges", () => {
  it("default to the whole space, or from addr to its end", () => {
    const engine = new Engine()
    const a = filled(engine, 6, 1)
    expect(a.merge(4 * PS).scanned).toBe(2)
    expect(mergedPages(a)).toBe("000011")
    expect(a.merge().scanned).toBe(6)
    expect(mergedPages(a)).toBe("111111")
    expect(a.unmerge(5 * PS)).toBe(1)
    expect(a.unmerge()).toBe(5)
    expect(mergedPages(a)).toBe("000000")
    checkCounters(engine)
  })

  it("cover every page an unaligned range touches; an empty range touches none, wherever it starts", () => {
    const engine = new Engine()
    const a = filled(engine, 6, 1)
    expect(a.merge(PS / 2, PS).scanned).toBe(2)
    expect(mergedPages(a)).toBe("110000")
    expect(a.merge(3 * PS + 7, 0).scanned).toBe(0)
    expect(a.unmerge(PS + 1, 0)).toBe(0)
    expect(a.unmerge(PS - 1, 2)).toBe(2)
    expect(mergedPages(a)).toBe("000000")
  })

  it("ranges past the end are refused", () => {
    const engine = new Engine()
    const a = filled(engine, 2, 1)
    expectTag(() => a.merge(0, 2 * PS + 1), "OutOfBounds")
    expectTag(() => a.unmerge(2 * PS + 1), "OutOfBounds")
    expect(mergedPages(a)).toBe("00")
  })
})

describe("advise and setMergeAny", () => {
  it("advise marks exactly its page-aligned range; unmergeable also unmerges exactly that range", () => {
    const engine = new Engine()
    const a = filled(engine, 6, 1)
    a.advise(PS, 3 * PS, "mergeable")
    expect(advised(a)).toBe("011100")
    a.merge()
    a.advise(2 * PS, PS, "unmergeable")
    expect(advised(a)).toBe("010100")
    expect(mergedPages(a)).toBe("110111")
    checkCounters(engine)
  })

  it("advise refuses unaligned ranges and unknown advice, changing nothing", () => {
    const engine = new Engine()
    const a = filled(engine, 2, 1)
    a.merge()
    expectTag(() => a.advise(1, PS, "unmergeable"), "InvalidArgument")
    expectTag(() => a.advise(0, PS, "MERGEABLE" as "mergeable"), "InvalidArgument")
    expect([advised(a), mergedPages(a)]).toEqual(["00", "11"])
  })

  it("setMergeAny(false) unmerges every page and clears all advice; setting the current value does nothing", () => {
    const engine = new Engine()
    const a = filled(engine, 4, 1)
    a.advise(0, 2 * PS, "mergeable")
    a.merge()
    a.setMergeAny(false) // already false: nothing happens
    expect([advised(a), mergedPages(a)]).toEqual(["1100", "1111"])
    a.setMergeAny(true)
    expect(a.mergeAny).toBe(true)
    expect(mergedPages(a)).toBe("1111")
    a.setMergeAny(false)
    expect([advised(a), mergedPages(a), a.mergeAny]).toEqual(["0000", "0000", false])
    expectTag(() => a.setMergeAny(1 as unknown as boolean), "InvalidArgument")
    checkCounters(engine)
  })
})

describe("ksmStat", () => {
  it("counts rmap items, merging pages, zero pages and the process profit as /proc/<pid>/ksm_stat does", () => {
    const engine = new Engine({ useZeroPages: true })
    const a = engine.createSpace({ size: 8 * PS })
    a.fill(0, 4 * PS, 1) // four duplicates: merging
    a.fill(4 * PS, PS, 2) // unique: a table item, not merging
    a.fill(5 * PS, 2 * PS, 0) // zero pages
    expect(a.ksmStat()).toMatchObject({ ksmRmapItems: 0, ksmMergingPages: 0, ksmZeroPages: 0, ksmProcessProfit: 0, ksmMergeAny: false, ksmMergeable: false })
    a.merge(0, 7 * PS)
    const k = a.ksmStat()
    expect([k.ksmRmapItems, k.ksmMergingPages, k.ksmZeroPages]).toEqual([5, 4, 2])
    expect(k.ksmProcessProfit).toBe((4 + 2) * PS - 5 * RMAP_ITEM_BYTES)
    a.advise(7 * PS, PS, "mergeable")
    expect(a.ksmStat().ksmMergeable).toBe(true)
    a.writeU8(0, 9)
    expect(a.ksmStat()).toMatchObject({ ksmMergingPages: 3, cowFaults: 1 })
  })
})

describe("fork, dispose and construction", () => {
  it("fork gives the engine a child in the same domain that inherits mergeAny", () => {
    const engine = new Engine()
    const a = engine.createSpace({ size: 2 * PS, name: "vm", domain: "tenant" })
    a.setMergeAny(true)
    const child = a.fork()
    expect(engine.spaces()).toContain(child)
    expect([child.name, child.domain, child.mergeAny]).toEqual(["vm-fork", "tenant", true])
  })

  it("a fork refused for memory (pinned pages need copies) leaves no half-made child", () => {
    const engine = new Engine({ pageSize: PS, maxMemoryBytes: 4 * PS, slabBytes: PS })
    const a = engine.createSpace({ size: 3 * PS })
    a.pin(0, 3 * PS)
    expect(() => a.fork()).toThrow(OutOfMemory)
    expect(engine.spaces()).toEqual([a])
    checkCounters(engine)
  })

  it("dispose leaves the engine's spaces and is idempotent", () => {
    const engine = new Engine()
    const a = filled(engine, 2, 1)
    a.dispose()
    a.dispose()
    expect(engine.spaces()).toEqual([])
    expectTag(() => a.ksmStat(), "SpaceDisposed")
    expectTag(() => a.merge(), "SpaceDisposed")
  })

  it("cannot be constructed except by the engine", () => {
    const engine = new Engine()
    const a = filled(engine, 1, 1)
    const Ctor = MergeableSpace as unknown as new (...args: unknown[]) => unknown
    expect(() => new Ctor({}, { size: PS })).toThrow(InvalidArgument)
    expect(() => new (a.constructor as new (...args: unknown[]) => unknown)({}, { size: PS })).toThrow(InvalidArgument)
    expect(engine.spaces()).toEqual([a])
  })
})
