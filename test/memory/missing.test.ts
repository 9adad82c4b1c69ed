/**
 * Missing pages (src/memory/missing.ts and the space's registerMissing / copyMissing /
 * fetchMissing): every access path fills a missing page before touching it, the fast paths work
 * again once the prefix is filled, a failing handler changes nothing, and discard, fork, merge,
 * the scanner, pagemapScan and dispose treat missing pages right. A model-based property compares
 * random interleavings of accesses, fills and operations with a plain Uint8Array.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { PageCategory } from "../../src/memory/pagemap.ts"
import { MissingSet } from "../../src/memory/missing.ts"
import { type AddressSpace, Engine } from "../helpers/internals.ts"
import { checkCounters } from "../helpers/recount.ts"
import { thrown } from "../helpers/errors.ts"

const PS = 4096

/** A source image: page p holds bytes derived from (seed, p); pages in `zero` are all zero. */
function image(pages: number, seed = 1, zero: readonly number[] = []): Uint8Array {
  const out = new Uint8Array(pages * PS)
  let x = seed * 2654435761 + 1
  for (let i = 0; i < out.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    out[i] = x >>> 24
  }
  for (const p of zero) out.fill(0, p * PS, (p + 1) * PS)
  return out
}

/** A handler serving `src`, counting its calls per page. */
function handlerOf(src: Uint8Array): { fill(pi: number, page: Uint8Array): void; calls: number[] } {
  const calls: number[] = []
  return {
    calls,
    fill(pi: number, page: Uint8Array) {
      calls.push(pi)
      page.set(src.subarray(pi * PS, (pi + 1) * PS))
    },
  }
}

function lazy(pages = 8, seed = 1, opts = {}): { engine: Engine; s: AddressSpace; src: Uint8Array; h: ReturnType<typeof handlerOf> } {
  const engine = new Engine(opts)
  const s = engine.createSpace({ size: pages * PS, name: "lazy" })
  const src = image(pages, seed)
  const h = handlerOf(src)
  expect(s.registerMissing(h)).toBe(pages)
  return { engine, s, src, h }
}

describe("MissingSet", () => {
  it("adds, deletes, counts and finds the next missing page across words", () => {
    const m = new MissingSet(100)
    expect(m.next(0, 100)).toBe(100)
    for (const p of [3, 31, 32, 64, 99]) expect(m.add(p)).toBe(true)
    expect(m.add(3)).toBe(false)
    expect(m.count).toBe(5)
    expect([m.next(0, 100), m.next(4, 100), m.next(32, 100), m.next(33, 100), m.next(65, 100), m.next(65, 99)]).toEqual([3, 31, 32, 64, 99, 99])
    expect(m.delete(31)).toBe(true)
    expect(m.delete(31)).toBe(false)
    expect(m.next(4, 100)).toBe(32)
    expect(m.has(32) && !m.has(31)).toBe(true)
    expect(m.count).toBe(4)
    expect(m.bytes).toBe(16)
  })
})

describe("every access path fills a missing page first", () => {
  const accesses: [string, (s: AddressSpace, model: Uint8Array) => void][] = [
    ["readU8", (s, m) => expect(s.readU8(3 * PS + 5)).toBe(m[3 * PS + 5])],
    ["readU16 (page-crossing)", (s, m) => expect(s.readU16(4 * PS - 1)).toBe(m[4 * PS - 1]! | (m[4 * PS]! << 8))],
    ["readU32 aligned", (s, m) => expect(s.readU32(3 * PS + 8)).toBe(new DataView(m.buffer).getUint32(3 * PS + 8, true))],
    ["readU32 unaligned", (s, m) => expect(s.readU32(3 * PS + 9)).toBe(new DataView(m.buffer).getUint32(3 * PS + 9, true))],
    ["readU32 straddling", (s, m) => expect(s.readU32(4 * PS - 2)).toBe(new DataView(m.buffer).getUint32(4 * PS - 2, true))],
    ["read", (s, m) => expect(s.read(2 * PS + 100, 3 * PS)).toEqual(m.subarray(2 * PS + 100, 5 * PS + 100))],
    ["readInto", (s, m) => {
      const t = new Uint8Array(PS + 7)
      s.readInto(5 * PS - 3, t)
      expect(t).toEqual(m.subarray(5 * PS - 3, 6 * PS + 4))
    }],
    ["translate (read)", (s, m) => {
      const base = s.translate(3 * PS + 17)
      expect(s.memory.bytes.subarray(base, base + PS)).toEqual(m.subarray(3 * PS, 4 * PS))
    }],
    ["translate (write)", (s, m) => {
      const base = s.translate(3 * PS, true)
      s.memory.bytes[base + 1] = 0xee
      m[3 * PS + 1] = 0xee
    }],
    ["writeU8", (s, m) => {
      s.writeU8(3 * PS + 1, 0x5a)
      m[3 * PS + 1] = 0x5a
    }],
    ["writeU16 (page-crossing)", (s, m) => {
      s.writeU16(4 * PS - 1, 0xbeef)
      m[4 * PS - 1] = 0xef
      m[4 * PS] = 0xbe
    }],
    ["writeU32", (s, m) => {
      s.writeU32(3 * PS + 4, 0xdeadbeef)
      new DataView(m.buffer).setUint32(3 * PS + 4, 0xdeadbeef, true)
    }],
    ["addU32", (s, m) => {
      const v = (new DataView(m.buffer).getUint32(3 * PS + 4, true) + 7) >>> 0
      expect(s.addU32(3 * PS + 4, 7)).toBe(v)
      new DataView(m.buffer).setUint32(3 * PS + 4, v, true)
    }],
    ["updateU32", (s, m) => {
      const old = new DataView(m.buffer).getUint32(3 * PS + 4, true)
      expect(s.updateU32(3 * PS + 4, (o) => o ^ 0xff)).toBe((old ^ 0xff) >>> 0)
      new DataView(m.buffer).setUint32(3 * PS + 4, (old ^ 0xff) >>> 0, true)
    }],
    ["write (partial pages)", (s, m) => {
      const b = new Uint8Array(PS).fill(9)
      s.write(3 * PS + 10, b)
      m.set(b, 3 * PS + 10)
    }],
    ["fill (partial pages)", (s, m) => {
      s.fill(3 * PS + 10, PS + 20, 0x33)
      m.fill(0x33, 3 * PS + 10, 4 * PS + 30)
    }],
    ["pin", (s) => {
      s.pin(3 * PS + 10, 2 * PS)
      s.unpin(3 * PS + 10, 2 * PS)
    }],
  ]
  for (const [name, access] of accesses) {
    it(`${name}: the snapshot bytes, then the fast paths see the same`, () => {
      const { engine, s, src, h } = lazy()
      const model = src.slice()
      access(s, model)
      expect(h.calls.length).toBeGreaterThan(0)
      expect(s.read(0, s.size)).toEqual(model)
      expect(s.missingPages).toBe(0)
      // An ordinary space again: the word paths work everywhere.
      for (let a = 0; a < s.size; a += 1028) expect(s.readU32(a)).toBe(new DataView(model.buffer).getUint32(a, true))
      checkCounters(engine)
    })
  }

  it("an access fetches only the pages it touches, each once", () => {
    const { s, h } = lazy()
    s.readU32(5 * PS)
    s.readU8(5 * PS + 100)
    expect(h.calls).toEqual([5])
    s.readU32(2 * PS - 2)
    expect(h.calls).toEqual([5, 1, 2])
    expect(s.missingPages).toBe(5)
    expect([s.isMissing(0), s.isMissing(PS), s.isMissing(5 * PS + 3), s.isMissing(7 * PS)]).toEqual([true, false, false, true])
  })

  it("a write or fill covering whole missing pages does not fetch them", () => {
    const { s, h } = lazy()
    s.write(2 * PS, new Uint8Array(2 * PS).fill(1))
    s.fill(6 * PS, PS, 7)
    expect(h.calls).toEqual([])
    expect(s.readU8(2 * PS)).toBe(1)
    expect(s.readU8(6 * PS + 5)).toBe(7)
    expect(s.missingPages).toBe(5)
  })

  it("the fast paths serve the filled prefix; the registration drops with the last page", () => {
    const { engine, s, src } = lazy()
    const base = s.metadataBytes
    // Fill out of order: the prefix moves only when page 0 is filled, then past everything filled.
    expect(s.copyMissing(2 * PS, src.subarray(2 * PS, 4 * PS))).toBe(2)
    expect(s.copyMissing(0, src.subarray(0, PS))).toBe(1)
    expect(s.missingPages).toBe(5)
    expect(s.readU32(PS)).toBe(new DataView(src.buffer).getUint32(PS, true)) // a fault of page 1
    expect(s.missingPages).toBe(4)
    // copyMissing skips what is not missing any more.
    expect(s.copyMissing(0, new Uint8Array(5 * PS))).toBe(1)
    expect(s.readU8(4 * PS)).toBe(0)
    expect(s.fetchMissing()).toBe(3)
    expect(s.missingPages).toBe(0)
    expect(s.metadataBytes).toBeLessThan(base)
    expect(s.fetchMissing()).toBe(0)
    checkCounters(engine)
  })

  it("all-zero contents leave the page unpopulated", () => {
    const engine = new Engine()
    const s = engine.createSpace({ size: 4 * PS })
    const src = image(4, 3, [1, 2])
    s.registerMissing(handlerOf(src))
    expect(s.read(0, s.size)).toEqual(src)
    expect(engine.memory().framesInUse).toBe(2)
  })

  it("only unpopulated pages become missing; a page list is honoured", () => {
    const engine = new Engine()
    const s = engine.createSpace({ size: 8 * PS })
    s.writeU8(PS, 1)
    const h = handlerOf(image(8))
    expect(s.registerMissing(h, [1, 2, 3, 3])).toBe(2)
    expect(s.readU8(PS)).toBe(1)
    expect(s.isMissing(2 * PS) && s.isMissing(3 * PS) && !s.isMissing(4 * PS)).toBe(true)
    expect(s.readU8(5 * PS)).toBe(0)
    expect(h.calls).toEqual([])
    const t = engine.createSpace({ size: 8 * PS })
    expect(t.registerMissing(h, Uint32Array.of(7))).toBe(1)
  })

  it("bad arguments are InvalidArgument and register nothing", () => {
    const engine = new Engine()
    const s = engine.createSpace({ size: 4 * PS })
    const h = handlerOf(image(4))
    for (const bad of [() => s.registerMissing(null as never), () => s.registerMissing({} as never), () => s.registerMissing(h, [4]), () => s.registerMissing(h, [-1]), () => s.registerMissing(h, [0.5]), () => s.registerMissing(h, "0" as never), () => s.registerMissing(h, new Uint8Array(1) as never)]) {
      expect(thrown(bad)).toMatchObject({ _tag: "InvalidArgument" })
    }
    expect(s.missingPages).toBe(0)
    s.registerMissing(h, [0])
    expect(thrown(() => s.registerMissing(h))).toMatchObject({ _tag: "InvalidArgument" })
    expect(thrown(() => s.copyMissing(1, new Uint8Array(PS)))).toMatchObject({ _tag: "InvalidArgument" })
    expect(thrown(() => s.copyMissing(0, new Uint8Array(5 * PS)))).toMatchObject({ _tag: "OutOfBounds" })
    expect(thrown(() => s.isMissing(4 * PS))).toMatchObject({ _tag: "OutOfBounds" })
    expect(s.missingPages).toBe(1)
  })

  it("reads the handler's fill once, and calls it with the handler as this", () => {
    const engine = new Engine()
    const s = engine.createSpace({ size: 2 * PS })
    let reads = 0
    const seen: unknown[] = []
    const handler = {
      get fill() {
        reads++
        return function (this: unknown, _pi: number, page: Uint8Array) {
          seen.push(this)
          page[0] = 42
        }
      },
    }
    s.registerMissing(handler)
    expect(s.readU8(0) + s.readU8(PS)).toBe(84)
    expect(reads).toBe(1)
    expect(seen).toEqual([handler, handler])
  })
})

describe("a failing handler changes nothing", () => {
  it("throws PageFetchFailed naming the page, with the handler's error as cause; a later access retries", () => {
    const { engine, s, src } = lazy(4)
    let fail = true
    const boom = new Error("disk on fire")
    const h = { fill: (pi: number, page: Uint8Array) => {
      if (fail) throw boom
      page.set(src.subarray(pi * PS, (pi + 1) * PS))
    } }
    const t = engine.createSpace({ size: 4 * PS })
    t.registerMissing(h)
    const before = engine.memory().framesInUse
    const epoch = t.tlbEpoch
    for (const access of [() => t.readU32(2 * PS), () => t.writeU32(2 * PS, 1), () => t.read(2 * PS, 8), () => t.translate(2 * PS), () => t.fill(2 * PS, 4, 1), () => t.pin(2 * PS, 1), () => t.fork(), () => t.pagemapScan({ start: 0, end: t.size, returnMask: PageCategory.PRESENT })]) {
      const e = thrown(access) as { _tag: string; page: number; cause: unknown; message: string }
      expect(e._tag).toBe("PageFetchFailed")
      expect(e.page).toBe(e.message.includes("page 0") ? 0 : 2)
      expect(e.cause).toBe(boom)
    }
    expect(engine.memory().framesInUse).toBe(before)
    expect(engine.spaces().length).toBe(2)
    expect(t.missingPages).toBe(4)
    expect(t.tlbEpoch).toBe(epoch)
    expect(t.pinnedPages).toBe(0)
    fail = false
    expect(t.readU32(2 * PS)).toBe(new DataView(src.buffer).getUint32(2 * PS, true))
    expect(s.read(0, s.size)).toEqual(src)
    checkCounters(engine)
  })

  it("the handler cannot call the engine: Busy, wrapped", () => {
    const engine = new Engine()
    const s = engine.createSpace({ size: 2 * PS })
    const other = engine.createSpace({ size: PS })
    s.registerMissing({ fill: () => {
      other.write(0, new Uint8Array(1).fill(1))
    } })
    const e = thrown(() => s.readU8(0)) as { _tag: string; cause: { _tag: string } }
    expect(e._tag).toBe("PageFetchFailed")
    expect(e.cause._tag).toBe("Busy")
    expect(other.readU8(0)).toBe(0)
    expect(engine.pool.busy).toBe(0)
  })

  it("a handler that detaches its page buffer fails the access; the next one gets a fresh buffer", () => {
    const engine = new Engine()
    const s = engine.createSpace({ size: 2 * PS })
    let detach = true
    s.registerMissing({ fill: (_pi: number, page: Uint8Array) => {
      if (detach) structuredClone(page.buffer, { transfer: [page.buffer as ArrayBuffer] })
      else page.fill(5)
    } })
    expect(thrown(() => s.readU8(0))).toMatchObject({ _tag: "PageFetchFailed", page: 0 })
    detach = false
    expect(s.readU8(0)).toBe(5)
  })

  it("OutOfMemory before the handler runs leaves the page missing", () => {
    const engine = new Engine({ maxMemoryBytes: 256 * 1024, slabBytes: 64 * 1024 })
    const s = engine.createSpace({ size: 128 * PS })
    s.registerMissing(handlerOf(image(128)))
    expect(thrown(() => s.read(0, s.size))).toMatchObject({ _tag: "OutOfMemory" })
    expect(s.missingPages).toBeGreaterThan(0)
    expect(thrown(() => s.copyMissing(0, image(128)))).toMatchObject({ _tag: "OutOfMemory" })
    checkCounters(engine)
  })
})

describe("operations on spaces with missing pages", () => {
  it("discard makes a missing page an ordinary zero page, never fetched", () => {
    const { s, h } = lazy()
    s.discard(2 * PS, 2 * PS)
    expect(s.missingPages).toBe(6)
    expect(s.readU32(2 * PS)).toBe(0)
    expect(s.read(3 * PS, PS).every((b) => b === 0)).toBe(true)
    expect(h.calls).toEqual([])
  })

  it("fork fills every missing page first; the child holds the contents", () => {
    const { engine, s, src } = lazy()
    s.readU8(0)
    const c = s.fork()
    expect(s.missingPages).toBe(0)
    expect(c.missingPages).toBe(0)
    expect(c.read(0, c.size)).toEqual(src)
    c.writeU8(0, 1)
    expect(s.readU8(0)).toBe(src[0])
    checkCounters(engine)
  })

  it("merge and the scanner skip missing pages (never zero pages); merging after the fill shares them", () => {
    const engine = new Engine()
    const src = image(6, 5, [4, 5])
    const a = engine.createSpace({ size: 6 * PS, name: "a" })
    const b = engine.createSpace({ size: 6 * PS, name: "b" })
    a.registerMissing(handlerOf(src))
    b.registerMissing(handlerOf(src))
    a.readU8(0)
    b.readU8(0)
    a.merge()
    b.merge()
    expect(engine.stats().ksmZeroPages).toBe(0)
    const ksmd = engine.scanner()
    a.setMergeAny(true)
    b.setMergeAny(true)
    for (let i = 0; i < 4; i++) ksmd.tick()
    expect(engine.stats().ksmZeroPages).toBe(0)
    expect(a.missingPages + b.missingPages).toBe(10)
    expect(a.read(0, a.size)).toEqual(src)
    expect(b.read(0, b.size)).toEqual(src)
    a.merge()
    b.merge()
    expect(engine.stats().pagesSharing).toBe(4)
    expect(engine.memory().framesInUse).toBe(4)
    checkCounters(engine)
  })

  it("pagemapScan fills the pages of its range first: a missing page is never reported absent", () => {
    const { s, h } = lazy()
    const r = s.pagemapScan({ start: 2 * PS, end: 4 * PS, categoryMask: PageCategory.PRESENT, returnMask: PageCategory.PRESENT })
    expect(r.regions).toEqual([{ start: 2 * PS, end: 4 * PS, categories: PageCategory.PRESENT }])
    expect(h.calls).toEqual([2, 3])
  })

  it("write-protected missing pages are filled protected: the next write is tracked", () => {
    const { s, src } = lazy(4)
    s.writeProtect(0, s.size)
    expect(s.readU8(PS)).toBe(src[PS])
    expect(s.pagemapScan({ start: 0, end: s.size, categoryMask: PageCategory.WRITTEN, returnMask: PageCategory.WRITTEN }).regions).toEqual([])
    s.writeU8(PS, 1)
    expect(s.pagemapScan({ start: 0, end: s.size, categoryMask: PageCategory.WRITTEN, returnMask: PageCategory.WRITTEN }).regions).toEqual([{ start: PS, end: 2 * PS, categories: PageCategory.WRITTEN }])
  })

  it("dispose drops the registration: the handler is never called again", () => {
    const { engine, s, h } = lazy()
    s.readU8(0)
    s.dispose()
    expect(s.missingPages).toBe(0)
    expect(thrown(() => s.readU8(PS))).toMatchObject({ _tag: "SpaceDisposed" })
    expect(thrown(() => s.copyMissing(0, new Uint8Array(PS)))).toMatchObject({ _tag: "SpaceDisposed" })
    expect(h.calls).toEqual([0])
    expect(engine.memory().framesInUse).toBe(0)
  })

  it("secure mode: filled pages are private and readable", () => {
    const engine = new Engine({ secure: true })
    const s = engine.createSpace({ size: 4 * PS })
    const src = image(4)
    s.registerMissing(handlerOf(src))
    expect(s.read(0, s.size)).toEqual(src)
    s.writeU32(0, 1)
    checkCounters(engine)
  })

  it("memory() counts the bitmap and the scratch page while pages are missing", () => {
    const engine = new Engine()
    const s = engine.createSpace({ size: 64 * PS })
    const before = engine.memory().metadataBytes
    s.registerMissing(handlerOf(image(64)))
    expect(engine.memory().metadataBytes).toBe(before + 8 + PS)
    s.fetchMissing()
    expect(engine.memory().metadataBytes).toBe(before)
  })
})

describe("model: random accesses, fills and operations match a plain Uint8Array", () => {
  const PAGES = 6
  const addr = fc.integer({ min: 0, max: PAGES * PS - 4 })
  const page = fc.integer({ min: 0, max: PAGES - 1 })
  const op = fc.oneof(
    fc.record({ k: fc.constantFrom("r8", "r16", "r32", "w8", "w16", "w32", "add", "translate", "translateW"), a: addr, v: fc.integer({ min: 0, max: 0xffffffff }) }),
    fc.record({ k: fc.constantFrom("read", "write", "fill"), a: addr, n: fc.integer({ min: 0, max: 2 * PS + 3 }), v: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ k: fc.constantFrom("discard", "copy", "fetch", "pinUnpin"), p: page, n: fc.integer({ min: 1, max: 3 }) }),
    fc.record({ k: fc.constantFrom("merge", "fork", "scan") }),
  )
  it("holds for every program", () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 1000 }), fc.boolean(), (prog, seed, zeros) => {
        const engine = new Engine()
        const src = image(PAGES, seed, zeros ? [1, 4] : [])
        const twin = engine.createSpace({ size: PAGES * PS, name: "twin" })
        twin.write(0, src)
        const s = engine.createSpace({ size: PAGES * PS, name: "s" })
        s.registerMissing(handlerOf(src))
        const m = src.slice()
        const dv = new DataView(m.buffer)
        for (const o of prog) {
          const a = "a" in o ? o.a : 0
          switch (o.k) {
            case "r8": expect(s.readU8(a)).toBe(m[a]); break
            case "r16": expect(s.readU16(a)).toBe(dv.getUint16(a, true)); break
            case "r32": expect(s.readU32(a)).toBe(dv.getUint32(a, true)); break
            case "w8": s.writeU8(a, o.v); m[a] = o.v & 0xff; break
            case "w16": s.writeU16(a, o.v); dv.setUint16(a, o.v & 0xffff, true); break
            case "w32": s.writeU32(a, o.v); dv.setUint32(a, o.v, true); break
            case "add": {
              const v = (dv.getUint32(a, true) + o.v) >>> 0
              expect(s.addU32(a, o.v)).toBe(v)
              dv.setUint32(a, v, true)
              break
            }
            case "translate": {
              const base = s.translate(a)
              expect(s.memory.bytes[base + (a % PS)]).toBe(m[a])
              break
            }
            case "translateW": {
              const base = s.translate(a, true)
              s.memory.bytes[base + (a % PS)] = o.v & 0xff
              m[a] = o.v & 0xff
              break
            }
            case "read": {
              const n = Math.min(o.n, m.length - o.a)
              expect(s.read(o.a, n)).toEqual(m.subarray(o.a, o.a + n))
              break
            }
            case "write": {
              const n = Math.min(o.n, m.length - o.a)
              const b = new Uint8Array(n).fill(o.v)
              s.write(o.a, b)
              m.set(b, o.a)
              break
            }
            case "fill": {
              const n = Math.min(o.n, m.length - o.a)
              s.fill(o.a, n, o.v)
              m.fill(o.v, o.a, o.a + n)
              break
            }
            case "discard": {
              const n = Math.min(o.n, PAGES - o.p)
              s.discard(o.p * PS, n * PS)
              m.fill(0, o.p * PS, (o.p + n) * PS)
              break
            }
            case "copy": {
              const n = Math.min(o.n, PAGES - o.p)
              // The filler's contract: copyMissing installs source bytes into pages still missing only.
              s.copyMissing(o.p * PS, src.subarray(o.p * PS, (o.p + n) * PS))
              break
            }
            case "fetch": s.fetchMissing(o.p * PS, Math.min(o.n, PAGES - o.p) * PS); break
            case "pinUnpin": s.pin(o.p * PS, PS); s.unpin(o.p * PS, PS); break
            case "merge": s.merge(); twin.merge(); break
            case "fork": {
              const c = s.fork()
              expect(c.read(0, c.size)).toEqual(m)
              c.dispose()
              break
            }
            case "scan": s.pagemapScan({ start: 0, end: s.size, returnMask: PageCategory.PRESENT }); break
          }
          checkCounters(engine)
        }
        expect(s.read(0, s.size)).toEqual(m)
        expect(twin.read(0, twin.size)).toEqual(src)
        // Fill the rest: the space is ordinary again, word by word.
        s.fetchMissing()
        expect(s.missingPages).toBe(0)
        for (let a = 0; a < m.length; a += 4) if (s.readU32(a) !== dv.getUint32(a, true)) throw new Error(`word ${a}`)
        checkCounters(engine)
      }),
      { numRuns: 60 },
    )
  })
})
