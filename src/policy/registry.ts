/**
 * The policy registry: every scanner policy by name, with its own options. Everything that
 * depends on the set of policies is derived from the table below: the policy names, the
 * options type and its validation, the defaults, and the Effect configuration schema
 * (src/effect.ts). Adding a policy = one new file (its scanner class, its option specs, its
 * entry) + one line here.
 */
import { InvalidArgument } from "../errors.ts"
import { readOptions, show } from "../validate.ts"
import { ksmPolicy } from "./ksm.ts"
import {
  applyTunables,
  COMMON_DEFAULTS,
  COMMON_KEYS,
  type CommonTunables,
  CREATION_KEYS,
  defaultsOf,
  type OptionSpecs,
  type OptionValues,
  type PolicyOptionsContext,
  type ResolvedCommonTunables,
  type ScanClock,
  type ScanReport,
} from "./options.ts"
import type { PolicyParams, ScanHost, Scanner, ScannerBase, Slot } from "./scanner.ts"
import { trackedPolicy } from "./tracked.ts"

/** A registry entry: what a policy file exports. */
export interface PolicyDefinition<O extends OptionSpecs> {
  readonly name: string
  /** One line for help texts. */
  readonly summary: string
  /** The policy's own options (beside the common tunables). */
  readonly options: O
  readonly create: (host: ScanHost, params: PolicyParams<O>) => ScannerBase<Slot, O>
}

/** Every policy, by name. The first is the default. */
export const POLICIES = {
  ksm: ksmPolicy,
  tracked: trackedPolicy,
} as const

/** A policy's name: "ksm" emulates ksmd (mm/ksm.c); "tracked" is the SKSM thread's userspace scanner. */
export type ScanPolicyName = keyof typeof POLICIES

/** The policy names, default first. */
export const POLICY_NAMES = Object.keys(POLICIES) as readonly ScanPolicyName[]

type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never
type OwnOptionsOf<P> = P extends { readonly options: infer O extends OptionSpecs } ? OptionValues<O> : never
type AllOwnOptions = UnionToIntersection<OwnOptionsOf<(typeof POLICIES)[ScanPolicyName]>>

/**
 * The knobs `scanner.set()` accepts: the common tunables (/sys/kernel/mm/ksm/* in camelCase)
 * and every policy's own options (each applies to its policy only). Every field optional.
 */
export type ScannerTunables = CommonTunables & { readonly [K in keyof AllOwnOptions]?: AllOwnOptions[K] }

/** Options of `engine.scanner(...)`: the policy, every tunable, and the creation-only fields. */
export type ScannerOptions = ScannerTunables & {
  /** @default "ksm" */
  readonly policy?: ScanPolicyName
  /** Clock/CPU source (tests). @default the platform's wall time and CPU time */
  readonly clock?: ScanClock
  /**
   * Hash pages on another thread: the scanner queues the pages ahead of its cursor on a ring in
   * shared memory and uses the digests a hashing thread publishes (see `sksm/worker`, which runs
   * that thread for you; {@link Scanner.offloadChannel} gives the buffers). Decisions, counters
   * and final state are the in-thread scanner's; a batch ends early at a page whose digest is
   * not ready (`ScanReport.waited`), and if the thread makes no progress for 100 ms the host
   * hashes on its own until it does. Needs `new Engine({ sharedMemory: true })` and no injected
   * checksum (Unsupported otherwise). Pages handed to the thread are write-protected, so a write
   * after that takes one fault (no copy). @default false
   */
  readonly offload?: boolean
}

/** Every tunable resolved: the common ones and every policy's own, at their defaults. */
export type ResolvedTunables = ResolvedCommonTunables & AllOwnOptions

/** The kernel's defaults (mm/ksm.c), and every policy's own defaults. */
export const DEFAULT_TUNABLES: Readonly<ResolvedTunables> = Object.freeze(
  Object.assign({ ...COMMON_DEFAULTS }, ...POLICY_NAMES.map((n) => defaultsOf(POLICIES[n].options))) as ResolvedTunables,
)

/** A batch report of a registered policy. */
export type PolicyScanReport = ScanReport & { readonly policy: ScanPolicyName }

/** Keys some policy owns -> that policy. */
const OWNER = new Map<string, ScanPolicyName>()
for (const n of POLICY_NAMES) for (const k of Object.keys(POLICIES[n].options)) OWNER.set(k, n)

function contextOf(policy: ScanPolicyName): PolicyOptionsContext {
  const foreign = new Map<string, string>()
  for (const [k, owner] of OWNER) if (owner !== policy && !(k in POLICIES[policy].options)) foreign.set(k, owner)
  return { policy, own: POLICIES[policy].options, foreign }
}

/** Every key engine.scanner() may accept, for reading the options once. */
const ALL_KEYS = [...COMMON_KEYS, ...OWNER.keys(), ...CREATION_KEYS]

/** Options read once and validated: what {@link createScanner} builds from. */
interface ResolvedScannerOptions {
  readonly policy: ScanPolicyName
  readonly params: PolicyParams<OptionSpecs>
}

/**
 * Everything `engine.scanner(options)` checks, without building a scanner: the policy name,
 * every tunable with the kernel's rules, the policy's own options, the clock's shape. Reads the
 * options object exactly once. Throws InvalidArgument.
 */
export function resolveScannerOptions(options: unknown): ResolvedScannerOptions {
  if (options !== undefined && (typeof options !== "object" || options === null)) throw new InvalidArgument(`scanner options must be an object, got ${show(options)}`)
  const snapshot = readOptions("engine.scanner()", options, ALL_KEYS)
  const policy = snapshot["policy"] ?? POLICY_NAMES[0]
  if (typeof policy !== "string" || !(POLICY_NAMES as readonly string[]).includes(policy)) {
    throw new InvalidArgument(`policy must be one of ${POLICY_NAMES.map((n) => `"${n}"`).join(", ")}, got ${show(policy)}`)
  }
  const name = policy as ScanPolicyName
  const ctx = contextOf(name)
  const own = defaultsOf(ctx.own)
  const { common, own: resolvedOwn } = applyTunables(COMMON_DEFAULTS, own, snapshot, ctx, true)
  const clock = snapshot["clock"]
  if (clock !== undefined && (typeof clock !== "object" || clock === null)) throw new InvalidArgument("clock must be an object { wallMillis(), cpuMicros() }")
  const offload = snapshot["offload"] ?? false
  if (typeof offload !== "boolean") throw new InvalidArgument(`offload must be a boolean, got ${show(offload)}`)
  return { policy: name, params: { ctx, common, own: resolvedOwn, clock: clock as ScanClock | undefined, offload } }
}

/** Validate options the way engine.scanner() does (the Effect layer's config check); returns the resolved tunables. */
export function validateScannerOptions(options: unknown): Readonly<Record<string, unknown>> {
  const r = resolveScannerOptions(options)
  return Object.freeze({ ...r.params.common, ...r.params.own })
}

/** Build the scanner the options name (default "ksm"); everything is validated before it is built. */
export function createScanner(host: ScanHost, options: unknown): ScannerBase<Slot, OptionSpecs> & Scanner {
  const r = resolveScannerOptions(options)
  const def = POLICIES[r.policy] as unknown as PolicyDefinition<OptionSpecs>
  return def.create(host, r.params)
}
