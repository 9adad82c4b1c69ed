/**
 * The scanner's tunables (src/policy/options.ts): the kernel's defaults and validation,
 * pagesToScan under the advisor, and a refused engine.scanner() call leaving the previous
 * scanner attached.
 */
import { describe, expect, it } from "vitest"
import { InvalidArgument } from "../../src/errors.ts"
import { Engine } from "../helpers/internals.ts"

describe("tunables: kernel defaults and validation", () => {
  it("defaults are the kernel's", () => {
    const ksmd = new Engine().scanner()
    expect(ksmd.policy).toBe("ksm")
    expect(ksmd.tunables).toMatchObject({
      pagesToScan: 100,
      sleepMillis: 20,
      smartScan: true,
      advisorMode: "none",
      advisorMaxCpu: 70,
      advisorMinPagesToScan: 500,
      advisorMaxPagesToScan: 30000,
      advisorTargetScanTime: 200,
    })
    expect(new Engine().scanner({ policy: "tracked" }).tunables).toMatchObject({ stablePasses: 2, thrashUnshares: 2, maxBackoffPasses: 64 })
  })

  it("pagesToScan is rejected while the advisor runs; switching the advisor resets it as the kernel does", () => {
    const ksmd = new Engine().scanner({ pagesToScan: 1234 })
    ksmd.set({ advisorMode: "scan-time" })
    expect(ksmd.tunables.pagesToScan).toBe(500) // advisor_min_pages_to_scan
    expect(() => ksmd.set({ pagesToScan: 10 })).toThrow(InvalidArgument)
    expect(ksmd.tunables.pagesToScan).toBe(500)
    ksmd.set({ advisorMode: "scan-time" }) // no change: no reset
    expect(ksmd.tunables.pagesToScan).toBe(500)
    ksmd.set({ advisorMode: "none" })
    expect(ksmd.tunables.pagesToScan).toBe(100) // DEFAULT_PAGES_TO_SCAN
    ksmd.set({ pagesToScan: 10 })
    expect(ksmd.tunables.pagesToScan).toBe(10)
    // Switching the advisor off and setting pagesToScan in one call works (mode first).
    ksmd.set({ advisorMode: "scan-time", advisorMinPagesToScan: 700 })
    expect(ksmd.tunables.pagesToScan).toBe(700)
    ksmd.set({ advisorMode: "none", pagesToScan: 42 })
    expect(ksmd.tunables.pagesToScan).toBe(42)
    expect(() => new Engine().scanner({ advisorMode: "scan-time", pagesToScan: 5 })).toThrow(InvalidArgument)
  })

  it("rejects out-of-domain values and changes nothing", () => {
    const ksmd = new Engine().scanner()
    const before = ksmd.tunables
    const bad: Record<string, unknown>[] = [
      { advisorTargetScanTime: 0 },
      { advisorMode: "fast" },
      { pagesToScan: -1 },
      { pagesToScan: 2 ** 32 },
      { pagesToScan: 1.5 },
      { sleepMillis: "20" },
      { smartScan: 1 },
      { advisorMaxCpu: -1 },
      { pageToScan: 10 },
      { policy: "tracked" },
      { stablePasses: 3 }, // tracked only
      { sleepMillis: 5, advisorTargetScanTime: 0 }, // all-or-nothing
    ]
    for (const t of bad) expect(() => ksmd.set(t as never), JSON.stringify(t)).toThrow(InvalidArgument)
    expect(ksmd.tunables).toEqual(before)
    expect(() => new Engine().scanner({ policy: "nope" as never })).toThrow(InvalidArgument)
    expect(() => new Engine().scanner({ rangePages: 8 })).toThrow(InvalidArgument)
    const tracked = new Engine().scanner({ policy: "tracked" })
    expect(() => tracked.set({ stablePasses: 0 })).toThrow(InvalidArgument)
    expect(() => tracked.set({ rangePages: 8 } as never)).toThrow(InvalidArgument)
    tracked.set({ stablePasses: 3, advisorTargetScanTime: 1, advisorMaxCpu: 500 })
    expect(tracked.tunables).toMatchObject({ stablePasses: 3, advisorTargetScanTime: 1, advisorMaxCpu: 500 })
  })

  it("an invalid engine.scanner() call leaves the previous scanner attached", () => {
    const engine = new Engine()
    const ksmd = engine.scanner()
    expect(() => engine.scanner({ pagesToScan: -5 })).toThrow(InvalidArgument)
    expect(ksmd.detached).toBe(false)
    expect(() => ksmd.tick()).not.toThrow()
  })
})
