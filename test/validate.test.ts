/**
 * The validation module (src/validate.ts) on its own: readOptions (unknown keys refused with the
 * nearest valid one, each key read exactly once into a frozen snapshot, a throwing getter or
 * Proxy trap wrapped in InvalidArgument with its error as cause), checkBytes (real Uint8Arrays
 * of any backing accepted as a private view; look-alikes, Proxies and detached views refused;
 * no property of the caller's object read), show (never throws, never runs the caller's code),
 * the number / range / string checks and readStringArray.
 */
import { describe, expect, it } from "vitest"
import { InvalidArgument, OutOfBounds } from "../src/errors.ts"
import {
  checkAlignedRange,
  checkBool,
  checkBytes,
  checkInt,
  checkIntIn,
  checkName,
  checkRange,
  checkRangeToEnd,
  errorText,
  nearest,
  readOptions,
  readStringArray,
  show,
} from "../src/validate.ts"
import { Engine } from "../src/index.ts"
import { thrown } from "./helpers/errors.ts"

const KEYS = ["pageSize", "maxMemoryBytes", "slabBytes"] as const


describe("readOptions", () => {
  it("an unknown key is InvalidArgument naming it and the nearest valid key", () => {
    expect(() => readOptions("new Engine()", { pagesize: 4096 }, KEYS)).toThrow(new InvalidArgument("unknown option 'pagesize' of new Engine(); did you mean 'pageSize'?"))
    expect(() => readOptions("new Engine()", { slabbytes: 1 }, KEYS)).toThrow("did you mean 'slabBytes'?")
    // The real constructor says the same.
    expect(() => new Engine({ pagesize: 4096 } as never)).toThrow("unknown option 'pagesize' of new Engine(); did you mean 'pageSize'?")
  })

  it("a key another part explains is refused with that explanation", () => {
    const explain = (k: string) => (k === "stablePasses" ? "stablePasses is an option of policy 'tracked'" : undefined)
    expect(() => readOptions("scanner", { stablePasses: 1 }, KEYS, { explain })).toThrow(new InvalidArgument("stablePasses is an option of policy 'tracked'"))
    expect(() => readOptions("scanner", { pagesize: 1 }, KEYS, { explain })).toThrow("did you mean 'pageSize'")
  })

  it("undefined reads as {}; anything but a plain object is InvalidArgument", () => {
    expect(readOptions("x", undefined, KEYS)).toEqual({})
    for (const bad of [null, 3, "pageSize", [], () => 1, Symbol("s"), 1n]) expect(() => readOptions("x", bad, KEYS)).toThrow(InvalidArgument)
  })

  it("reads each known key exactly once (getters and Proxy traps counted) into a frozen snapshot of the defined ones", () => {
    const reads = new Map<string, number>()
    const source = {
      get pageSize() {
        reads.set("pageSize", (reads.get("pageSize") ?? 0) + 1)
        return 4096
      },
      get slabBytes() {
        reads.set("slabBytes", (reads.get("slabBytes") ?? 0) + 1)
        return undefined
      },
    }
    const snap = readOptions("x", source, KEYS)
    expect(Object.fromEntries(reads)).toEqual({ pageSize: 1, slabBytes: 1 })
    expect(snap).toEqual({ pageSize: 4096 })
    expect("slabBytes" in snap).toBe(false)
    expect(Object.isFrozen(snap)).toBe(true)

    const traps: string[] = []
    const proxy = new Proxy(
      { pageSize: 512 },
      {
        get: (t, k, r) => (traps.push(`get ${String(k)}`), Reflect.get(t, k, r)),
        ownKeys: (t) => (traps.push("ownKeys"), Reflect.ownKeys(t)),
      },
    )
    expect(readOptions("x", proxy, KEYS)).toEqual({ pageSize: 512 })
    expect(traps.filter((t) => t.startsWith("get")).sort()).toEqual(KEYS.map((k) => `get ${k}`).sort())
    expect(traps.filter((t) => t === "ownKeys")).toHaveLength(1)
  })

  it("the snapshot does not follow later changes to the caller's object", () => {
    const source: Record<string, unknown> = { pageSize: 512 }
    const snap = readOptions("x", source, KEYS)
    source["pageSize"] = 4096
    expect(snap["pageSize"]).toBe(512)
  })

  it("a throwing getter or Proxy trap becomes InvalidArgument with the caller's error as cause", () => {
    const boom = new Error("boom")
    const getter = thrown(() =>
      readOptions(
        "x",
        {
          get maxMemoryBytes() {
            throw boom
          },
        },
        KEYS,
      ),
    )
    expect(getter).toBeInstanceOf(InvalidArgument)
    expect((getter as Error).message).toBe("x: reading option 'maxMemoryBytes' threw (boom)")
    expect((getter as Error).cause).toBe(boom)
    for (const trap of ["ownKeys", "get", "getOwnPropertyDescriptor"] as const) {
      const proxy = new Proxy({ pageSize: 1 }, { [trap]: () => { throw boom } })
      const e = thrown(() => readOptions("x", proxy, KEYS))
      expect(e, trap).toBeInstanceOf(InvalidArgument)
      expect((e as Error).cause, trap).toBe(boom)
    }
  })
})

describe("checkBytes", () => {
  /** checkBytes' view shows the same bytes as `value`: a write through it is visible in `backing`. */
  function expectSameBytes(value: Uint8Array, backing: Uint8Array, at: number): void {
    const view = checkBytes("bytes", value)
    expect(view).not.toBe(value)
    expect(view.byteLength).toBe(value.byteLength)
    view[0] = 0xab
    expect(backing[at]).toBe(0xab)
  }

  it("accepts a Uint8Array, a Buffer, a subarray and a SharedArrayBuffer view, as a private view of the same bytes", () => {
    const plain = new Uint8Array(8)
    expectSameBytes(plain, plain, 0)
    const buf = Buffer.alloc(8)
    expectSameBytes(buf, buf, 0)
    const whole = new Uint8Array(16)
    expectSameBytes(whole.subarray(5, 9), whole, 5)
    const shared = new Uint8Array(new SharedArrayBuffer(8))
    expectSameBytes(shared, shared, 0)
    expect(checkBytes("bytes", shared).buffer).toBe(shared.buffer)
    expect(checkBytes("bytes", new Uint8Array(0)).byteLength).toBe(0)
  })

  it("never reads the caller's own length or subarray (a lying length changes nothing)", () => {
    const real = new Uint8Array(4)
    let touched = 0
    Object.defineProperty(real, "length", { get: () => (touched++, 1e9) })
    Object.defineProperty(real, "subarray", { value: () => (touched++, new Uint8Array(1e6)) })
    expect(checkBytes("bytes", real).byteLength).toBe(4)
    expect(touched).toBe(0)
  })

  it("refuses look-alikes: Object.create(Uint8Array.prototype), a Proxy of a Uint8Array (no trap runs), other views", () => {
    let traps = 0
    const proxy = new Proxy(new Uint8Array(4), { get: (t, k) => (traps++, Reflect.get(t, k)), getPrototypeOf: (t) => (traps++, Reflect.getPrototypeOf(t)) })
    const bad: unknown[] = [Object.create(Uint8Array.prototype), proxy, new Uint8ClampedArray(4), new Int8Array(4), new Uint16Array(2), new DataView(new ArrayBuffer(4)), new ArrayBuffer(4), [1, 2], { length: 4, 0: 1 }, null, "abcd"]
    for (const v of bad) expect(() => checkBytes("bytes", v), show(v)).toThrow(new InvalidArgument("bytes must be a Uint8Array"))
    expect(traps).toBe(0)
  })

  it("refuses a view of a detached buffer", () => {
    const ab = new ArrayBuffer(8)
    const view = new Uint8Array(ab, 2, 4)
    structuredClone(ab, { transfer: [ab] })
    expect(() => checkBytes("bytes", view)).toThrow(new InvalidArgument("bytes is a view of a detached ArrayBuffer"))
  })
})

describe("show", () => {
  it("describes every kind of value without running the caller's code", () => {
    let ran = 0
    const hostile = {
      toString: () => (ran++, "x"),
      valueOf: () => (ran++, 1),
      [Symbol.toPrimitive]: () => (ran++, 1),
      get [Symbol.toStringTag]() {
        ran++
        return "X"
      },
    }
    const throwing = new Proxy({}, { get: () => { throw new Error("trap") }, getPrototypeOf: () => { throw new Error("trap") } })
    expect([show(hostile), show(throwing), show([1]), show(null), show(() => 1), show(Symbol("s")), show(12n), show(1.5), show(true), show(undefined)]).toEqual([
      "an object",
      "an object",
      "an array",
      "null",
      "a function",
      "a symbol",
      "12n",
      "1.5",
      "true",
      "undefined",
    ])
    expect(ran).toBe(0)
    expect(show("ab")).toBe('"ab"')
    expect(show("y".repeat(100))).toBe(JSON.stringify(`${"y".repeat(77)}...`))
  })

  // Known bug (reported, not fixed here): Array.isArray throws on a revoked Proxy, so show() and
  // readOptions() let a raw TypeError out. Remove `.fails` once they catch it.
  it("show of a revoked Proxy does not throw; readOptions refuses it with InvalidArgument", () => {
    const { proxy, revoke } = Proxy.revocable({}, {})
    revoke()
    expect(show(proxy)).toBe("an object")
    expect(() => readOptions("x", proxy, KEYS)).toThrow(InvalidArgument)
  })
})

describe("scalar and range checks", () => {
  it("numbers are type-checked before any arithmetic: a valueOf is never called", () => {
    let ran = 0
    const sneaky = { valueOf: () => (ran++, 1) }
    for (const check of [() => checkInt("n", sneaky), () => checkIntIn("n", sneaky, 0, 9), () => checkRange(sneaky, 1, 10), () => checkRange(0, sneaky, 10)]) expect(check).toThrow(InvalidArgument)
    expect(ran).toBe(0)
  })

  it("checkInt: safe non-negative integers; negative is OutOfBounds; NaN, fractions, huge and non-numbers InvalidArgument", () => {
    expect(checkInt("n", 0)).toBe(0)
    expect(checkInt("n", 2 ** 53 - 1)).toBe(2 ** 53 - 1)
    expect(() => checkInt("n", -1)).toThrow(OutOfBounds)
    for (const bad of [Number.NaN, 1.5, 2 ** 53, Number.POSITIVE_INFINITY, "1", 1n]) expect(() => checkInt("n", bad)).toThrow(InvalidArgument)
  })

  it("checkIntIn, checkBool, checkName", () => {
    expect(checkIntIn("n", 3, 2, 4)).toBe(3)
    for (const bad of [1, 5, 2.5, "3"]) expect(() => checkIntIn("n", bad, 2, 4)).toThrow(new InvalidArgument(`n must be an integer from 2 to 4, got ${show(bad)}`))
    expect(checkBool("b", false)).toBe(false)
    expect(() => checkBool("b", 0)).toThrow(InvalidArgument)
    expect(checkName("s", "a")).toBe("a")
    for (const bad of ["", 1, null]) expect(() => checkName("s", bad)).toThrow(InvalidArgument)
  })

  it("ranges: inside the space; the default length is the rest of the space; aligned where required", () => {
    expect(checkRange(0, 10, 10)).toBe(10)
    expect(checkRange(10, 0, 10)).toBe(0)
    expect(() => checkRange(5, 6, 10)).toThrow(OutOfBounds)
    expect(() => checkRange(11, 0, 10)).toThrow(OutOfBounds)
    expect(() => checkRange(2 ** 53 - 1, 2 ** 53 - 1, 10)).toThrow(OutOfBounds)
    expect(checkRangeToEnd(4, undefined, 10)).toBe(6)
    expect(() => checkRangeToEnd(11, undefined, 10)).toThrow(OutOfBounds)
    expect(() => checkRangeToEnd("4", undefined, 10)).toThrow(InvalidArgument)
    checkAlignedRange(512, 1024, 4096, 512)
    expect(() => checkAlignedRange(1, 512, 4096, 512)).toThrow(/page-aligned/)
    expect(() => checkAlignedRange(0, 100, 4096, 512)).toThrow(/multiple of the page size/)
    expect(() => checkAlignedRange(0, 8192, 4096, 512)).toThrow(OutOfBounds)
  })

  it("readStringArray reads the length and each element once; non-strings and throwing traps are InvalidArgument", () => {
    const gets: string[] = []
    const arr = new Proxy(["a", "b"], { get: (t, k, r) => (gets.push(String(k)), Reflect.get(t, k, r)) })
    expect(readStringArray("d", arr)).toEqual(["a", "b"])
    expect(gets.sort()).toEqual(["0", "1", "length"])
    expect(Object.isFrozen(readStringArray("d", ["x"]))).toBe(true)
    for (const bad of ["a", ["a", ""], ["a", 1], null]) expect(() => readStringArray("d", bad)).toThrow(InvalidArgument)
    const boom = new Error("boom")
    const e = thrown(() => readStringArray("d", new Proxy(["a"], { get: () => { throw boom } })))
    expect(e).toBeInstanceOf(InvalidArgument)
    expect((e as Error).cause).toBe(boom)
  })

  it("errorText takes an Error's own message without running getters; anything else is shown", () => {
    expect(errorText(new Error("m"))).toBe("m")
    const sneaky = new Error("x")
    Object.defineProperty(sneaky, "message", { get: () => { throw new Error("getter ran") } })
    expect(errorText(sneaky)).toBe("an object")
    expect(errorText("s")).toBe('"s"')
    expect(errorText(3)).toBe("3")
  })

  it("nearest picks the closest name, case-insensitively", () => {
    expect(nearest("PAGESIZE", KEYS)).toBe("pageSize")
    expect(nearest("maxmemorybyte", KEYS)).toBe("maxMemoryBytes")
    expect(nearest("x", [])).toBeUndefined()
  })
})
