/**
 * sksm/effect: the background scanner as an Effect service. A separate entry point, so
 * that users who do not use Effect never load it (src/index.ts never imports this file).
 *
 * ```ts
 * import { Ksmd, SksmEngine } from "sksm/effect"
 * const program = Effect.gen(function*() {
 *   const ksmd = yield* Ksmd          // the loop already runs (ksmd.run defaults to true)
 *   yield* ksmd.set({ pagesToScan: 1000 })
 *   return yield* ksmd.stats
 * })
 * program.pipe(Effect.provide(Ksmd.layer), Effect.provide(SksmEngine.layer()), Effect.runPromise)
 * ```
 *
 * Configuration comes from `Config.schema(KsmdConfig, "ksmd")`: with
 * `ConfigProvider.fromUnknown({ ksmd: { pagesToScan: 500 } })`, or from the environment with
 * `ConfigProvider.fromEnv().pipe(ConfigProvider.constantCase)` as KSMD_RUN, KSMD_POLICY,
 * KSMD_PAGES_TO_SCAN, KSMD_SLEEP_MILLIS, KSMD_SMART_SCAN, KSMD_ADVISOR_MODE,
 * KSMD_ADVISOR_MAX_CPU, KSMD_ADVISOR_MIN_PAGES_TO_SCAN, KSMD_ADVISOR_MAX_PAGES_TO_SCAN,
 * KSMD_ADVISOR_TARGET_SCAN_TIME, KSMD_STABLE_PASSES, KSMD_RANGE_PAGES, KSMD_THRASH_UNSHARES,
 * KSMD_MAX_BACKOFF_PASSES, KSMD_MODE ("in-thread" or "worker": hashing on a worker thread, see
 * sksm/worker; the engine must then have sharedMemory, else the layer logs why and scans in
 * thread). Every key is optional (kernel defaults); invalid values, and
 * combinations the kernel rejects (pagesToScan with the advisor on, tracked-only keys with
 * policy "ksm"), fail the layer with a ConfigError.
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { Engine, type EngineOptions, type EngineStats, type Scanner, type ScannerOptions, type ScannerTunables, type ScanReport, SksmError } from "./index.ts"
import type { OptionSpec } from "./policy/options.ts"
import { DEFAULT_TUNABLES, POLICIES, POLICY_NAMES, type ScanPolicyName, validateScannerOptions } from "./policy/registry.ts"
import { startWorkerScanner } from "./worker/index.ts"

// ---------------------------------------------------------------- errors at the boundary

/** ksmd.set() was given a value the kernel would refuse (EINVAL), or the scanner was replaced. */
export class KsmdInvalidTunable extends Schema.TaggedError<KsmdInvalidTunable>()("KsmdInvalidTunable", {
  message: Schema.String,
}) {}

/** A batch failed: `reason` is the plain API's error tag (ScannerDetached, OutOfMemory, ...). */
export class KsmdScanError extends Schema.TaggedError<KsmdScanError>()("KsmdScanError", {
  reason: Schema.String,
  message: Schema.String,
}) {}

function reasonOf(e: unknown): { reason: string; message: string } {
  if (e instanceof SksmError) return { reason: e._tag, message: e.message }
  return { reason: "Defect", message: e instanceof Error ? e.message : String(e) }
}

// ---------------------------------------------------------------- configuration

const UInt = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 0xffffffff }))
const ULong = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const withDefault = <S extends Schema.Top>(s: S, value: S["Type"]) => s.pipe(Schema.withDecodingDefaultTypeKey(Effect.succeed(value)))

/** The schema of one policy option, from its spec in the policy registry. */
function optionField(spec: OptionSpec) {
  return spec.kind === "int" ? Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: spec.min, maximum: spec.max }))) : Schema.optionalKey(Schema.Boolean)
}

/** Every policy's own options as optional fields, derived from the registry (a new policy adds its keys here by itself). */
const POLICY_FIELDS: Record<string, ReturnType<typeof optionField>> = {}
for (const name of POLICY_NAMES) for (const [key, spec] of Object.entries(POLICIES[name].options as Record<string, OptionSpec>)) POLICY_FIELDS[key] = optionField(spec)

/**
 * The `ksmd` configuration: /sys/kernel/mm/ksm in camelCase, with the kernel's defaults and
 * validation, plus `run` (start the loop with the layer; default true, unlike the kernel's
 * run=0, because providing the layer is the request to run it), `policy` (any name of the
 * policy registry) and every policy's own options (derived from the registry).
 */
export const KsmdConfig = Schema.Struct({
  run: withDefault(Schema.Boolean, true),
  /** "worker": hash on a worker thread (sksm/worker; needs an engine with sharedMemory, else it falls back, logged). */
  mode: withDefault(Schema.Literals(["in-thread", "worker"]), "in-thread"),
  policy: withDefault(Schema.Literals(POLICY_NAMES as readonly [ScanPolicyName, ...ScanPolicyName[]]), POLICY_NAMES[0]!),
  pagesToScan: Schema.optionalKey(UInt),
  sleepMillis: withDefault(UInt, DEFAULT_TUNABLES.sleepMillis),
  smartScan: withDefault(Schema.Boolean, DEFAULT_TUNABLES.smartScan),
  advisorMode: withDefault(Schema.Literals(["none", "scan-time"]), "none"),
  advisorMaxCpu: withDefault(ULong, DEFAULT_TUNABLES.advisorMaxCpu),
  advisorMinPagesToScan: withDefault(ULong, DEFAULT_TUNABLES.advisorMinPagesToScan),
  advisorMaxPagesToScan: withDefault(ULong, DEFAULT_TUNABLES.advisorMaxPagesToScan),
  advisorTargetScanTime: withDefault(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)), DEFAULT_TUNABLES.advisorTargetScanTime),
  ...POLICY_FIELDS,
}).check(
  // The kernel's cross-field rules, by the library's own validation (one source of truth).
  Schema.makeFilter((c) => {
    try {
      validateScannerOptions(toOptions(c))
      return undefined
    } catch (e) {
      return e instanceof Error ? e.message : String(e)
    }
  }),
)

/** The decoded `ksmd` configuration. */
export type KsmdConfig = typeof KsmdConfig.Type

/** The configuration with no `ksmd` key at all: every default. */
export const KSMD_DEFAULTS: KsmdConfig = Schema.decodeUnknownSync(KsmdConfig)({})

/**
 * `Config.schema(KsmdConfig, path)`, defaulting to {@link KSMD_DEFAULTS} when the key is absent
 * (present but invalid is a ConfigError). With `fromEnv` + `constantCase`, path "ksmd" reads
 * KSMD_PAGES_TO_SCAN etc.; path ["sksm", "scanner"] reads SKSM_SCANNER_PAGES_TO_SCAN etc.
 */
export function ksmdConfig(path: string | readonly string[] = "ksmd"): Config.Config<KsmdConfig> {
  return Config.schema(KsmdConfig, typeof path === "string" ? path : [...path]).pipe(Config.withDefault(KSMD_DEFAULTS))
}

function toOptions(c: KsmdConfig): ScannerOptions {
  const { run: _run, mode: _mode, ...rest } = c
  return rest as ScannerOptions
}

// ---------------------------------------------------------------- services

/** The engine the scanner drives. Provide one with `SksmEngine.layer(options)` or `SksmEngine.fromEngine(engine)`. */
export class SksmEngine extends Context.Service<SksmEngine, Engine>()("sksm/Engine") {
  /** A new engine, built when the layer is. */
  static layer(options: EngineOptions = {}): Layer.Layer<SksmEngine> {
    return Layer.sync(SksmEngine, () => new Engine(options))
  }
  /** An engine you already have (shared with plain code). */
  static fromEngine(engine: Engine): Layer.Layer<SksmEngine> {
    return Layer.succeed(SksmEngine, engine)
  }
}

/** What the Ksmd service offers. */
export interface KsmdService {
  /** The plain scanner underneath (for reads; its start/stop are the plain loop, not this fiber). */
  readonly scanner: Scanner
  /** Where hashing runs: "worker" (a worker thread) or "in-thread" (configured so, or the worker mode fell back). */
  readonly mode: "worker" | "in-thread"
  /** Why the configured worker mode fell back to in-thread, or null. */
  readonly fallback: string | null
  /** The decoded configuration the layer was built from. */
  readonly config: KsmdConfig
  /** One batch now (ksmd.tick()). */
  readonly tick: Effect.Effect<ScanReport, KsmdScanError>
  /** Write tunables (kernel validation); a new sleepMillis restarts the loop with the new spacing at once. */
  readonly set: (tunables: ScannerTunables) => Effect.Effect<void, KsmdInvalidTunable>
  /** The tunables in force. */
  readonly tunables: Effect.Effect<Scanner["tunables"]>
  /** engine.stats(). */
  readonly stats: Effect.Effect<EngineStats>
  /** Batches the loop fiber has run. */
  readonly batches: Effect.Effect<number>
  /** Whether the loop fiber runs. */
  readonly running: Effect.Effect<boolean>
  /** Start the loop fiber (in the layer's scope) if it is not running. */
  readonly start: Effect.Effect<void>
  /** Interrupt the loop fiber (merges stay). */
  readonly stop: Effect.Effect<void>
}

/**
 * ksmd as a service. `Ksmd.layer` needs an {@link SksmEngine} and reads `Config.schema(KsmdConfig, "ksmd")`;
 * it creates the engine's scanner (`engine.scanner(config)`, so it replaces any earlier
 * scanner of that engine) and, with `run` (the default), forks the loop in the layer's scope:
 * `tick` repeated with `Schedule.spaced(sleepMillis)`. Closing the scope interrupts the loop;
 * the scanner itself stays attached to the engine, idle. With `mode: "worker"` the hashing thread
 * is started with the layer and stopped when its scope closes; where it cannot run, the layer
 * logs the reason (a warning) and scans on this thread. A failed batch ends the loop and is
 * logged (the error is a KsmdScanError).
 */
export class Ksmd extends Context.Service<Ksmd, KsmdService>()("sksm/Ksmd") {
  /** The layer, configured from the `ksmd` key (KSMD_* in the environment). */
  static readonly layer: Layer.Layer<Ksmd, Config.ConfigError, SksmEngine> = Ksmd.layerAt("ksmd")

  /** The layer, configured from another key: `Ksmd.layerAt(["sksm", "scanner"])` reads SKSM_SCANNER_*. */
  static layerAt(path: string | readonly string[]): Layer.Layer<Ksmd, Config.ConfigError, SksmEngine> {
    return Layer.effect(Ksmd, makeKsmd(ksmdConfig(path)))
  }
}

function makeKsmd(source: Config.Config<KsmdConfig>) {
  return Effect.gen(function*() {
    const config = yield* source
    const engine = yield* SksmEngine
    let fallback: string | null = null
    const scanner: Scanner =
      config.mode === "worker"
        ? yield* Effect.acquireRelease(
          Effect.promise(() => startWorkerScanner(engine, { ...toOptions(config), onFallback: (r) => void (fallback = r) })),
          (s) => Effect.promise(() => s.close()),
        )
        : engine.scanner(toOptions(config))
    if (fallback !== null) yield* Effect.logWarning(`ksmd: worker mode unavailable, scanning on this thread: ${fallback}`)
    const scope = yield* Effect.scope
    let batches = 0
    let fiber: Fiber.Fiber<unknown, unknown> | null = null
    // True from fork until the loop ends (interrupted, or a failed batch).
    let alive = false

    const tick = Effect.try({
      try: () => scanner.tick(),
      catch: (e) => new KsmdScanError(reasonOf(e)),
    })
    const loop = Effect.suspend(() =>
      tick.pipe(
        Effect.tap(() => Effect.sync(() => void batches++)),
        Effect.repeat(Schedule.spaced(Duration.millis(scanner.tunables.sleepMillis))),
        Effect.tapError((e) => Effect.logError(`ksmd loop stopped: ${e.reason}: ${e.message}`)),
        Effect.ensuring(Effect.sync(() => void (alive = false))),
      )
    )
    const stop = Effect.suspend(() => {
      const f = fiber
      fiber = null
      return f === null ? Effect.void : Fiber.interrupt(f)
    })
    const start = Effect.suspend(() => {
      if (alive) return Effect.void
      alive = true
      return Effect.forkIn(loop, scope).pipe(
        Effect.tap((f) => Effect.sync(() => void (fiber = f))),
        Effect.asVoid,
      )
    })
    const set = (t: ScannerTunables) =>
      Effect.gen(function*() {
        const before = scanner.tunables.sleepMillis
        yield* Effect.try({
          try: () => scanner.set(t),
          catch: (e) => new KsmdInvalidTunable({ message: e instanceof Error ? e.message : String(e) }),
        })
        // A write to sleep_millisecs wakes ksmd: restart the loop with the new spacing.
        if (scanner.tunables.sleepMillis !== before && alive) {
          yield* stop
          yield* start
        }
      })

    if (config.run) {
      alive = true
      fiber = yield* Effect.forkScoped(loop)
    }

    return Ksmd.of({
      scanner,
      mode: config.mode === "worker" && fallback === null ? "worker" : "in-thread",
      fallback,
      config,
      tick,
      set,
      tunables: Effect.sync(() => scanner.tunables),
      stats: Effect.sync(() => engine.stats()),
      batches: Effect.sync(() => batches),
      running: Effect.sync(() => alive),
      start,
      stop,
    })
  })
}
