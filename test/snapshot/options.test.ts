/** The snapshot layer's input checks. */
import { describe, expect, it } from "vitest"
import { InvalidArgument } from "../../src/index.ts"
import { checkName, optBool, readOptions } from "../../src/snapshot/options.ts"

describe("options", () => {
  it("reads each key once into a frozen copy, refuses unknown keys and non-objects", () => {
    let reads = 0
    const o = readOptions("f()", { get a() { return ++reads } }, ["a", "b"])
    expect([o.a, o.a, reads, Object.isFrozen(o)]).toEqual([1, 1, 1, true])
    expect(readOptions("f()", undefined, ["a"])).toEqual({})
    for (const bad of [null, 1, "x", []]) expect(() => readOptions("f()", bad, ["a"])).toThrow(InvalidArgument)
    expect(() => readOptions("f()", { c: 1 }, ["a"])).toThrow(/unknown option "c"/)
  })

  it("checks booleans and snapshot names", () => {
    expect(optBool("f()", "x", undefined, true)).toBe(true)
    expect(() => optBool("f()", "x", 1, true)).toThrow(InvalidArgument)
    for (const ok of ["a", "A_b-1.2", "x".repeat(128)]) expect(checkName("f()", ok)).toBe(ok)
    for (const bad of ["", ".a", "-a", "a/b", "a b", "x".repeat(129), 5]) expect(() => checkName("f()", bad)).toThrow(InvalidArgument)
  })
})
