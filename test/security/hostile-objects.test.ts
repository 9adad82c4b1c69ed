/**
 * Regression tests for the hostile inputs a generated sweep of every public call found (issue
 * 10): arguments that ran the caller's code, byte arrays that lied about themselves, options
 * read again after validation, untrusted clock readings, a flood of near-identical pages
 * hiding a known page, and internal constructors reachable from outside. Each case must end in
 * a typed error (or a correct result) having changed nothing it should not.
 */
import { describe, expect, it } from "vitest"
import { SksmError } from "../../src/errors.ts"
import { MergeableSpace } from "../../src/space/mergeable-space.ts"
import { KsmScanner } from "../../src/policy/ksm.ts"
import * as api from "../../src/index.ts"
import { type AddressSpace, Engine } from "../helpers/internals.ts"
import { checkCounters } from "../helpers/recount.ts"

const PS = 4096

function typed(fn: () => unknown, tag: string): SksmError {
  try {
    fn()
  } catch (e) {
    expect(e).toBeInstanceOf(SksmError)
    expect((e as SksmError)._tag).toBe(tag)
    return e as SksmError
  }
  throw new Error("expected a throw")
}

/** Everything a failed call must leave as it was. */
function state(engine: Engine): unknown {
  return {
    stats: engine.stats(),
    memory: { ...engine.memory(), compaction: undefined },
    spaces: engine.spaces().map((s) => ({ disposed: s.disposed, bytes: Array.from(s.read(0, s.size)), stat: s.ksmStat() })),
  }
}

function world(): { engine: Engine; a: AddressSpace; b: AddressSpace } {
  const engine = new Engine({ autoCompact: false })
  const a = engine.createSpace({ size: 4 * PS, domain: "one" })
  const b = engine.createSpace({ size: 4 * PS, domain: "two" })
  a.fill(0, 2 * PS, 7)
  b.fill(0, 4 * PS, 9)
  return { engine, a, b }
}

describe("range arguments never run the caller's code", () => {
  it("merge(addr) / unmerge(addr) with the length left out refuse BigInt, Symbol and valueOf objects with a typed error", () => {
    const { engine, a } = world()
    const before = state(engine)
    let called = 0
    const evil = {
      valueOf(): number {
        called++
        throw new Error("caller code ran")
      },
    }
    for (const bad of [1n, Symbol("s"), evil, "1", null]) {
      typed(() => a.merge(bad as never), "InvalidArgument")
      typed(() => a.unmerge(bad as never), "InvalidArgument")
    }
    expect(called).toBe(0)
    expect(state(engine)).toEqual(before)
    a.dispose()
    typed(() => a.unmerge(evil as never), "SpaceDisposed")
    expect(called).toBe(0)
  })

  it("an empty range that is not page-aligned merges and unmerges nothing", () => {
    const { engine, a } = world()
    const r = a.merge(100, 0)
    expect(r.scanned).toBe(0)
    expect(engine.stats().pagesUnique + engine.stats().ksmZeroPages).toBe(0)
    a.merge()
    const merged = engine.stats()
    expect(a.unmerge(100, 0)).toBe(0)
    expect(a.unmerge(PS + 5, 0)).toBe(0)
    expect(engine.stats()).toEqual(merged)
    checkCounters(engine)
  })
})

describe("byte arrays are read through the intrinsic accessors", () => {
  it("a lying length cannot make write() read past the caller's bytes (or freed memory of another domain)", () => {
    const { engine, a, b } = world()
    const victim = engine.createSpace({ size: PS, domain: "other" })
    victim.fill(0, PS, 0xee)
    victim.dispose()
    const small = new Uint8Array(16).fill(1)
    Object.defineProperty(small, "length", { value: 3 * PS })
    a.write(0, small)
    expect(Array.from(a.read(0, 20))).toEqual([...Array(16).fill(1), 7, 7, 7, 7])
    expect(a.read(16, PS).includes(0xee)).toBe(false)
    expect(b.readU8(0)).toBe(9)
    checkCounters(engine)
  })

  it("a lying subarray is never called: write() cannot overwrite another space's frames", () => {
    const { engine, a, b } = world()
    let called = 0
    const bytes = new Uint8Array(8).fill(3)
    Object.defineProperty(bytes, "subarray", {
      value: () => {
        called++
        return new Uint8Array(PS).fill(0x66)
      },
    })
    a.write(PS - 4, bytes)
    expect(called).toBe(0)
    expect(Array.from(a.read(PS - 4, 8))).toEqual(Array(8).fill(3))
    expect(b.read(0, 4 * PS).every((x) => x === 9)).toBe(true)
    checkCounters(engine)
  })

  it("a length getter that changes between reads cannot leak frames", () => {
    const { engine, a } = world()
    const bytes = new Uint8Array(2 * PS).fill(5)
    let reads = 0
    Object.defineProperty(bytes, "length", {
      get: () => {
        reads++
        return reads === 1 ? 8 : 4 * PS
      },
    })
    a.write(2 * PS, bytes)
    expect(reads).toBe(0)
    a.dispose()
    const held = engine.memory().framesInUse
    engine.spaces().forEach((s) => s.dispose())
    expect(held).toBeGreaterThan(0)
    expect(engine.memory().framesInUse).toBe(0)
  })

  it("Object.create(Uint8Array.prototype) and a Proxy of a Uint8Array are InvalidArgument, not raw TypeErrors", () => {
    const { engine, a } = world()
    const before = state(engine)
    const fake = Object.create(Uint8Array.prototype) as Uint8Array
    let trapped = 0
    const proxy = new Proxy(new Uint8Array(8), {
      get(t, k) {
        trapped++
        return Reflect.get(t, k)
      },
    })
    for (const bad of [fake, proxy]) {
      typed(() => a.write(0, bad), "InvalidArgument")
      typed(() => a.readInto(0, bad), "InvalidArgument")
    }
    expect(trapped).toBe(0)
    expect(state(engine)).toEqual(before)
  })

  it("readInto() fills exactly the caller's real bytes, whatever its length property says", () => {
    const { a } = world()
    const buf = new Uint8Array(32)
    const target = buf.subarray(8, 16)
    Object.defineProperty(target, "length", { value: 32 })
    a.readInto(0, target)
    expect(Array.from(buf)).toEqual([...Array(8).fill(0), ...Array(8).fill(7), ...Array(16).fill(0)])
  })

  it("read() larger than one typed array can be is a typed OutOfMemory naming the limit", () => {
    const engine = new Engine()
    const big = engine.createSpace({ size: 2 ** 33 })
    const e = typed(() => big.read(0, 2 ** 33), "OutOfMemory")
    expect(e.message).toMatch(/8589934592/)
    expect(e.message).toMatch(/readInto/)
    big.dispose()
  })
})

describe("options are read exactly once into a validated snapshot", () => {
  /** An options object whose `key` returns `first` on the first read and `later` afterwards; counts reads. */
  function flipping<T extends object>(base: T, key: string, first: unknown, later: unknown): { options: T; reads: () => number } {
    let n = 0
    const options = { ...base }
    Object.defineProperty(options, key, {
      enumerable: true,
      get: () => (n++ === 0 ? first : later),
    })
    return { options, reads: () => n }
  }

  it("createSpace: a domain getter cannot put a non-secure space into a secure domain; a name cannot become a Symbol", () => {
    const engine = new Engine({ secureDomains: ["vault"] })
    const d = flipping({ size: PS }, "domain", "vault", "plain")
    const s = engine.createSpace(d.options as never)
    expect(d.reads()).toBe(1)
    expect(s.domain).toBe("vault")
    expect(s.secure).toBe(true)
    const n = flipping({ size: PS }, "name", "ok", Symbol("x"))
    const t = engine.createSpace(n.options as never)
    expect(n.reads()).toBe(1)
    expect(t.name).toBe("ok")
  })

  it("new Engine: a checksum getter cannot swap in a non-function; secureDomains elements are read once", () => {
    let elementReads = 0
    const domains = new Proxy(["vault"], {
      get(t, k, r) {
        if (k === "0") elementReads++
        return Reflect.get(t, k, r)
      },
    })
    const c = flipping({ secureDomains: domains }, "checksum", () => 1, 42)
    const engine = new Engine(c.options as never)
    expect(c.reads()).toBe(1)
    expect(elementReads).toBe(1)
    const s = engine.createSpace({ size: 2 * PS })
    s.fill(0, 2 * PS, 3)
    expect(s.merge().merged).toBe(1)
    expect(engine.createSpace({ size: PS, domain: "vault" }).secure).toBe(true)
  })

  it("engine.scanner / set: a smartScan getter cannot store a Symbol in the tunables", () => {
    const engine = new Engine()
    const o = flipping({ policy: "ksm" }, "smartScan", false, Symbol("s"))
    const ksmd = engine.scanner(o.options as never)
    expect(o.reads()).toBe(1)
    expect(ksmd.tunables.smartScan).toBe(false)
    const t = flipping({}, "smartScan", true, Symbol("s"))
    ksmd.set(t.options)
    expect(t.reads()).toBe(1)
    expect(ksmd.tunables.smartScan).toBe(true)
  })

  it("a throwing getter or Proxy trap becomes InvalidArgument with the caller's error as cause, and nothing changes", () => {
    const { engine, a } = world()
    const before = state(engine)
    const boom = new Error("boom")
    const getterThrows = Object.defineProperty({ size: PS }, "name", { enumerable: true, get: () => { throw boom } })
    const e = typed(() => engine.createSpace(getterThrows as never), "InvalidArgument")
    expect((e as Error & { cause?: unknown }).cause).toBe(boom)
    const trapThrows = new Proxy({}, { ownKeys: () => { throw boom } })
    typed(() => new Engine(trapThrows), "InvalidArgument")
    typed(() => a.pagemapScan(trapThrows as never), "InvalidArgument")
    typed(() => engine.compact(trapThrows as never), "InvalidArgument")
    expect(state(engine)).toEqual(before)
  })

  it("every options object refuses an unknown key, naming it and the nearest valid one", () => {
    const engine = new Engine()
    const s = engine.createSpace({ size: PS })
    const ksmd = engine.scanner()
    const cases: [() => unknown, string, string][] = [
      [() => new Engine({ pagesize: 4096 } as never), "pagesize", "pageSize"],
      [() => engine.createSpace({ sizee: PS } as never), "sizee", "size"],
      [() => engine.scanner({ pagesToscan: 5 } as never), "pagesToscan", "pagesToScan"],
      [() => ksmd.set({ sleepMilis: 5 } as never), "sleepMilis", "sleepMillis"],
      [() => s.pagemapScan({ start: 0, end: PS, returnMask: 0, wpMatchin: true } as never), "wpMatchin", "wpMatching"],
      [() => engine.compact({ budget: 1 } as never), "budget", "budgetPages"],
      [() => engine.setAutoCompact({ enable: true } as never), "enable", "enabled"],
    ]
    for (const [call, key, nearest] of cases) {
      const e = typed(call, "InvalidArgument")
      expect(e.message).toContain(`unknown option '${key}'`)
      expect(e.message).toContain(`did you mean '${nearest}'?`)
    }
    const own = typed(() => engine.scanner({ policy: "ksm", stablePasses: 2 } as never), "InvalidArgument")
    expect(own.message).toContain('applies to the "tracked" policy only')
  })
})

describe("scanner clock readings are untrusted", () => {
  function scanning(clock: { wallMillis(): unknown; cpuMicros(): unknown }, advisor = true) {
    const engine = new Engine()
    const s = engine.createSpace({ size: 16 * PS })
    s.fill(0, 16 * PS, 4)
    s.setMergeAny(true)
    const ksmd = engine.scanner({ policy: "ksm", clock: clock as never, ...(advisor ? { advisorMode: "scan-time" as const } : { pagesToScan: 4 }) })
    return { engine, ksmd }
  }

  it("a reading that is NaN, Infinity, a string, undefined or a BigInt at the start of a tick is InvalidArgument before anything changes", () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, "5", undefined, 5n]) {
      let cpu: unknown = 0
      const { engine, ksmd } = scanning({ wallMillis: () => 0, cpuMicros: () => cpu })
      ksmd.tick()
      const before = engine.stats()
      cpu = bad
      typed(() => ksmd.tick(), "InvalidArgument")
      expect(engine.stats()).toEqual(before)
      expect(Number.isSafeInteger(ksmd.tunables.pagesToScan)).toBe(true)
    }
  })

  it("bad wall-clock readings never reach pagesToScan: the advisor skips the pass and the scanner keeps scanning", () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, "x", undefined, 1n]) {
      let wall: unknown = 0
      const { engine, ksmd } = scanning({ wallMillis: () => wall, cpuMicros: () => 0 })
      wall = bad
      for (let i = 0; i < 5; i++) ksmd.tick()
      expect(Number.isSafeInteger(ksmd.tunables.pagesToScan)).toBe(true)
      const scanned = engine.stats().pagesScanned
      ksmd.tick()
      expect(engine.stats().pagesScanned).toBeGreaterThan(scanned)
    }
  })

  it("a clock that throws at the end of a tick leaves the tick's merges counted in pagesScanned", () => {
    let n = 0
    const { engine, ksmd } = scanning(
      {
        wallMillis: () => 0,
        cpuMicros: () => {
          if (n++ % 2 === 1) throw new Error("clock broke")
          return 0
        },
      },
      false,
    )
    const r = ksmd.tick()
    expect(r.scanned).toBe(4)
    expect(r.cpuMicros).toBe(0)
    expect(engine.stats().pagesScanned).toBe(4)
    checkCounters(engine)
  })
})

describe("denial of dedup: a flood of near-identical pages cannot hide a known page", () => {
  /** 200 distinct pages that all share the known page's table key (a colliding key stands in for a flood built from the sample positions). */
  function flood(engine: Engine): void {
    const f = engine.createSpace({ size: 200 * PS })
    for (let i = 0; i < 200; i++) {
      f.fill(i * PS, PS, 0x41)
      f.writeU32(i * PS + 8, i + 1)
    }
    f.merge()
  }
  function page(engine: Engine): AddressSpace {
    const s = engine.createSpace({ size: PS })
    s.fill(0, PS, 0x41)
    return s
  }
  for (const secure of [false, true]) {
    for (const order of ["known, flood, copy", "flood, known, copy"]) {
      it(`the copy merges with the known page (${order}; ${secure ? "secure" : "default"} mode)`, () => {
        const engine = new Engine({ checksum: () => 7, secure, idlePasses: 0, autoCompact: false })
        if (order.startsWith("flood")) flood(engine)
        page(engine).merge()
        if (order.startsWith("known")) flood(engine)
        const r = page(engine).merge()
        expect(r.merged).toBe(1)
        expect(engine.stats().pagesSharing).toBe(1)
        // Bounded work all the same: no lookup compared more than two levels' worth of entries.
        expect(engine.core.lookupCompares).toBeLessThanOrEqual(202 * 2 * engine.core.maxCandidates)
        checkCounters(engine)
      })
    }
  }
})

describe("internal constructors cannot be reached from outside", () => {
  it("the public API exports no space or scanner class to construct", () => {
    expect("AddressSpace" in api).toBe(false)
    expect("KsmScanner" in api).toBe(false)
    expect("TrackedScanner" in api).toBe(false)
  })

  it("constructing a space or a scanner directly is a typed error, and leaves no untracked space", () => {
    const engine = new Engine()
    typed(() => new MergeableSpace(undefined as never, { size: PS, name: undefined, domain: "default" }), "InvalidArgument")
    const host = { pool: engine.pool, core: engine.core } as never
    typed(() => new MergeableSpace(host, { size: PS, name: undefined, domain: "default" }), "InvalidArgument")
    expect(engine.spaces()).toEqual([])
    expect(() => new KsmScanner(undefined as never, undefined as never)).toThrow()
  })
})
