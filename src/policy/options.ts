/**
 * The scanner's tunables (/sys/kernel/mm/ksm/*), their kernel defaults and the kernel's
 * validation, plus the tracked policy's own options and the report of one batch.
 * Cold code: plain and explicit.
 */
import { InvalidArgument } from "../errors.ts"
import { show } from "../memory/validate.ts"

/** Which scanner: "ksm" emulates ksmd (mm/ksm.c); "tracked" is the SKSM thread's userspace scanner. */
export type ScanPolicyName = "ksm" | "tracked"

/** /sys/kernel/mm/ksm/advisor_mode. */
export type AdvisorMode = "none" | "scan-time"

/**
 * The knobs `ksmd.set()` accepts; every field optional. Names are the sysfs files in camelCase.
 * The last four apply to the "tracked" policy only.
 */
export interface ScannerTunables {
  /** pages_to_scan: pages per batch. Rejected (InvalidArgument) while the advisor runs. @default 100 */
  readonly pagesToScan?: number
  /** sleep_millisecs: pause between batches of start()'s loop; a change wakes the loop at once. @default 20 */
  readonly sleepMillis?: number
  /** smart_scan: skip pages that never merged, more and more often (ksm policy). @default true */
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
  /** tracked: passes a page must stay unwritten before it counts as invariant (>= 1). @default 2 */
  readonly stablePasses?: number
  /** tracked: merged pages of one range unshared by writes in one pass that make it back off (>= 1). @default 2 */
  readonly thrashUnshares?: number
  /** tracked: longest back-off of a thrashing range, in passes (>= 1). @default 64 */
  readonly maxBackoffPasses?: number
}

/** Clock and CPU source of the scanner; tests inject one to drive the advisor. */
export interface ScanClock {
  /** Wall time in milliseconds (any origin; only differences matter). @default performance.now() */
  wallMillis(): number
  /** CPU time in microseconds (any origin). @default process.cpuUsage() user + system */
  cpuMicros(): number
}

/** Options of `engine.scanner(...)`: the policy, every tunable, and a few creation-only fields. */
export interface ScannerOptions extends ScannerTunables {
  /** @default "ksm" */
  readonly policy?: ScanPolicyName
  /** tracked: pages per back-off range (creation only; >= 1). @default 64 */
  readonly rangePages?: number
  /** Clock/CPU source (tests). @default wall clock + process.cpuUsage() */
  readonly clock?: ScanClock
}

/** What one batch (`tick()`) did. */
export interface ScanReport {
  /** Policy that ran it. */
  readonly policy: ScanPolicyName
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
  /** CPU time the batch took, in microseconds (as the clock measured it). */
  readonly cpuMicros: number
}

/** Every tunable, resolved. */
export interface ResolvedTunables {
  pagesToScan: number
  sleepMillis: number
  smartScan: boolean
  advisorMode: AdvisorMode
  advisorMaxCpu: number
  advisorMinPagesToScan: number
  advisorMaxPagesToScan: number
  advisorTargetScanTime: number
  stablePasses: number
  thrashUnshares: number
  maxBackoffPasses: number
}

/** The kernel's defaults (mm/ksm.c), and the tracked policy's. */
export const DEFAULT_TUNABLES: Readonly<ResolvedTunables> = Object.freeze({
  pagesToScan: 100,
  sleepMillis: 20,
  smartScan: true,
  advisorMode: "none",
  advisorMaxCpu: 70,
  advisorMinPagesToScan: 500,
  advisorMaxPagesToScan: 30000,
  advisorTargetScanTime: 200,
  stablePasses: 2,
  thrashUnshares: 2,
  maxBackoffPasses: 64,
})

/** DEFAULT_PAGES_TO_SCAN: what pagesToScan returns to when the advisor is switched off. */
export const DEFAULT_PAGES_TO_SCAN = 100
/** tracked: default pages per back-off range. */
export const DEFAULT_RANGE_PAGES = 64

const UINT_MAX = 0xffffffff
const TRACKED_ONLY = ["stablePasses", "thrashUnshares", "maxBackoffPasses"] as const
const TUNABLE_KEYS = new Set<string>([
  "pagesToScan",
  "sleepMillis",
  "smartScan",
  "advisorMode",
  "advisorMaxCpu",
  "advisorMinPagesToScan",
  "advisorMaxPagesToScan",
  "advisorTargetScanTime",
  ...TRACKED_ONLY,
])
const CREATION_KEYS = new Set<string>(["policy", "rangePages", "clock"])

function uint(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new InvalidArgument(`${name} must be an integer from ${min} to ${max}, got ${show(v)}`)
  }
  return v
}

/**
 * Validate `t` against the current values and return the values after applying it, in the
 * kernel's order: advisor knobs, then advisor_mode (with its pagesToScan reset), then
 * pages_to_scan (InvalidArgument if the advisor will be running), then the rest.
 * Throws before anything changes; unknown keys are rejected.
 */
export function applyTunables(cur: Readonly<ResolvedTunables>, t: unknown, policy: ScanPolicyName, creating: boolean): ResolvedTunables {
  if (typeof t !== "object" || t === null) throw new InvalidArgument("tunables must be an object")
  const o = t as Record<string, unknown>
  for (const k of Object.keys(o)) {
    if (o[k] === undefined) continue
    if (TUNABLE_KEYS.has(k)) continue
    if (creating && CREATION_KEYS.has(k)) continue
    if (CREATION_KEYS.has(k)) throw new InvalidArgument(`${k} is fixed when the scanner is created`)
    throw new InvalidArgument(`unknown tunable ${k}`)
  }
  if (policy !== "tracked") {
    for (const k of [...TRACKED_ONLY, "rangePages"]) if (o[k] !== undefined) throw new InvalidArgument(`${k} applies to the "tracked" policy only`)
  }
  const next: ResolvedTunables = { ...cur }
  if (o["advisorMaxCpu"] !== undefined) next.advisorMaxCpu = uint("advisorMaxCpu", o["advisorMaxCpu"], 0, Number.MAX_SAFE_INTEGER)
  if (o["advisorMinPagesToScan"] !== undefined) next.advisorMinPagesToScan = uint("advisorMinPagesToScan", o["advisorMinPagesToScan"], 0, Number.MAX_SAFE_INTEGER)
  if (o["advisorMaxPagesToScan"] !== undefined) next.advisorMaxPagesToScan = uint("advisorMaxPagesToScan", o["advisorMaxPagesToScan"], 0, Number.MAX_SAFE_INTEGER)
  if (o["advisorTargetScanTime"] !== undefined) next.advisorTargetScanTime = uint("advisorTargetScanTime", o["advisorTargetScanTime"], 1, Number.MAX_SAFE_INTEGER)
  if (o["advisorMode"] !== undefined) {
    const m = o["advisorMode"]
    if (m !== "none" && m !== "scan-time") throw new InvalidArgument(`advisorMode must be "none" or "scan-time", got ${show(m)}`)
    // set_advisor_defaults(): only on an actual change.
    if (m !== cur.advisorMode) next.pagesToScan = m === "none" ? DEFAULT_PAGES_TO_SCAN : next.advisorMinPagesToScan
    next.advisorMode = m
  }
  if (o["pagesToScan"] !== undefined) {
    if (next.advisorMode !== "none") throw new InvalidArgument("pagesToScan cannot be set while the advisor runs (advisorMode is not \"none\")")
    next.pagesToScan = uint("pagesToScan", o["pagesToScan"], 0, UINT_MAX)
  }
  if (o["sleepMillis"] !== undefined) next.sleepMillis = uint("sleepMillis", o["sleepMillis"], 0, UINT_MAX)
  if (o["smartScan"] !== undefined) {
    if (typeof o["smartScan"] !== "boolean") throw new InvalidArgument(`smartScan must be a boolean, got ${typeof o["smartScan"]}`)
    next.smartScan = o["smartScan"]
  }
  if (o["stablePasses"] !== undefined) next.stablePasses = uint("stablePasses", o["stablePasses"], 1, 255)
  if (o["thrashUnshares"] !== undefined) next.thrashUnshares = uint("thrashUnshares", o["thrashUnshares"], 1, 0xffff)
  if (o["maxBackoffPasses"] !== undefined) next.maxBackoffPasses = uint("maxBackoffPasses", o["maxBackoffPasses"], 1, 1 << 20)
  return next
}

/** tracked: rangePages, an integer from 1 to 2^20. */
export function checkRangePages(v: unknown): number {
  return uint("rangePages", v, 1, 1 << 20)
}

/**
 * Everything `engine.scanner(options)` checks, without building a scanner: the policy name,
 * every tunable with the kernel's rules, and the creation-only fields. Returns the resolved
 * tunables; throws InvalidArgument.
 */
export function validateScannerOptions(options: ScannerOptions): ResolvedTunables {
  if (typeof options !== "object" || options === null) throw new InvalidArgument("scanner options must be an object")
  const policy = options.policy ?? "ksm"
  if (policy !== "ksm" && policy !== "tracked") throw new InvalidArgument(`policy must be "ksm" or "tracked", got ${show(policy)}`)
  const t = applyTunables(DEFAULT_TUNABLES, options, policy, true)
  if (options.rangePages !== undefined) checkRangePages(options.rangePages)
  return t
}

/** The default clock: performance.now() and process.cpuUsage() (user + system). */
export const systemClock: ScanClock = {
  wallMillis: () => performance.now(),
  cpuMicros: () => {
    const u = process.cpuUsage()
    return u.user + u.system
  },
}
