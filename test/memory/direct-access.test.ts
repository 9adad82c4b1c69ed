/**
 * Live memory for hosts with their own hot loops (issue 12): the translate-once read-modify-write
 * calls (addU32, updateU32) and the direct-access API (memory, translate, tlbEpoch). The property
 * that matters most: a write translation a host kept can never write into a frame that is
 * shared, moved or another space's. Either it still maps the page's own private frame, or its
 * view was detached (the write is dropped); and tlbEpoch tells the host which.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { SksmError } from "../../src/errors.ts"
import { type AddressSpace, Engine } from "../helpers/internals.ts"
import { checkCounters } from "../helpers/recount.ts"

const PS = 4096

function tagOf(fn: () => unknown): string {
  try {
    fn()
  } catch (e) {
    return e instanceof SksmError ? e._tag : `untyped ${String(e)}`
  }
  return "none"
}

describe("addU32 / updateU32: one translation per read-modify-write", () => {
  it("adds modulo 2^32 at any aligned or unaligned address, straddling pages too", () => {
    const e = new Engine()
    const s = e.createSpace({ size: 2 * PS })
    expect(s.addU32(8, 5)).toBe(5)
    expect(s.addU32(8, -6)).toBe(0xffffffff)
    expect(s.readU32(8)).toBe(0xffffffff)
    expect(s.addU32(PS - 2, 0x01020304)).toBe(0x01020304)
    expect(s.readU32(PS - 2)).toBe(0x01020304)
    expect(s.addU32(3, 1)).toBe(1)
    expect(s.updateU32(100, (v) => v + 7)).toBe(7)
    expect(s.updateU32(100, (v) => v * 3)).toBe(21)
    expect(s.updateU32(PS - 1, () => -1)).toBe(0xffffffff)
  })

  it("copy-on-write on a shared page: only this space sees the change", () => {
    const e = new Engine()
    const a = e.createSpace({ size: PS })
    a.writeU32(0, 41)
    const b = a.fork()
    expect(b.addU32(0, 1)).toBe(42)
    expect(a.readU32(0)).toBe(41)
    expect(b.updateU32(0, (v) => v * 2)).toBe(84)
    expect(a.readU32(0)).toBe(41)
    checkCounters(e)
  })

  it("a bad delta, a bad result or a throwing fn changes nothing; fn cannot call the engine", () => {
    const e = new Engine()
    const a = e.createSpace({ size: PS })
    a.writeU32(0, 9)
    const b = a.fork() // shared: a write would copy
    const before = { stats: e.stats(), b: b.read(0, PS), cow: b.cowFaults }
    expect(tagOf(() => b.addU32(0, Number.NaN))).toBe("InvalidArgument")
    expect(tagOf(() => b.addU32(0, 1.5))).toBe("InvalidArgument")
    expect(tagOf(() => b.addU32(0, 1n as never))).toBe("InvalidArgument")
    expect(tagOf(() => b.updateU32(0, () => 0.5))).toBe("InvalidArgument")
    expect(tagOf(() => b.updateU32(0, () => "1" as never))).toBe("InvalidArgument")
    expect(tagOf(() => b.updateU32(0, 3 as never))).toBe("InvalidArgument")
    expect(() =>
      b.updateU32(0, () => {
        throw new Error("host")
      }),
    ).toThrow("host")
    // Reading is harmless; anything that could remap a page (a copy-on-write here) is Busy.
    expect(tagOf(() => b.updateU32(0, () => (a.writeU32(0, 1), 0)))).toBe("Busy")
    expect(tagOf(() => b.updateU32(0, () => (a.merge(), 0)))).toBe("Busy")
    expect({ stats: e.stats(), b: b.read(0, PS), cow: b.cowFaults }).toEqual(before)
    expect(a.readU32(0)).toBe(9)
  })
})

describe("direct access: memory, translate, tlbEpoch", () => {
  it("reads through a read translation, writes through a write translation", () => {
    const e = new Engine()
    const s = e.createSpace({ size: 4 * PS })
    const r = s.translate(PS + 5)
    expect(r).toBe(0) // unpopulated: the zero frame
    expect(s.memory.words[(r >>> 2) + 3]).toBe(0)
    const w = s.translate(PS + 5, true)
    expect(w).not.toBe(0)
    const words = s.memory.words
    words[(w >>> 2) + 10] = 0xcafe
    expect(s.readU32(PS + 40)).toBe(0xcafe)
    s.writeU32(PS + 44, 7)
    expect(words[(w >>> 2) + 11]).toBe(7)
    expect(s.translate(PS, false)).toBe(w)
    expect(tagOf(() => s.translate(4 * PS))).toBe("OutOfBounds")
    expect(tagOf(() => s.translate(0, 1 as never))).toBe("InvalidArgument")
    expect(tagOf(() => s.translate(Symbol() as never))).toBe("InvalidArgument")
  })

  it("tlbEpoch moves on every change a cached translation could miss", () => {
    const e = new Engine({ autoCompact: false })
    const s = e.createSpace({ size: 64 * PS })
    s.fill(0, 64 * PS, 1)
    const steps: [string, () => unknown][] = [
      ["copy-on-write", () => (s.fork(), s.writeU8(0, 2))],
      ["merge", () => s.merge()],
      ["unmerge", () => s.unmerge()],
      ["discard", () => s.discard(PS, PS)],
      ["store growth", () => e.createSpace({ size: 4096 * PS }).fill(0, 4096 * PS, 3)],
      ["compaction", () => (e.spaces().at(-1)!.dispose(), e.compact())],
    ]
    for (const [what, step] of steps) {
      const before = s.tlbEpoch
      step()
      expect(s.tlbEpoch, what).not.toBe(before)
    }
    const before = s.tlbEpoch
    s.readU32(0)
    s.writeU32(8, 1) // a write to a page already private changes no translation
    expect(s.tlbEpoch).toBe(before)
  })

  for (const [what, op] of [
    ["fork", (_e: Engine, s: AddressSpace) => s.fork()],
    ["merge", (_e: Engine, s: AddressSpace) => s.merge()],
    ["writeProtect", (_e: Engine, s: AddressSpace) => s.writeProtect(0, PS, true)],
    ["discard + reuse by another space", (e: Engine, s: AddressSpace) => (s.discard(0, PS), e.createSpace({ size: PS }).fill(0, PS, 0x55))],
    ["dispose + reuse", (e: Engine, s: AddressSpace) => (s.dispose(), e.createSpace({ size: PS }).fill(0, PS, 0x55))],
    ["compaction", (e: Engine, s: AddressSpace) => (s.discard(PS, 255 * PS), e.compact())],
  ] as const) {
    it(`a kept write translation cannot reach the frame after ${what}: its view is detached`, () => {
      const e = new Engine({ autoCompact: false })
      const s = e.createSpace({ size: 256 * PS })
      s.fill(0, 256 * PS, 0x11)
      s.writeU32(0, 0xabc)
      const off = s.translate(0, true)
      const words = s.memory.words
      const epoch = s.tlbEpoch
      op(e, s)
      expect(s.tlbEpoch === epoch && !s.disposed).toBe(false)
      const snapshot = (): string[] => e.spaces().map((x) => Buffer.from(x.read(0, x.size)).toString("base64"))
      const others = snapshot()
      words[(off >>> 2) + 1] = 0xdeadbeef // a host that ignored the epoch
      expect(words.length).toBe(0)
      expect(snapshot()).toEqual(others)
      checkCounters(e)
    })
  }

  it("model: a host's cached write translation is either still the page's own private frame or detached", () => {
    type Op =
      | { k: "write"; s: number; page: number; v: number }
      | { k: "tlbWrite"; s: number; page: number; v: number }
      | { k: "fork"; s: number }
      | { k: "merge"; s: number }
      | { k: "unmerge"; s: number }
      | { k: "discard"; s: number; page: number }
      | { k: "compact" }
      | { k: "grow" }
      | { k: "dispose"; s: number }
    const PAGES = 8
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ k: fc.constant("write" as const), s: fc.nat(3), page: fc.nat(PAGES - 1), v: fc.nat() }),
      fc.record({ k: fc.constant("tlbWrite" as const), s: fc.nat(3), page: fc.nat(PAGES - 1), v: fc.nat() }),
      fc.record({ k: fc.constant("fork" as const), s: fc.nat(3) }),
      fc.record({ k: fc.constant("merge" as const), s: fc.nat(3) }),
      fc.record({ k: fc.constant("unmerge" as const), s: fc.nat(3) }),
      fc.record({ k: fc.constant("discard" as const), s: fc.nat(3), page: fc.nat(PAGES - 1) }),
      fc.constant({ k: "compact" as const }),
      fc.constant({ k: "grow" as const }),
      fc.record({ k: fc.constant("dispose" as const), s: fc.nat(3) }),
    )
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const e = new Engine({ pageSize: PS, slabBytes: 4 * PS, autoCompact: false })
        const spaces: { s: AddressSpace; ref: Uint32Array }[] = []
        const add = (s: AddressSpace, ref: Uint32Array) => spaces.push({ s, ref })
        add(e.createSpace({ size: PAGES * PS }), new Uint32Array((PAGES * PS) / 4))
        // The host's one cached write translation (ignores tlbEpoch on purpose).
        let tlb: { sp: number; page: number; words: Uint32Array; base: number } | null = null
        for (const o of ops) {
          const at = "s" in o ? o.s % spaces.length : 0
          const cur = spaces[at]!
          const pg = "page" in o ? o.page % cur.s.pages : 0
          switch (o.k) {
            case "write":
              cur.s.writeU32(pg * PS, o.v)
              cur.ref[(pg * PS) >>> 2] = o.v
              break
            case "tlbWrite":
              tlb = { sp: at, page: pg, base: cur.s.translate(pg * PS, true), words: cur.s.memory.words }
              tlb.words[(tlb.base >>> 2) + 1] = o.v
              cur.ref[((pg * PS) >>> 2) + 1] = o.v
              break
            case "fork":
              if (spaces.length < 4) add(cur.s.fork(), cur.ref.slice())
              break
            case "merge":
              cur.s.merge()
              break
            case "unmerge":
              cur.s.unmerge()
              break
            case "discard":
              cur.s.discard(pg * PS, PS)
              cur.ref.fill(0, (pg * PS) >>> 2, ((pg + 1) * PS) >>> 2)
              break
            case "compact":
              e.compact()
              break
            case "grow":
              add(e.createSpace({ size: 6 * PS }), new Uint32Array((6 * PS) / 4))
              spaces.at(-1)!.s.fill(0, 6 * PS, 0)
              break
            case "dispose":
              if (spaces.length > 1) {
                cur.s.dispose()
                spaces.splice(at, 1)
                if (tlb !== null && tlb.sp === at) tlb = null
                else if (tlb !== null && tlb.sp > at) tlb.sp--
              }
              break
          }
          // The host ignores the epoch and writes through its kept translation after every step.
          if (tlb !== null && tlb.words.length > 0) {
            const owner = spaces[tlb.sp]!
            // Attached means still valid: the page's own frame, private and writable.
            expect(owner.s.translate(tlb.page * PS, false)).toBe(tlb.base)
            expect(owner.s.isWritable(tlb.page)).toBe(true)
            tlb.words[(tlb.base >>> 2) + 2] = 0x5a5a5a5a
            owner.ref[((tlb.page * PS) >>> 2) + 2] = 0x5a5a5a5a
          }
          for (const { s, ref } of spaces) {
            if (!Buffer.from(s.read(0, s.size)).equals(Buffer.from(ref.buffer))) expect(new Uint32Array(s.read(0, s.size).buffer)).toEqual(ref)
          }
        }
        checkCounters(e)
      }),
      { numRuns: 300 },
    )
  })
})
