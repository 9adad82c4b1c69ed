/**
 * sksm/effect: the Ksmd service, its layer from Config.schema, the loop fiber and its
 * interruption when the scope closes, typed errors at the boundary.
 */
import { readFileSync } from "node:fs"
import { dirname, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { ConfigProvider, Effect, Exit, Layer, Logger } from "effect"
import { describe, expect, it } from "vitest"
import { Ksmd, KsmdInvalidTunable, KsmdScanError, SksmEngine } from "../src/effect.ts"
import { _internals } from "../src/engine/engine.ts"
import { Engine } from "./helpers/internals.ts"

const PS = 4096

function engineWithDuplicates(pages = 16): Engine {
  const engine = new Engine()
  const a = engine.createSpace({ size: pages * PS })
  a.fill(0, a.size, 0x2a)
  a.advise(0, a.size, "mergeable")
  return engine
}

function layerFor(engine: Engine, provider: ConfigProvider.ConfigProvider) {
  return Ksmd.layer.pipe(Layer.provide(SksmEngine.fromEngine(engine)), Layer.provide(ConfigProvider.layer(provider)))
}

/** Poll until `cond` holds (bounded), sleeping in Effect time. */
const waitFor = (cond: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 2000 && !cond(); i++) yield* Effect.sleep("5 millis")
  })

describe("entry points", () => {
  it("src/index.ts never imports effect, directly or through any module it loads", () => {
    const root = fileURLToPath(new URL("../src/", import.meta.url))
    const seen = new Set<string>()
    const bad: string[] = []
    const visit = (file: string) => {
      if (seen.has(file)) return
      seen.add(file)
      const text = readFileSync(file, "utf8")
      for (const m of text.matchAll(/^\s*(?:import|export)\s[^"']*?["']([^"']+)["']/gm)) {
        const spec = m[1]!
        if (spec === "effect" || spec.startsWith("effect/") || spec.startsWith("@effect/")) bad.push(`${file}: ${spec}`)
        if (spec.startsWith(".")) visit(resolve(dirname(file), spec))
      }
    }
    visit(resolve(root, "index.ts"))
    expect(seen.size).toBeGreaterThan(5)
    expect(seen.has(resolve(root, "policy/scanner.ts"))).toBe(true)
    expect(bad).toEqual([])
  })
})

describe("Ksmd service", () => {
  it("builds from ConfigProvider.fromUnknown, runs its loop fiber, and merges", async () => {
    const engine = engineWithDuplicates()
    const provider = ConfigProvider.fromUnknown({ ksmd: { pagesToScan: 50, sleepMillis: 1 } })
    const result = await Effect.runPromise(
      Effect.gen(function*() {
        const ksmd = yield* Ksmd
        expect(ksmd.config).toMatchObject({ run: true, policy: "ksm", pagesToScan: 50, sleepMillis: 1, smartScan: true, advisorMode: "none" })
        expect((yield* ksmd.tunables).pagesToScan).toBe(50)
        expect(yield* ksmd.running).toBe(true)
        yield* waitFor(() => engine.stats().pagesSharing === 15)
        return { stats: yield* ksmd.stats, batches: yield* ksmd.batches }
      }).pipe(Effect.provide(layerFor(engine, provider))),
    )
    expect(result.stats.pagesSharing).toBe(15)
    expect(result.batches).toBeGreaterThanOrEqual(2) // 16 pages < pagesToScan: one batch per pass, two passes to merge
  })

  it('mode "worker": hashing on a worker thread, merged, the thread stopped with the scope (KSMD_MODE)', async () => {
    const engine = new Engine({ sharedMemory: true })
    const a = engine.createSpace({ size: 16 * PS })
    a.fill(0, a.size, 0x2a)
    a.advise(0, a.size, "mergeable")
    const provider = ConfigProvider.fromEnv({ env: { KSMD_MODE: "worker", KSMD_SLEEP_MILLIS: "1" } }).pipe(ConfigProvider.constantCase)
    let scanner: { running: boolean; close(): Promise<void> } | null = null
    const out = await Effect.runPromise(
      Effect.gen(function*() {
        const ksmd = yield* Ksmd
        scanner = ksmd.scanner as unknown as { running: boolean; close(): Promise<void> }
        yield* waitFor(() => engine.stats().pagesSharing === 15)
        return { mode: ksmd.mode, fallback: ksmd.fallback, sharing: engine.stats().pagesSharing }
      }).pipe(Effect.provide(layerFor(engine, provider))),
    )
    expect(out).toEqual({ mode: "worker", fallback: null, sharing: 15 })
    // The scope closed: the loop stopped and the thread was closed (close() is idempotent and already settled).
    expect(scanner!.running).toBe(false)
    await scanner!.close()
    expect(_internals(engine).scanner()!.hostHashes).toBe(0)
  })

  it('mode "worker" on an engine without sharedMemory: logs why and scans in thread', async () => {
    const engine = engineWithDuplicates()
    const logs: string[] = []
    const logger = Logger.make(({ message }) => void logs.push(String(message)))
    const out = await Effect.runPromise(
      Effect.gen(function*() {
        const ksmd = yield* Ksmd
        yield* waitFor(() => engine.stats().pagesSharing === 15)
        return { mode: ksmd.mode, fallback: ksmd.fallback }
      }).pipe(Effect.provide(layerFor(engine, ConfigProvider.fromUnknown({ ksmd: { mode: "worker", sleepMillis: 1 } }))), Effect.provide(Logger.layer([logger]))),
    )
    expect(out.mode).toBe("in-thread")
    expect(out.fallback).toMatch(/sharedMemory/)
    expect(logs.some((l) => l.includes("worker mode unavailable") && l.includes("sharedMemory"))).toBe(true)
  })

  it("the loop is interrupted when the layer's scope closes", async () => {
    const engine = engineWithDuplicates()
    const provider = ConfigProvider.fromUnknown({ ksmd: { sleepMillis: 1 } })
    await Effect.runPromise(
      Effect.gen(function*() {
        yield* Ksmd
        yield* waitFor(() => engine.stats().fullScans >= 3)
      }).pipe(Effect.provide(layerFor(engine, provider))),
    )
    const after = engine.stats().fullScans
    expect(after).toBeGreaterThanOrEqual(3)
    await new Promise((r) => setTimeout(r, 40))
    expect(engine.stats().fullScans).toBe(after)
  })

  it("reads the environment through ConfigProvider.fromEnv + constantCase (KSMD_* keys)", async () => {
    const engine = engineWithDuplicates()
    const provider = ConfigProvider.fromEnv({
      env: { KSMD_RUN: "false", KSMD_POLICY: "tracked", KSMD_PAGES_TO_SCAN: "7", KSMD_STABLE_PASSES: "1", KSMD_ADVISOR_TARGET_SCAN_TIME: "30" },
    }).pipe(ConfigProvider.constantCase)
    const out = await Effect.runPromise(
      Effect.gen(function*() {
        const ksmd = yield* Ksmd
        expect(yield* ksmd.running).toBe(false)
        const r = yield* ksmd.tick
        return { r, config: ksmd.config, policy: ksmd.scanner.policy, t: yield* ksmd.tunables }
      }).pipe(Effect.provide(layerFor(engine, provider))),
    )
    expect(out.config).toMatchObject({ run: false, policy: "tracked", pagesToScan: 7, stablePasses: 1, advisorTargetScanTime: 30 })
    expect(out.policy).toBe("tracked")
    expect(out.r.pagesToScan).toBe(7)
    expect(out.t.stablePasses).toBe(1)
  })

  it("bad configuration fails the layer with a ConfigError (values and the kernel's cross-field rules)", async () => {
    const bad = [
      { pagesToScan: -1 },
      { sleepMillis: "soon" },
      { advisorMode: "fast" },
      { advisorTargetScanTime: 0 },
      { advisorMode: "scan-time", pagesToScan: 5 },
      { policy: "ksm", stablePasses: 2 },
      { policy: "bogus" },
    ]
    for (const ksmd of bad) {
      const exit = await Effect.runPromiseExit(
        Effect.gen(function*() {
          yield* Ksmd
        }).pipe(Effect.provide(layerFor(new Engine(), ConfigProvider.fromUnknown({ ksmd })))),
      )
      expect(Exit.isFailure(exit), JSON.stringify(ksmd)).toBe(true)
      const err = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
      expect(err?._tag, JSON.stringify(ksmd)).toBe("Fail")
      expect(err && err._tag === "Fail" ? (err.error as { _tag: string })._tag : "", JSON.stringify(ksmd)).toBe("ConfigError")
    }
  })

  it("no ksmd key at all means kernel defaults", async () => {
    const t = await Effect.runPromise(
      Effect.gen(function*() {
        const ksmd = yield* Ksmd
        yield* ksmd.stop
        return yield* ksmd.tunables
      }).pipe(Effect.provide(layerFor(new Engine(), ConfigProvider.fromUnknown({})))),
    )
    expect(t).toMatchObject({ pagesToScan: 100, sleepMillis: 20, smartScan: true, advisorMode: "none", advisorTargetScanTime: 200 })
  })

  it("set() validates with typed errors; a new sleepMillis restarts the loop; stop/start", async () => {
    const engine = engineWithDuplicates()
    await Effect.runPromise(
      Effect.gen(function*() {
        const ksmd = yield* Ksmd
        const e = yield* ksmd.set({ pagesToScan: -3 }).pipe(Effect.flip)
        expect(e).toBeInstanceOf(KsmdInvalidTunable)
        expect(e._tag).toBe("KsmdInvalidTunable")
        const recovered = yield* ksmd.set({ advisorTargetScanTime: 0 }).pipe(
          Effect.catchTag("KsmdInvalidTunable", () => Effect.succeed("caught")),
        )
        expect(recovered).toBe("caught")
        // The first batch ran; the next one is a minute away...
        yield* waitFor(() => engine.stats().fullScans >= 1)
        const n = engine.stats().fullScans
        yield* Effect.sleep("20 millis")
        expect(engine.stats().fullScans).toBe(n)
        // ...until sleepMillis changes.
        yield* ksmd.set({ sleepMillis: 1 })
        yield* waitFor(() => engine.stats().fullScans >= n + 3)
        expect(engine.stats().fullScans).toBeGreaterThanOrEqual(n + 3)
        yield* ksmd.stop
        expect(yield* ksmd.running).toBe(false)
        const m = engine.stats().fullScans
        yield* Effect.sleep("20 millis")
        expect(engine.stats().fullScans).toBe(m)
        yield* ksmd.start
        yield* waitFor(() => engine.stats().fullScans >= m + 2)
        expect(yield* ksmd.running).toBe(true)
      }).pipe(Effect.provide(layerFor(engine, ConfigProvider.fromUnknown({ ksmd: { sleepMillis: 60_000 } })))),
    )
  })

  it("a failed batch is a KsmdScanError carrying the plain error's tag", async () => {
    const engine = engineWithDuplicates()
    const e = await Effect.runPromise(
      Effect.gen(function*() {
        const ksmd = yield* Ksmd
        engine.scanner() // a newer scanner detaches the service's one
        return yield* ksmd.tick.pipe(Effect.flip)
      }).pipe(Effect.provide(layerFor(engine, ConfigProvider.fromUnknown({ ksmd: { run: false } })))),
    )
    expect(e).toBeInstanceOf(KsmdScanError)
    expect(e.reason).toBe("ScannerDetached")
  })

  it("Ksmd.layerAt reads another key (SKSM_SCANNER_* in the environment)", async () => {
    const provider = ConfigProvider.fromEnv({ env: { SKSM_SCANNER_PAGES_TO_SCAN: "2000", SKSM_SCANNER_RUN: "false", KSMD_PAGES_TO_SCAN: "1" } }).pipe(
      ConfigProvider.constantCase,
    )
    const t = await Effect.runPromise(
      Effect.gen(function*() {
        return yield* (yield* Ksmd).tunables
      }).pipe(Effect.provide(Ksmd.layerAt(["sksm", "scanner"]).pipe(Layer.provide(SksmEngine.fromEngine(new Engine())), Layer.provide(ConfigProvider.layer(provider))))),
    )
    expect(t.pagesToScan).toBe(2000)
  })

  it("SksmEngine.layer builds a fresh engine", async () => {
    const stats = await Effect.runPromise(
      Effect.gen(function*() {
        const ksmd = yield* Ksmd
        return yield* ksmd.stats
      }).pipe(
        Effect.provide(Ksmd.layer.pipe(Layer.provide(SksmEngine.layer({ pageSize: 4096 })), Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ ksmd: { run: false } }))))),
      ),
    )
    expect(stats.pagesShared).toBe(0)
  })
})
