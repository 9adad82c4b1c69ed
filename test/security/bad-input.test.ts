/**
 * Bad-input sweep (issue 7), generated rather than hand-listed: a table of every public call
 * with one valid argument list and the kind of each parameter. Each argument in turn (and
 * each field of an options object) is replaced by every hostile value; the call must either
 * throw a typed error (an SksmError with a _tag) and change nothing (contents, stats, memory,
 * every space's ksmStat, the scanner's tunables), or, when the value is legitimately
 * acceptable for that parameter (-0 for 0, undefined for an optional argument, a
 * SharedArrayBuffer-backed Uint8Array, ...), succeed. Disposed spaces, detached scanners and
 * ranges that wrap or straddle the end are swept the same way.
 */
import { describe, expect, it } from "vitest"
import type { AddressSpace } from "../helpers/internals.ts"
import { Engine } from "../helpers/internals.ts"
import { SksmError } from "../../src/errors.ts"
import type { Scanner } from "../helpers/internals.ts"
import { checkCounters } from "../helpers/recount.ts"

const PS = 512
const PAGES = 4
const SIZE = PAGES * PS

function detachedView(): Uint8Array {
  const b = new ArrayBuffer(16)
  const v = new Uint8Array(b)
  structuredClone(b, { transfer: [b] })
  return v
}

function sharedView(n: number): Uint8Array {
  const v = new Uint8Array(new SharedArrayBuffer(n))
  v.fill(0x5c)
  return v
}

/** Every hostile value, with a label. */
const HOSTILE: [string, () => unknown][] = [
  ["-1", () => -1],
  ["-0", () => -0],
  ["NaN", () => Number.NaN],
  ["Infinity", () => Number.POSITIVE_INFINITY],
  ["-Infinity", () => Number.NEGATIVE_INFINITY],
  ["0.5", () => 0.5],
  ["1.5", () => 1.5],
  ["2^31", () => 2 ** 31],
  ["-2^31-1", () => -(2 ** 31) - 1],
  ["2^32", () => 2 ** 32],
  ["2^53", () => 2 ** 53],
  ["2^53+2", () => 2 ** 53 + 2],
  ["MAX_VALUE", () => Number.MAX_VALUE],
  ['"0"', () => "0"],
  ['""', () => ""],
  ['"abc"', () => "abc"],
  ["{}", () => ({})],
  ["[]", () => []],
  ["[1]", () => [1]],
  ["{valueOf: 0}", () => ({ valueOf: () => 0 })],
  ["undefined", () => undefined],
  ["null", () => null],
  ["true", () => true],
  ["false", () => false],
  ["1n", () => 1n],
  ["Symbol", () => Symbol("s")],
  ["function", () => () => 0],
  ["detached Uint8Array", detachedView],
  ["shared Uint8Array(16)", () => sharedView(16)],
  ["Buffer(16)", () => Buffer.alloc(16, 3)],
  ["Uint8ClampedArray", () => new Uint8ClampedArray(16)],
  ["Int8Array", () => new Int8Array(16)],
  ["ArrayBuffer", () => new ArrayBuffer(16)],
  ["DataView", () => new DataView(new ArrayBuffer(16))],
]

/** Objects that carry no option fields: as an options bag they mean "all defaults". */
const BAGS = ["{}", "[]", "[1]", "{valueOf: 0}", "detached Uint8Array", "shared Uint8Array(16)", "Buffer(16)", "Uint8ClampedArray", "Int8Array", "ArrayBuffer", "DataView"] as const

/**
 * Parameter kinds and the hostile values each may legitimately accept (by label). A call with
 * any other hostile value must throw a typed error. Fields of an options bag read with `??`
 * take null as absent (their `ok` lists say so); pagemapScan, an ioctl struct, does not.
 */
const KINDS = {
  /** An offset or length that 0 satisfies. */
  uint: ["-0"],
  /** Same, optional (undefined takes the default). */
  uintOpt: ["-0", "undefined"],
  /** Must be page-aligned and non-zero... or is it: an aligned zero-length range is fine too. */
  aligned: ["-0"],
  byte: ["-0"],
  /** A value to write: any safe integer (its low bits are written). */
  u8: ["-0", "-1", "2^31", "-2^31-1", "2^32"],
  u16: ["-0", "-1", "2^31", "-2^31-1", "2^32"],
  u32: ["-0", "-1", "2^31", "-2^31-1", "2^32"],
  bool: ["true", "false"],
  boolOpt: ["true", "false", "undefined"],
  bytes: ["shared Uint8Array(16)", "Buffer(16)"],
  advice: [],
  /**
   * An options bag whose fields are all optional. It is read field by field, so any object
   * without those fields (an array, a typed array, an ArrayBuffer, a detached view) means
   * "all defaults", the JavaScript convention; undefined is the default argument.
   */
  optionsOpt: [...BAGS, "undefined"],
  /** setAutoCompact: a boolean or an options bag (no default argument). */
  boolOrBag: [...BAGS, "true", "false"],
  /** An options object with a required field, or a required scalar. */
  options: [],
  /** A tunables bag: every field optional; unknown own keys are rejected (indices of a non-empty array, say). */
  tunables: ["{}", "[]", "detached Uint8Array", "ArrayBuffer", "DataView"],
  tunablesOpt: ["{}", "[]", "detached Uint8Array", "ArrayBuffer", "DataView", "undefined"],
} as const
type Kind = keyof typeof KINDS

/** A field of an options object: valid value and the labels it may accept. */
interface Field {
  readonly valid: unknown
  readonly ok: readonly string[]
}

interface Ctx {
  engine: Engine
  a: AddressSpace
  b: AddressSpace
  scanner: Scanner
}

interface Call {
  readonly name: string
  readonly kinds: readonly Kind[]
  readonly valid: (c: Ctx) => unknown[]
  readonly run: (c: Ctx, args: unknown[]) => unknown
  /** Fields of the options argument at this index, swept one by one. */
  readonly fields?: { readonly index: number; readonly of: Record<string, Field> }
  /** Address/length argument positions, for the range sweep. */
  readonly range?: { readonly addr: number; readonly length?: number; readonly width?: number; readonly aligned?: boolean }
}

const u = (ok: readonly string[] = []): Field => ({ valid: undefined, ok })

const CALLS: Call[] = [
  // ---- AddressSpace
  { name: "read", kinds: ["uint", "uint"], valid: () => [8, 16], run: (c, a) => c.a.read(a[0] as number, a[1] as number), range: { addr: 0, length: 1 } },
  { name: "readInto", kinds: ["uint", "bytes"], valid: () => [8, new Uint8Array(16)], run: (c, a) => c.a.readInto(a[0] as number, a[1] as Uint8Array), range: { addr: 0, width: 16 } },
  { name: "write", kinds: ["uint", "bytes"], valid: () => [8, new Uint8Array(16).fill(9)], run: (c, a) => c.a.write(a[0] as number, a[1] as Uint8Array), range: { addr: 0, width: 16 } },
  { name: "fill", kinds: ["uint", "uint", "byte"], valid: () => [8, 16, 7], run: (c, a) => c.a.fill(a[0] as number, a[1] as number, a[2] as number), range: { addr: 0, length: 1 } },
  { name: "readU8", kinds: ["uint"], valid: () => [3], run: (c, a) => c.a.readU8(a[0] as number), range: { addr: 0, width: 1 } },
  { name: "readU16", kinds: ["uint"], valid: () => [3], run: (c, a) => c.a.readU16(a[0] as number), range: { addr: 0, width: 2 } },
  { name: "readU32", kinds: ["uint"], valid: () => [3], run: (c, a) => c.a.readU32(a[0] as number), range: { addr: 0, width: 4 } },
  { name: "writeU8", kinds: ["uint", "u8"], valid: () => [3, 200], run: (c, a) => c.a.writeU8(a[0] as number, a[1] as number), range: { addr: 0, width: 1 } },
  { name: "writeU16", kinds: ["uint", "u16"], valid: () => [3, 60000], run: (c, a) => c.a.writeU16(a[0] as number, a[1] as number), range: { addr: 0, width: 2 } },
  { name: "writeU32", kinds: ["uint", "u32"], valid: () => [3, 0xdeadbeef], run: (c, a) => c.a.writeU32(a[0] as number, a[1] as number), range: { addr: 0, width: 4 } },
  { name: "discard", kinds: ["aligned", "aligned"], valid: () => [0, PS], run: (c, a) => c.a.discard(a[0] as number, a[1] as number), range: { addr: 0, length: 1, aligned: true } },
  { name: "pin", kinds: ["uint", "uint"], valid: () => [8, 16], run: (c, a) => c.a.pin(a[0] as number, a[1] as number), range: { addr: 0, length: 1 } },
  { name: "unpin", kinds: ["uint", "uint"], valid: () => [3 * PS, 16], run: (c, a) => c.a.unpin(a[0] as number, a[1] as number), range: { addr: 0, length: 1 } },
  { name: "merge", kinds: ["uintOpt", "uintOpt"], valid: () => [0, 2 * PS], run: (c, a) => c.a.merge(a[0] as number, a[1] as number), range: { addr: 0, length: 1 } },
  { name: "unmerge", kinds: ["uintOpt", "uintOpt"], valid: () => [0, 2 * PS], run: (c, a) => c.a.unmerge(a[0] as number, a[1] as number), range: { addr: 0, length: 1 } },
  { name: "advise", kinds: ["aligned", "aligned", "advice"], valid: () => [0, PS, "mergeable"], run: (c, a) => c.a.advise(a[0] as number, a[1] as number, a[2] as "mergeable"), range: { addr: 0, length: 1, aligned: true } },
  { name: "advise(unmergeable)", kinds: ["aligned", "aligned", "advice"], valid: () => [0, PS, "unmergeable"], run: (c, a) => c.a.advise(a[0] as number, a[1] as number, a[2] as "unmergeable") },
  { name: "setMergeAny", kinds: ["bool"], valid: () => [true], run: (c, a) => c.a.setMergeAny(a[0] as boolean) },
  { name: "writeProtect", kinds: ["aligned", "aligned", "boolOpt"], valid: () => [0, PS, true], run: (c, a) => c.a.writeProtect(a[0] as number, a[1] as number, a[2] as boolean), range: { addr: 0, length: 1, aligned: true } },
  {
    name: "pagemapScan",
    kinds: ["options"],
    valid: () => [{ start: 0, end: SIZE, categoryMask: 0, returnMask: 0 }],
    run: (c, a) => c.a.pagemapScan(a[0] as never),
    fields: {
      index: 0,
      of: {
        start: { valid: 0, ok: ["-0"] },
        end: { valid: SIZE, ok: ["-0"] },
        categoryMask: u(["-0", "undefined"]),
        categoryInverted: u(["-0", "undefined"]),
        categoryAnyofMask: u(["-0", "undefined"]),
        returnMask: { valid: 0, ok: ["-0"] },
        maxPages: u(["-0", "undefined", "2^31", "2^32"]),
        maxRegions: u(["-0", "undefined", "2^31", "2^32"]),
        wpMatching: u(["true", "false", "undefined"]),
        checkWpAsync: u(["false", "undefined"]),
      },
    },
  },
  { name: "ksmStat", kinds: [], valid: () => [], run: (c) => c.a.ksmStat() },
  { name: "fork", kinds: [], valid: () => [], run: (c) => c.a.fork() },
  { name: "dispose", kinds: [], valid: () => [], run: (c) => c.b.dispose() },
  // ---- Engine
  {
    name: "new Engine",
    kinds: ["optionsOpt"],
    valid: () => [{ pageSize: PS }],
    run: (_c, a) => new Engine(a[0] as never),
    fields: {
      index: 0,
      of: {
        pageSize: { valid: PS, ok: ["undefined", "null"] },
        maxMemoryBytes: u(["undefined", "null", "Infinity", "2^31", "2^32"]),
        slabBytes: u(["undefined", "null"]),
        useZeroPages: u(["true", "false", "undefined", "null"]),
        maxPageSharing: u(["undefined", "null", "2^31", "2^32"]),
        mergeAcrossDomains: u(["true", "false", "undefined", "null"]),
        checksum: u(["undefined", "null", "function"]),
        seed: u(["undefined", "null", "-0", "2^31", "2^32"]),
        maxCandidates: u(["undefined", "null", "2^31", "2^32"]),
        secure: u(["true", "false", "undefined", "null"]),
        secureDomains: u(["undefined", "null", "[]"]),
        idlePasses: u(["undefined", "null", "-0"]),
        autoCompact: u(["undefined", "null", "true", "false", ...BAGS]),
      },
    },
  },
  {
    name: "createSpace",
    kinds: ["options"],
    valid: () => [{ size: 2 * PS, name: "n", domain: "d" }],
    run: (c, a) => c.engine.createSpace(a[0] as never),
    fields: {
      index: 0,
      of: {
        // 2^31 and 2^32 bytes are legitimate sizes (lazily populated: 16-32 MiB of page table).
        size: { valid: 2 * PS, ok: ["2^31", "2^32"] },
        name: { valid: "n", ok: ['""', '"0"', '"abc"', "undefined"] },
        domain: { valid: "d", ok: ['"0"', '"abc"', "undefined"] },
      },
    },
  },
  { name: "compact", kinds: ["optionsOpt"], valid: () => [{ budgetPages: 4 }], run: (c, a) => c.engine.compact(a[0] as never), fields: { index: 0, of: { budgetPages: u(["undefined", "null", "-0", "Infinity", "2^31", "2^32"]) } } },
  {
    name: "setAutoCompact",
    kinds: ["boolOrBag"],
    valid: () => [{ minFreeFrames: 4 }],
    run: (c, a) => c.engine.setAutoCompact(a[0] as never),
    fields: {
      index: 0,
      of: {
        enabled: u(["true", "false", "undefined", "null"]),
        minFreeFrames: u(["undefined", "null", "-0", "2^31", "2^32"]),
        minFreeRatio: u(["undefined", "null", "-0", "0.5"]),
        budgetPages: u(["undefined", "null", "Infinity", "2^31", "2^32"]),
      },
    },
  },
  { name: "setMaxPageSharing", kinds: ["options"], valid: (c) => [c.engine.maxPageSharing], run: (c, a) => c.engine.setMaxPageSharing(a[0] as number) },
  { name: "setUseZeroPages", kinds: ["bool"], valid: () => [true], run: (c, a) => c.engine.setUseZeroPages(a[0] as boolean) },
  { name: "unmergeAll", kinds: [], valid: () => [], run: (c) => c.engine.unmergeAll() },
  { name: "stats", kinds: [], valid: () => [], run: (c) => c.engine.stats() },
  { name: "memory", kinds: [], valid: () => [], run: (c) => c.engine.memory() },
  {
    name: "engine.scanner",
    kinds: ["tunablesOpt"],
    valid: () => [{ policy: "ksm", pagesToScan: 10 }],
    run: (c, a) => c.engine.scanner(a[0] as never),
    fields: {
      index: 0,
      of: {
        policy: u(["undefined", "null"]),
        pagesToScan: u(["undefined", "-0", "2^31"]),
        sleepMillis: u(["undefined", "-0", "2^31"]),
        smartScan: u(["true", "false", "undefined"]),
        advisorMode: u(["undefined"]),
        rangePages: u(["undefined"]),
        clock: u(["undefined", "null"]),
      },
    },
  },
  // ---- Scanner
  {
    name: "scanner.set",
    kinds: ["tunables"],
    valid: () => [{ pagesToScan: 50 }],
    run: (c, a) => c.scanner.set(a[0] as never),
    fields: {
      index: 0,
      of: {
        pagesToScan: u(["undefined", "-0", "2^31"]),
        sleepMillis: u(["undefined", "-0", "2^31"]),
        smartScan: u(["true", "false", "undefined"]),
        advisorMaxCpu: u(["undefined", "-0", "2^31", "2^32"]),
        advisorTargetScanTime: u(["undefined", "2^31", "2^32"]),
      },
    },
  },
  { name: "scanner.tick", kinds: [], valid: () => [], run: (c) => c.scanner.tick() },
]

/** A fresh context: two spaces with merged, zero, written and pinned pages, and a scanner. */
function makeCtx(): Ctx {
  const engine = new Engine({ pageSize: PS, slabBytes: 8 * PS, seed: 4 })
  const a = engine.createSpace({ size: SIZE, name: "a", domain: "x" })
  const b = engine.createSpace({ size: SIZE, name: "b", domain: "x" })
  for (const s of [a, b]) {
    s.fill(0, PS, 0x11)
    s.fill(PS, PS, 0)
    s.writeU32(2 * PS + 8, 0x12345678)
    s.merge(0, 2 * PS)
  }
  a.pin(3 * PS, 1)
  const scanner = engine.scanner({ policy: "ksm" })
  return { engine, a, b, scanner }
}

function state(c: Ctx): unknown {
  const spaces = c.engine.spaces()
  const { compaction: _ignored, ...memory } = c.engine.memory()
  return {
    contents: spaces.map((s) => Buffer.from(s.read(0, s.size)).toString("base64")),
    stats: c.engine.stats(),
    memory,
    ksmStat: spaces.map((s) => s.ksmStat()),
    tunables: c.scanner.detached ? null : c.scanner.tunables,
    detached: c.scanner.detached,
    spaces: spaces.length,
    maxPageSharing: c.engine.maxPageSharing,
    useZeroPages: c.engine.useZeroPages,
    autoCompact: c.engine.autoCompact,
  }
}

/** Run one call; returns a problem description or null. */
function probe(call: Call, mutate: (args: unknown[]) => unknown[], acceptable: boolean, label: string, setup?: (c: Ctx) => void): string | null {
  const c = makeCtx()
  setup?.(c)
  const args = mutate(call.valid(c))
  const before = state(c)
  let err: unknown = null
  try {
    call.run(c, args)
  } catch (e) {
    err = e
  }
  if (err === null) {
    if (!acceptable) return `${call.name} ${label}: succeeded`
    checkCounters(c.engine)
    return null
  }
  if (!(err instanceof SksmError) || typeof err._tag !== "string") return `${call.name} ${label}: threw untyped ${String((err as Error)?.name ?? err)}: ${String((err as Error)?.message ?? "")}`
  const after = state(c)
  try {
    expect(after).toEqual(before)
  } catch {
    return `${call.name} ${label}: threw ${err._tag} but changed state`
  }
  checkCounters(c.engine)
  return null
}

describe("bad-input sweep over every public call", () => {
  it("the valid argument list of every call succeeds (the sweep starts from working calls)", () => {
    const problems: string[] = []
    for (const call of CALLS) {
      const p = probe(call, (a) => a, true, "valid")
      if (p !== null) problems.push(p)
      const c = makeCtx()
      try {
        call.run(c, call.valid(c))
      } catch (e) {
        problems.push(`${call.name}: valid call threw ${String(e)}`)
      }
    }
    expect(problems).toEqual([])
  })

  for (const call of CALLS) {
    it(`${call.name}: every argument and options field replaced by every hostile value`, () => {
      const problems: string[] = []
      let probes = 0
      call.kinds.forEach((kind, i) => {
        for (const [label, make] of HOSTILE) {
          const ok = (KINDS[kind] as readonly string[]).includes(label)
          probes++
          const p = probe(call, (a) => a.map((v, j) => (j === i ? make() : v)), ok, `arg ${i} = ${label}`)
          if (p !== null) problems.push(p)
        }
      })
      if (call.fields !== undefined) {
        const { index, of } = call.fields
        for (const [field, spec] of Object.entries(of)) {
          for (const [label, make] of HOSTILE) {
            probes++
            const p = probe(
              call,
              (a) => a.map((v, j) => (j === index ? { ...(v as object), [field]: make() } : v)),
              spec.ok.includes(label),
              `${field} = ${label}`,
            )
            if (p !== null) problems.push(p)
          }
        }
      }
      // Calling it with too few arguments is a hostile input too (every argument undefined).
      if (call.kinds.length > 0) {
        const allOptional = call.kinds.every((k) => (KINDS[k] as readonly string[]).includes("undefined"))
        probes++
        const p = probe(call, (a) => a.map(() => undefined), allOptional, "no arguments")
        if (p !== null) problems.push(p)
      }
      expect(problems).toEqual([])
      expect(probes).toBeGreaterThanOrEqual(call.kinds.length * HOSTILE.length)
    })
  }

  it("ranges that wrap around, straddle the end or start past it are refused and change nothing", () => {
    const problems: string[] = []
    for (const call of CALLS) {
      const r = call.range
      if (r === undefined) continue
      const width = r.width ?? 0
      const cases: [string, number, number | undefined][] = [
        ["addr = size", SIZE, r.aligned ? PS : 1],
        ["addr = 2^53 - 1", 2 ** 53 - 1, 2],
        ["addr = 2^32 - page", 2 ** 32 - PS, 2 * PS],
      ]
      if (r.length !== undefined) {
        cases.push(["addr = size - 1, straddling the end", SIZE - 1, 2])
        cases.push(["length past the end", 0, SIZE + PS])
        cases.push(["length 2^53 - 1", PS, 2 ** 53 - 1])
        cases.push(["addr + length = 2^53 + page", 2 ** 53 - PS, 2 * PS])
      }
      if (width > 1) cases.push([`width ${width} straddling the end`, SIZE - width + 1, undefined])
      for (const [label, addr, length] of cases) {
        const p = probe(
          call,
          (a) => a.map((v, j) => (j === r.addr ? addr : j === r.length && length !== undefined ? length : v)),
          false,
          label,
        )
        if (p !== null) problems.push(p)
      }
    }
    expect(problems).toEqual([])
  })

  it("every space call on a disposed space throws SpaceDisposed and changes nothing (dispose stays idempotent)", () => {
    const problems: string[] = []
    for (const call of CALLS) {
      if (!["read", "readInto", "write", "fill", "readU8", "readU16", "readU32", "writeU8", "writeU16", "writeU32", "discard", "pin", "unpin", "merge", "unmerge", "advise", "advise(unmergeable)", "setMergeAny", "writeProtect", "pagemapScan", "ksmStat", "fork"].includes(call.name)) continue
      const c = makeCtx()
      c.a.dispose()
      const before = state(c)
      try {
        call.run(c, call.valid(c))
        problems.push(`${call.name}: succeeded on a disposed space`)
      } catch (e) {
        if (!(e instanceof SksmError) || e._tag !== "SpaceDisposed") problems.push(`${call.name}: threw ${String(e)}`)
        else if (JSON.stringify(state(c)) !== JSON.stringify(before)) problems.push(`${call.name}: changed state`)
      }
      // Hostile arguments on a disposed space: still SpaceDisposed or another typed error.
      call.kinds.forEach((_k, i) => {
        for (const [label, make] of HOSTILE) {
          const p = probe(call, (a) => a.map((v, j) => (j === i ? make() : v)), false, `disposed, arg ${i} = ${label}`, (cc) => cc.a.dispose())
          if (p !== null) problems.push(p)
        }
      })
    }
    const c = makeCtx()
    c.a.dispose()
    expect(() => c.a.dispose()).not.toThrow()
    expect(problems).toEqual([])
  })

  it("a detached scanner refuses tick/start/set with ScannerDetached and changes nothing; stop resolves", async () => {
    const c = makeCtx()
    const old = c.scanner
    c.scanner = c.engine.scanner({ policy: "tracked" })
    for (const f of [() => old.tick(), () => old.start(), () => old.set({ pagesToScan: 5 })]) {
      const before = state(c)
      expect(f).toThrow(expect.objectContaining({ _tag: "ScannerDetached" }))
      expect(state(c)).toEqual(before)
    }
    await expect(old.stop()).resolves.toBeUndefined()
  })

  it("values a write takes are checked: the low bits of any safe integer, nothing else", () => {
    const c = makeCtx()
    c.a.writeU32(0, -1)
    expect(c.a.readU32(0)).toBe(0xffffffff)
    c.a.writeU16(0, -2)
    expect(c.a.readU16(0)).toBe(0xfffe)
    c.a.writeU8(0, -128)
    expect(c.a.readU8(0)).toBe(0x80)
    c.a.writeU8(0, 0x1ff)
    expect(c.a.readU8(0)).toBe(0xff)
    c.a.writeU32(0, 2 ** 40 + 7)
    expect(c.a.readU32(0)).toBe(7)
    for (const v of [Number.NaN, 0.5, 2 ** 53, Number.POSITIVE_INFINITY, -(2 ** 60)]) {
      for (const w of [(x: number) => c.a.writeU8(0, x), (x: number) => c.a.writeU16(0, x), (x: number) => c.a.writeU32(0, x)]) {
        expect(() => w(v)).toThrow(expect.objectContaining({ _tag: "InvalidArgument" }))
      }
    }
  })

  it("a SharedArrayBuffer-backed Uint8Array works for write and readInto", () => {
    const c = makeCtx()
    c.a.write(100, sharedView(16))
    const t = new Uint8Array(new SharedArrayBuffer(16))
    c.a.readInto(100, t)
    expect(Array.from(t)).toEqual(new Array(16).fill(0x5c))
  })
})
