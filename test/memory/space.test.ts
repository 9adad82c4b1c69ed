/**
 * The memory model of a space (src/memory/space.ts): reads, writes and fills across pages,
 * discard, fork's copy-on-write, pins, dispose, and typed errors that change nothing.
 */
import { describe, expect, it } from "vitest"
import { Engine } from "../helpers/internals.ts"
import type { AddressSpace } from "../helpers/internals.ts"
import { checkCounters } from "../helpers/recount.ts"
import { rejects } from "../helpers/errors.ts"

const PS = 4096

function setup(pages = 8, opts = {}): { engine: Engine; a: AddressSpace } {
  const engine = new Engine(opts)
  return { engine, a: engine.createSpace({ size: pages * PS, name: "a" }) }
}


describe("space basics", () => {
  it("reads zeros from a never-written space without populating it", () => {
    const { engine, a } = setup()
    expect(a.read(0, a.size).every((b) => b === 0)).toBe(true)
    expect(a.readU32(PS - 2)).toBe(0)
    expect(engine.memory().framesInUse).toBe(0)
    expect([a.size, a.pageSize, a.name, a.domain]).toEqual([8 * PS, PS, "a", "default"])
  })

  it("writes and reads bytes, u16 and u32 little-endian at any alignment, straddling pages", () => {
    const { a } = setup()
    a.writeU32(PS - 2, 0x11223344)
    expect(a.readU8(PS - 2)).toBe(0x44)
    expect(a.readU8(PS + 1)).toBe(0x11)
    expect(a.readU32(PS - 2)).toBe(0x11223344)
    expect(a.readU16(PS - 1)).toBe(0x2233)
    a.writeU16(PS - 1, 0xabcd)
    expect(a.readU32(PS - 2)).toBe(0x11abcd44)
    a.writeU8(5, 0x1ff)
    expect(a.readU8(5)).toBe(0xff)
    a.writeU32(8, -1)
    expect(a.readU32(8)).toBe(0xffffffff)
  })

  it("write, readInto and fill cover several pages", () => {
    const { engine, a } = setup()
    const bytes = new Uint8Array(3 * PS).map((_, i) => i * 7)
    a.write(100, bytes)
    const out = new Uint8Array(3 * PS)
    a.readInto(100, out)
    expect(out).toEqual(bytes)
    a.fill(PS, 2 * PS, 9)
    expect(a.read(PS, 2 * PS).every((b) => b === 9)).toBe(true)
    expect(engine.memory().framesInUse).toBe(4)
  })

  it("fills with zero populate pages, as memset does", () => {
    const { engine, a } = setup()
    a.fill(0, 2 * PS, 0)
    expect(engine.memory().framesInUse).toBe(2)
  })

  it("discard drops pages: they read as zeros and free their frames", () => {
    const { engine, a } = setup()
    a.fill(0, 4 * PS, 1)
    a.discard(PS, 2 * PS)
    expect(a.readU8(PS)).toBe(0)
    expect(a.readU8(3 * PS)).toBe(1)
    expect(engine.memory().framesInUse).toBe(2)
  })

  it("fork shares every frame copy-on-write and copies no data", () => {
    const { engine, a } = setup()
    a.fill(0, 8 * PS, 3)
    const b = a.fork()
    expect(engine.memory().framesInUse).toBe(8)
    b.writeU8(0, 4)
    a.writeU8(PS, 5)
    expect([a.readU8(0), b.readU8(0), a.readU8(PS), b.readU8(PS)]).toEqual([3, 4, 5, 3])
    expect(engine.memory().framesInUse).toBe(10)
    expect(engine.stats().cowFaults).toBe(2)
    expect(b.ksmStat().cowFaults).toBe(1)
    checkCounters(engine)
  })

  it("the last mapper of a once-shared frame writes in place, without a copy", () => {
    const { engine, a } = setup()
    a.fill(0, PS, 3)
    const b = a.fork()
    b.writeU8(0, 4) // b copies
    a.writeU8(0, 5) // a is now the sole mapper: reuse
    expect(engine.stats().cowFaults).toBe(1)
    expect(engine.memory().framesInUse).toBe(2)
  })

  it("pins populate a private frame that survives fork in the parent and is copied for the child", () => {
    const { engine, a } = setup()
    a.fill(0, PS, 7)
    a.pin(0, 10)
    const f = a.frameAt(0)
    const b = a.fork()
    expect(a.frameAt(0)).toBe(f)
    expect(b.frameAt(0)).not.toBe(f)
    expect(b.readU8(0)).toBe(7)
    expect(b.pinnedPages).toBe(0)
    a.unpin(0, 10)
    expect(a.pinnedPages).toBe(0)
    checkCounters(engine)
  })

  it("pins nest", () => {
    const { engine, a } = setup()
    a.pin(0, PS)
    a.pin(0, PS)
    a.unpin(0, PS)
    rejects(engine, "PinnedPage", () => a.discard(0, PS))
    a.unpin(0, PS)
    a.discard(0, PS)
  })

  it("dispose releases every frame; later calls throw SpaceDisposed", () => {
    const { engine, a } = setup()
    a.fill(0, a.size, 1)
    const b = a.fork()
    a.merge()
    a.dispose()
    expect(engine.spaces()).toEqual([b])
    b.dispose()
    expect(engine.memory().framesInUse).toBe(0)
    for (const call of [() => a.readU8(0), () => a.writeU32(0, 1), () => a.read(0, 1), () => a.merge(), () => a.fork(), () => a.pin(0, 1), () => a.ksmStat()]) {
      expect(call).toThrow(expect.objectContaining({ _tag: "SpaceDisposed" }))
    }
    a.dispose() // idempotent
  })

})

describe("errors: typed, and nothing changes", () => {
  it("out-of-bounds addresses", () => {
    const { engine, a } = setup()
    a.fill(0, a.size, 1)
    rejects(engine, "OutOfBounds", () => a.readU8(a.size))
    rejects(engine, "OutOfBounds", () => a.readU32(a.size - 3))
    rejects(engine, "OutOfBounds", () => a.writeU32(a.size - 1, 1))
    rejects(engine, "OutOfBounds", () => a.writeU16(-1, 1))
    rejects(engine, "OutOfBounds", () => a.write(a.size - 2, new Uint8Array(3)))
    rejects(engine, "OutOfBounds", () => a.read(0, a.size + 1))
    rejects(engine, "OutOfBounds", () => a.fill(a.size, 1, 0))
    rejects(engine, "OutOfBounds", () => a.merge(0, a.size + 1))
    rejects(engine, "OutOfBounds", () => a.unmerge(-PS))
    rejects(engine, "OutOfBounds", () => a.discard(a.size, PS))
    rejects(engine, "OutOfBounds", () => a.pin(a.size - 1, 2))
  })

  it("NaN, fractions, beyond 2^53 and wrong types", () => {
    const { engine, a } = setup()
    a.fill(0, PS, 1)
    for (const bad of [Number.NaN, 1.5, 2 ** 53, Number.POSITIVE_INFINITY, "0" as unknown as number, undefined as unknown as number]) {
      rejects(engine, "InvalidArgument", () => a.read(bad, 1))
      rejects(engine, "InvalidArgument", () => a.fill(0, bad, 1))
    }
    rejects(engine, "InvalidArgument", () => a.readU32(Number.NaN))
    rejects(engine, "InvalidArgument", () => a.writeU8(0.5, 1))
    rejects(engine, "InvalidArgument", () => a.writeU32(0, "1" as unknown as number))
    rejects(engine, "InvalidArgument", () => a.write(0, [1, 2] as unknown as Uint8Array))
    rejects(engine, "InvalidArgument", () => a.fill(0, 1, 256))
    rejects(engine, "InvalidArgument", () => a.fill(0, 1, -1))
    rejects(engine, "InvalidArgument", () => a.readInto(0, null as unknown as Uint8Array))
  })

  it("misaligned ranges where alignment is required", () => {
    const { engine, a } = setup()
    rejects(engine, "InvalidArgument", () => a.discard(1, PS))
    rejects(engine, "InvalidArgument", () => a.discard(0, 100))
    rejects(engine, "InvalidArgument", () => a.writeProtect(1, PS))
    rejects(engine, "InvalidArgument", () => a.advise(0, 1, "mergeable"))
    rejects(engine, "InvalidArgument", () => a.advise(0, PS, "bogus" as "mergeable"))
  })

  it("unpin of an unpinned page and discard of a pinned one", () => {
    const { engine, a } = setup()
    a.pin(0, PS)
    rejects(engine, "InvalidArgument", () => a.unpin(0, 2 * PS))
    rejects(engine, "PinnedPage", () => a.discard(0, 2 * PS))
  })

  it("bad engine and space options", () => {
    for (const pageSize of [0, 100, 1000, 256, 131072, Number.NaN]) expect(() => new Engine({ pageSize })).toThrow(expect.objectContaining({ _tag: "InvalidArgument" }))
    const engine = new Engine({ pageSize: 512 })
    for (const size of [0, -512, 100, 1.5, Number.NaN, 2 ** 60]) expect(() => engine.createSpace({ size })).toThrow(expect.objectContaining({ _tag: "InvalidArgument" }))
    expect(() => engine.createSpace({ size: 512, domain: "" })).toThrow(expect.objectContaining({ _tag: "InvalidArgument" }))
    expect(() => new Engine({ maxPageSharing: 1 })).toThrow(expect.objectContaining({ _tag: "InvalidArgument" }))
    expect(engine.spaces()).toEqual([])
  })

  it("maxMemoryBytes: an allocation past it throws OutOfMemory and changes nothing", () => {
    const engine = new Engine({ pageSize: 512, slabBytes: 2048, maxMemoryBytes: 8 * 512 })
    const a = engine.createSpace({ size: 16 * 512 })
    a.fill(0, 7 * 512, 1) // 7 frames + the zero frame = the cap
    rejects(engine, "OutOfMemory", () => a.writeU8(7 * 512, 1))
    rejects(engine, "OutOfMemory", () => a.write(6 * 512, new Uint8Array(1024).fill(2)))
    const child = a.fork()
    rejects(engine, "OutOfMemory", () => child.writeU8(0, 1))
    child.dispose()
    // Merging frees frames; then the write fits.
    a.merge()
    a.writeU8(7 * 512, 1)
    expect(a.readU8(7 * 512)).toBe(1)
  })

})
