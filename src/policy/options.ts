/**
 * The scanner's common tunables (/sys/kernel/mm/ksm/*), their kernel defaults and the kernel's
 * validation, the small spec language a policy declares its own options in, the clock, and the
 * report of one batch. Cold code: plain and explicit. The registry (registry.ts) joins these
 * with every policy's own options.
 */
import { InvalidArgument } from "../errors.ts"
import { cpuMicros, nowMillis } from "../platform.ts"
import { checkBool, checkIntIn, readOptions, show } from "../validate.ts"

/** /sys/kernel/mm/ksm/advisor_mode. */
export type AdvisorMode = "none" | "scan-time"

/** The knobs every policy has; names are the sysfs files in camelCase. Every field optional. */
export interface CommonTunables {
  /** pages_to_scan: pages per batch. Rejected (InvalidArgument) while the advisor runs. @default 100 */
  readonly pagesToScan?: number
  /** sleep_millisecs: pause between batches of start()'s loop; a change wakes the loop at once. @default 20 */
  readonly sleepMillis?: number
  /** smart_scan: skip pages that never merged, more and more often (the "ksm" policy uses it). @default true */
  readonly smartScan?: boolean
  /**
   * advisor_mode. Changing it resets pagesToScan as the kernel does: "none" -> 100,
   * "scan-time" -> advisorMinPagesToScan (and the advisor's history is cleared). @default "none"
   */
  readonly advisorMode?: AdvisorMode
  /** advisor_max_cpu: percent of one CPU the advisor aims to stay under. @default 70 */
  readonly advisorMaxCpu?: number
  /** advisor_min_pages_to_scan: only the starting pagesToScan when the advisor is switched on. @default 500 */
  readonly advisorMinPagesToScan?: number
  /** advisor_max_pages_to_scan: upper bound of the advisor's pagesToScan. @default 30000 */
  readonly advisorMaxPagesToScan?: number
  /** advisor_target_scan_time: seconds a full pass should take; >= 1. @default 200 */
  readonly advisorTargetScanTime?: number
}

/** Every common tunable, resolved. */
export interface ResolvedCommonTunables {
  pagesToScan: number
  sleepMillis: number
  smartScan: boolean
  advisorMode: AdvisorMode
  advisorMaxCpu: number
  advisorMinPagesToScan: number
  advisorMaxPagesToScan: number
  advisorTargetScanTime: number
}

/** The kernel's defaults (mm/ksm.c). */
export const COMMON_DEFAULTS: Readonly<ResolvedCommonTunables> = Object.freeze({
  pagesToScan: 100,
  sleepMillis: 20,
  smartScan: true,
  advisorMode: "none",
  advisorMaxCpu: 70,
  advisorMinPagesToScan: 500,
  advisorMaxPagesToScan: 30000,
  advisorTargetScanTime: 200,
})

/** DEFAULT_PAGES_TO_SCAN: what pagesToScan returns to when the advisor is switched off. */
export const DEFAULT_PAGES_TO_SCAN = 100

const UINT_MAX = 0xffffffff
const ULONG_MAX = Number.MAX_SAFE_INTEGER

/** The common tunables' keys, in the kernel's order of application. */
export const COMMON_KEYS = Object.keys(COMMON_DEFAULTS) as readonly (keyof ResolvedCommonTunables)[]

// ---------------------------------------------------------------- a policy's own options

/** An integer option of a policy: an integer from `min` to `max`. */
export interface IntOptionSpec {
  readonly kind: "int"
  readonly min: number
  readonly max: number
  readonly default: number
  /** Given only when the scanner is created (set() refuses it). @default false */
  readonly fixed?: boolean
}

/** A boolean option of a policy. */
export interface BoolOptionSpec {
  readonly kind: "bool"
  readonly default: boolean
  readonly fixed?: boolean
}

/** One option a policy declares (its registry entry lists them all). */
export type OptionSpec = IntOptionSpec | BoolOptionSpec

/** A policy's options by name. */
export type OptionSpecs = Readonly<Record<string, OptionSpec>>

/** The values of a set of option specs. */
export type OptionValues<O extends OptionSpecs> = { -readonly [K in keyof O]: O[K] extends IntOptionSpec ? number : boolean }

/** Defaults of a set of option specs. */
export function defaultsOf<O extends OptionSpecs>(specs: O): OptionValues<O> {
  const out: Record<string, number | boolean> = {}
  for (const [k, s] of Object.entries(specs)) out[k] = s.default
  return out as OptionValues<O>
}

function checkSpec(name: string, spec: OptionSpec, v: unknown): number | boolean {
  return spec.kind === "int" ? checkIntIn(name, v, spec.min, spec.max) : checkBool(name, v)
}

// ---------------------------------------------------------------- clock and report

/** Clock and CPU source of the scanner; tests inject one to drive the advisor. */
export interface ScanClock {
  /** Wall time in milliseconds (any origin; only differences matter). @default performance.now() */
  wallMillis(): number
  /** CPU time in microseconds (any origin). @default the process's CPU time (Node), else wall time */
  cpuMicros(): number
}

/** The default clock: the platform's wall time and CPU time. */
export const systemClock: ScanClock = { wallMillis: nowMillis, cpuMicros }

/** What one batch (`tick()`) did. */
export interface ScanReport {
  /** Policy that ran it. */
  readonly policy: string
  /** Pages examined this batch (the kernel's pages_scanned delta). */
  readonly scanned: number
  /** ksm: pages smart scan skipped; tracked: pages of backed-off ranges passed over. */
  readonly skipped: number
  /** Pages that began sharing a frame (stable hits, both pages of a new pair, forked KSM pages joining). */
  readonly merged: number
  /** Pages mapped to the zero frame (useZeroPages). */
  readonly zeroMapped: number
  /** ksm: pages whose checksum changed since their last visit; tracked: pages found written. */
  readonly volatile: number
  /** Pages that entered the unstable index (ksm) or the pass's candidate index (tracked). */
  readonly unstable: number
  /** tracked: ranges that started a back-off; 0 for ksm. */
  readonly backedOff: number
  /** Whether this batch completed a full pass. */
  readonly fullScan: boolean
  /** full_scans after the batch. */
  readonly fullScans: number
  /** pages_to_scan in force for the batch. */
  readonly pagesToScan: number
  /** CPU time the batch took, in microseconds (as the clock measured it; 0 if its reading was unusable). */
  readonly cpuMicros: number
  /**
   * offload: the batch ended early at a page whose digest the hashing thread had not published
   * yet (the next batch starts there). Always false without offload.
   */
  readonly waited: boolean
}

// ---------------------------------------------------------------- validation

/** What a policy contributes to validation: its name, its own option specs, and the other policies' keys (for messages). */
export interface PolicyOptionsContext {
  readonly policy: string
  readonly own: OptionSpecs
  /** Keys some other policy owns, with that policy's name. */
  readonly foreign: ReadonlyMap<string, string>
}

/** The creation-only keys every policy accepts. */
export const CREATION_KEYS = ["policy", "clock", "offload"] as const

/**
 * Validate tunables `input` (read once) against the current values and return the values after
 * applying it, in the kernel's order: advisor knobs, then advisor_mode (with its pagesToScan
 * reset), then pages_to_scan (InvalidArgument if the advisor will be running), then the rest,
 * then the policy's own options. Throws before anything changes; unknown keys are refused with
 * the nearest valid one, another policy's key with the policy it belongs to.
 */
export function applyTunables<O extends OptionSpecs>(
  cur: Readonly<ResolvedCommonTunables>,
  curOwn: Readonly<OptionValues<O>>,
  input: unknown,
  ctx: PolicyOptionsContext,
  creating: boolean,
): { common: ResolvedCommonTunables; own: OptionValues<O> } {
  if (typeof input !== "object" || input === null) throw new InvalidArgument(`tunables must be an object, got ${show(input)}`)
  const ownKeys = Object.keys(ctx.own).filter((k) => creating || ctx.own[k]!.fixed !== true)
  const keys = [...COMMON_KEYS, ...ownKeys, ...(creating ? CREATION_KEYS : [])]
  const o = readOptions(creating ? "engine.scanner()" : "scanner.set()", input, keys, {
    explain: (k) => {
      if (!creating && ((CREATION_KEYS as readonly string[]).includes(k) || ctx.own[k]?.fixed === true)) return `${k} is fixed when the scanner is created`
      const owner = ctx.foreign.get(k)
      return owner !== undefined ? `${k} applies to the "${owner}" policy only` : undefined
    },
  })
  const next: ResolvedCommonTunables = { ...cur }
  if (o["advisorMaxCpu"] !== undefined) next.advisorMaxCpu = checkIntIn("advisorMaxCpu", o["advisorMaxCpu"], 0, ULONG_MAX)
  if (o["advisorMinPagesToScan"] !== undefined) next.advisorMinPagesToScan = checkIntIn("advisorMinPagesToScan", o["advisorMinPagesToScan"], 0, ULONG_MAX)
  if (o["advisorMaxPagesToScan"] !== undefined) next.advisorMaxPagesToScan = checkIntIn("advisorMaxPagesToScan", o["advisorMaxPagesToScan"], 0, ULONG_MAX)
  if (o["advisorTargetScanTime"] !== undefined) next.advisorTargetScanTime = checkIntIn("advisorTargetScanTime", o["advisorTargetScanTime"], 1, ULONG_MAX)
  if (o["advisorMode"] !== undefined) {
    const m = o["advisorMode"]
    if (m !== "none" && m !== "scan-time") throw new InvalidArgument(`advisorMode must be "none" or "scan-time", got ${show(m)}`)
    // set_advisor_defaults(): only on an actual change.
    if (m !== cur.advisorMode) next.pagesToScan = m === "none" ? DEFAULT_PAGES_TO_SCAN : next.advisorMinPagesToScan
    next.advisorMode = m
  }
  if (o["pagesToScan"] !== undefined) {
    if (next.advisorMode !== "none") throw new InvalidArgument('pagesToScan cannot be set while the advisor runs (advisorMode is not "none")')
    next.pagesToScan = checkIntIn("pagesToScan", o["pagesToScan"], 0, UINT_MAX)
  }
  if (o["sleepMillis"] !== undefined) next.sleepMillis = checkIntIn("sleepMillis", o["sleepMillis"], 0, UINT_MAX)
  if (o["smartScan"] !== undefined) next.smartScan = checkBool("smartScan", o["smartScan"])
  const own = { ...curOwn } as Record<string, number | boolean>
  for (const k of ownKeys) if (o[k] !== undefined) own[k] = checkSpec(k, ctx.own[k]!, o[k])
  return { common: next, own: own as OptionValues<O> }
}
