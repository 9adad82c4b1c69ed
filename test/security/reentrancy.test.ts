/**
 * Reentrancy (issue 7): user code that runs while sksm is working, and loops racing each other.
 * Defined behaviour:
 * - the scanner's clock is called at tick start/end and at pass start/end, points where no
 *   page is half-processed: it may call the whole API (write, merge, fork, dispose, compact,
 *   engine.scanner() ...) and the tick completes consistently; a nested tick() throws Busy;
 * - an injected checksum runs mid-merge: every call into the engine from it throws Busy;
 * - start/stop/start in any order and any number of times leaves at most one loop running;
 * - Effect fibers interleave with a running Ksmd loop only between batches (a batch is
 *   synchronous), so concurrent fibers that write, merge, fork and dispose keep everything
 *   consistent.
 */
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import { afterEach, describe, expect, it, vi } from "vitest"
import type { AddressSpace } from "../helpers/internals.ts"
import { Ksmd, SksmEngine } from "../../src/effect.ts"
import { Engine, type EngineOptions } from "../helpers/internals.ts"
import type { ScanClock } from "../../src/policy/options.ts"
import { checkCounters } from "../helpers/recount.ts"
import { checkDomainIsolation, checkSecureInvariants } from "../helpers/security.ts"

const PS = 512

afterEach(() => {
  vi.useRealTimers()
})

interface World {
  engine: Engine
  spaces: AddressSpace[]
  ref: Map<AddressSpace, Uint8Array>
}

function world(options: EngineOptions = {}): World {
  const engine = new Engine({ pageSize: PS, slabBytes: 8 * PS, ...options })
  const w: World = { engine, spaces: [], ref: new Map() }
  for (let i = 0; i < 3; i++) addSpace(w, i)
  return w
}

function addSpace(w: World, seed: number): AddressSpace {
  const s = w.engine.createSpace({ size: 8 * PS, domain: `d${seed % 2}` })
  const r = new Uint8Array(s.size)
  for (let p = 0; p < s.pages; p++) r.fill((p + seed) % 3, p * PS, (p + 1) * PS)
  s.write(0, r)
  s.setMergeAny(true)
  w.spaces.push(s)
  w.ref.set(s, r)
  return s
}

function check(w: World): void {
  for (const s of w.spaces) expect(Buffer.compare(s.read(0, s.size), w.ref.get(s)!)).toBe(0)
  checkCounters(w.engine)
  checkDomainIsolation(w.engine)
  checkSecureInvariants(w.engine)
}

/** One API action chosen by `k`, applied to the world and its reference. */
function act(w: World, k: number): string {
  const s = w.spaces[k % Math.max(1, w.spaces.length)]
  switch (k % 9) {
    case 0:
      if (s !== undefined) {
        s.writeU32((k * 37) % (s.size - 4), k)
        new DataView(w.ref.get(s)!.buffer).setUint32((k * 37) % (s.size - 4), k, true)
      }
      return "write"
    case 1:
      s?.merge()
      return "merge"
    case 2:
      if (s !== undefined && w.spaces.length < 8) {
        const c = s.fork()
        w.spaces.push(c)
        w.ref.set(c, w.ref.get(s)!.slice())
      }
      return "fork"
    case 3:
      if (s !== undefined && w.spaces.length > 1) {
        s.dispose()
        w.spaces.splice(w.spaces.indexOf(s), 1)
        w.ref.delete(s)
      }
      return "dispose"
    case 4:
      w.engine.compact()
      return "compact"
    case 5:
      s?.unmerge()
      return "unmerge"
    case 6:
      if (w.spaces.length < 8) addSpace(w, k)
      return "create"
    case 7:
      if (s !== undefined) {
        s.discard(PS, PS)
        w.ref.get(s)!.fill(0, PS, 2 * PS)
      }
      return "discard"
    default:
      w.engine.unmergeAll()
      return "unmergeAll"
  }
}

describe("scanner clock callbacks calling the API mid-tick", () => {
  for (const policy of ["ksm", "tracked"] as const) {
    for (const secure of [false, true]) {
      it(`${policy}${secure ? ", secure" : ""}: every API call from the clock leaves a consistent engine`, () => {
        const w = world(secure ? { secure: true, idlePasses: 0 } : {})
        let calls = 0
        const done: string[] = []
        let inside = false
        const clock: ScanClock = {
          wallMillis: () => {
            // Pass start/end (advisor on): call the API from inside the tick.
            if (!inside) {
              inside = true
              try {
                done.push(act(w, calls++))
              } finally {
                inside = false
              }
            }
            return calls * 10
          },
          cpuMicros: () => calls,
        }
        const ksmd = w.engine.scanner({ policy, clock, advisorMode: "scan-time", ...(policy === "tracked" ? { stablePasses: 1 } : {}) })
        let passes = 0
        for (let t = 0; t < 120; t++) {
          if (ksmd.tick().fullScan) passes++
          check(w)
        }
        expect(calls).toBeGreaterThan(20)
        expect(new Set(done).size).toBe(9)
        expect(passes).toBeGreaterThan(5)
      })
    }
  }

  it("a nested tick() from the clock throws Busy and leaves the outer tick intact", () => {
    const w = world()
    let ksmdRef: { tick(): unknown } | null = null
    const errors: unknown[] = []
    const clock: ScanClock = {
      wallMillis: () => 0,
      cpuMicros: () => {
        try {
          ksmdRef?.tick()
        } catch (e) {
          errors.push(e)
        }
        return 0
      },
    }
    const ksmd = w.engine.scanner({ policy: "ksm", clock })
    ksmdRef = ksmd
    for (let t = 0; t < 10; t++) ksmd.tick()
    expect(errors.length).toBe(20)
    for (const e of errors) expect(e).toMatchObject({ _tag: "Busy" })
    expect(w.engine.stats().fullScans).toBeGreaterThan(0)
    check(w)
  })

  it("engine.scanner() from the clock detaches the running scanner: its tick completes, later calls throw ScannerDetached", () => {
    const w = world()
    let replaced = false
    let readings = 0
    const clock: ScanClock = {
      wallMillis: () => 0,
      cpuMicros: () => {
        // Readings 1 and 2 open and close the first tick; reading 3 opens the second.
        if (++readings === 3) {
          replaced = true
          w.engine.scanner({ policy: "tracked" })
        }
        return 0
      },
    }
    const ksmd = w.engine.scanner({ policy: "ksm", clock, pagesToScan: 5 })
    ksmd.tick()
    expect(replaced).toBe(false)
    expect(() => ksmd.tick()).not.toThrow() // replaced at this tick's opening reading: the tick completes
    expect(replaced).toBe(true)
    expect(() => ksmd.tick()).toThrow(expect.objectContaining({ _tag: "ScannerDetached" }))
    check(w)
  })

  it("dispose() of the space under the cursor, from the clock, mid-pass", () => {
    const w = world()
    // The scanner reads the clock's functions once, at creation: the hook changes behind them.
    let onReading = (): void => {}
    const clock: ScanClock = {
      wallMillis: () => 0,
      cpuMicros: () => {
        onReading()
        return 0
      },
    }
    const ksmd = w.engine.scanner({ policy: "ksm", clock, pagesToScan: 3 })
    ksmd.tick() // the cursor is now inside the first space
    const victim = w.spaces[0]!
    onReading = () => {
      if (!victim.disposed) {
        victim.dispose()
        w.spaces.splice(w.spaces.indexOf(victim), 1)
        w.ref.delete(victim)
      }
    }
    for (let t = 0; t < 30; t++) ksmd.tick()
    expect(victim.disposed).toBe(true)
    expect(ksmd.rmapItemsOf(victim)).toBe(0)
    check(w)
  })
})

describe("an injected checksum calling the engine mid-merge", () => {
  it("every call that may change state throws Busy from inside it; the merge completes consistently", () => {
    let engine: Engine | null = null
    let space: AddressSpace | null = null
    const seen: string[] = []
    // (A write to a page that is still writable takes no fault and goes through: harmless, the
    // page is not in the table. Page 0 is write-protected from the first callback on.)
    const attempts: (() => unknown)[] = [
      () => space!.writeU32(4, 1),
      () => space!.merge(),
      () => space!.discard(0, PS),
      () => space!.dispose(),
      () => space!.fork(),
      () => engine!.createSpace({ size: PS }),
      () => engine!.compact(),
      () => engine!.unmergeAll(),
      () => space!.read(0, 4),
    ]
    let i = 0
    const checksum = (p: Uint8Array): number => {
      if (space === null) return p[0]! // the engine's constructor keys the zero page
      const f = attempts[i++ % attempts.length]!
      try {
        f()
        seen.push("ok")
      } catch (e) {
        seen.push((e as { _tag?: string })._tag ?? String(e))
      }
      return p[0]!
    }
    engine = new Engine({ pageSize: PS, checksum })
    space = engine.createSpace({ size: 4 * PS })
    space.fill(0, space.size, 5)
    space.writeU32(3 * PS + 8, 7) // one page differs
    const r = space.merge()
    expect(r.merged + r.inserted).toBe(4)
    expect(seen.length).toBeGreaterThanOrEqual(4)
    expect(seen).toEqual(seen.map(() => "Busy"))
    checkCounters(engine)
    // After the merge the engine is usable again.
    space.writeU32(0, 1)
    expect(engine.createSpace({ size: PS }).size).toBe(PS)
  })
})

describe("start/stop/start races", () => {
  it("start, start, stop, start, stop, start in one turn: exactly one loop runs", async () => {
    vi.useFakeTimers()
    const w = world()
    const ksmd = w.engine.scanner({ policy: "ksm", sleepMillis: 10, pagesToScan: 1 })
    const tick = vi.spyOn(ksmd, "tick")
    ksmd.start()
    ksmd.start()
    await ksmd.stop()
    ksmd.start()
    void ksmd.stop()
    ksmd.start()
    expect(ksmd.running).toBe(true)
    await vi.advanceTimersByTimeAsync(1000)
    // One loop: a batch at 0 ms, then every 10 ms: 101 batches (two loops would give ~200).
    expect(tick.mock.calls.length).toBeGreaterThanOrEqual(95)
    expect(tick.mock.calls.length).toBeLessThanOrEqual(102)
    await ksmd.stop()
    const n = tick.mock.calls.length
    await vi.advanceTimersByTimeAsync(1000)
    expect(tick.mock.calls.length).toBe(n)
    check(w)
  })

  it("stop() from inside a tick (the clock) ends the loop after that batch; start() there is a no-op", async () => {
    vi.useFakeTimers()
    const w = world()
    let ticks = 0
    let ksmdRef: { stop(): Promise<void>; start(): void } | null = null
    const clock: ScanClock = {
      wallMillis: () => 0,
      cpuMicros: () => {
        ticks++
        if (ticks === 10) {
          ksmdRef?.start()
          void ksmdRef?.stop()
        }
        return 0
      },
    }
    const ksmd = w.engine.scanner({ policy: "ksm", clock, sleepMillis: 5 })
    ksmdRef = ksmd
    ksmd.start()
    await vi.advanceTimersByTimeAsync(500)
    expect(ksmd.running).toBe(false)
    expect(ticks).toBeLessThanOrEqual(12) // the batch that stopped it finished (2 clock reads per tick)
    check(w)
  })

  it("a loop whose batch throws stops, and the next stop() rejects with that error; start() again works", async () => {
    vi.useFakeTimers()
    const w = world()
    let fail = true
    const clock: ScanClock = {
      wallMillis: () => 0,
      cpuMicros: () => {
        if (fail) throw new Error("clock broke")
        return 0
      },
    }
    const ksmd = w.engine.scanner({ policy: "ksm", clock, sleepMillis: 5 })
    ksmd.start()
    await vi.advanceTimersByTimeAsync(20)
    expect(ksmd.running).toBe(false)
    await expect(ksmd.stop()).rejects.toThrow("clock broke")
    fail = false
    ksmd.start()
    await vi.advanceTimersByTimeAsync(50)
    expect(ksmd.running).toBe(true)
    await ksmd.stop()
    check(w)
  })

  it("disposing every space while the loop runs, then the engine's scanner replaced: no error, nothing leaks", async () => {
    vi.useFakeTimers()
    const w = world()
    const ksmd = w.engine.scanner({ policy: "tracked", sleepMillis: 1, stablePasses: 1 })
    ksmd.start()
    await vi.advanceTimersByTimeAsync(20)
    for (const s of [...w.spaces]) s.dispose()
    w.spaces = []
    await vi.advanceTimersByTimeAsync(20)
    const next = w.engine.scanner({ policy: "ksm" })
    expect(ksmd.running).toBe(false)
    await expect(ksmd.stop()).resolves.toBeUndefined()
    next.tick()
    expect(w.engine.memory().framesInUse).toBe(0)
    expect(w.engine.core.table.size).toBe(0)
  })
})

describe("Effect fibers and the Ksmd loop", () => {
  it("fibers writing, merging, forking and disposing while the Ksmd fiber scans keep the engine consistent", async () => {
    const w = world({ secure: true, idlePasses: 0 })
    const layer = Ksmd.layer.pipe(
      Layer.provide(SksmEngine.fromEngine(w.engine)),
      Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ ksmd: { pagesToScan: 7, sleepMillis: 0 } }))),
    )
    let actions = 0
    const mutator = (offset: number) =>
      Effect.gen(function* () {
        for (let i = 0; i < 60; i++) {
          act(w, offset + i * 2)
          actions++
          yield* Effect.yieldNow
        }
      })
    const program = Effect.gen(function* () {
      const ksmd = yield* Ksmd
      const a = yield* Effect.forkChild(mutator(0))
      const b = yield* Effect.forkChild(mutator(1))
      yield* Fiber.join(a)
      yield* Fiber.join(b)
      yield* Effect.sleep("20 millis")
      return yield* ksmd.batches
    })
    const batches = await Effect.runPromise(Effect.scoped(program.pipe(Effect.provide(layer))))
    expect(actions).toBe(120)
    expect(batches).toBeGreaterThan(0)
    check(w)
  })
})
