/**
 * Real workloads for the merge tests and benchmarks (issue 13), generated from npm and Debian
 * packages and cached in .cache/workloads/ (gitignored; never committed):
 *
 *   npx tsx scripts/workloads.ts                          all of them, default sizes
 *   npx tsx scripts/workloads.ts --only quickjs,pyodide   some (pyodide = both Pyodide workloads,
 *                                                         v86 = v86-booted and v86-cloned)
 *   npx tsx scripts/workloads.ts --guests 2 --mem 64      smaller emulated fleets
 *   npx tsx scripts/workloads.ts --force                  regenerate even if cached
 *
 * Workloads: quickjs (QuickJS heaps of the demo's fleet), pyodide-seeded and pyodide-random
 * (Pyodide heaps with PYTHONHASHSEED=0 and with the default random seed), v86-booted (i386
 * Linux guests each booted on its own, in parallel), v86-cloned (guests restored from one
 * saved state). Defaults: 4 interpreter instances, 4 guests of 128 MiB. A source that cannot
 * be had prints one line saying what is missing and how to get it; the others still run.
 * Prints how long each took and its page statistics (zero / shared / unique, distinct contents).
 */
import { CACHE_DIR, WORKLOAD_NAMES, type WorkloadName } from "./workloads/cache.ts"
import { ensureWorkload } from "./workloads/generate.ts"
import { describeStats } from "./workloads/oracle.ts"

const MIN_GUEST_MIB = 80
const ALIASES: Record<string, readonly WorkloadName[]> = { pyodide: ["pyodide-seeded", "pyodide-random"], v86: ["v86-booted", "v86-cloned"] }

function usage(msg: string): never {
  console.error(`${msg}\nusage: npx tsx scripts/workloads.ts [--only ${[...WORKLOAD_NAMES, ...Object.keys(ALIASES)].join(",")}] [--guests N] [--mem MiB] [--instances N] [--force]`)
  process.exit(2)
}

function parse(argv: readonly string[]): { only: WorkloadName[]; guests: number; memMiB: number; interpreters: number; force: boolean } {
  let only: WorkloadName[] = [...WORKLOAD_NAMES]
  let guests = 4
  let memMiB = 128
  let interpreters = 4
  let force = false
  const int = (a: string, v: string | undefined): number => {
    const n = Number(v)
    if (!Number.isSafeInteger(n) || n <= 0) usage(`${a} needs a positive integer`)
    return n
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === "--only") {
      only = (argv[++i] ?? "").split(",").filter(Boolean).flatMap((n) => ALIASES[n] ?? (WORKLOAD_NAMES.includes(n as WorkloadName) ? [n as WorkloadName] : usage(`unknown workload ${n}`)))
    } else if (a === "--guests") guests = int(a, argv[++i])
    else if (a === "--mem") memMiB = int(a, argv[++i])
    else if (a === "--instances") interpreters = int(a, argv[++i])
    else if (a === "--force") force = true
    else if (a === "--help" || a === "-h") usage("")
    else usage(`unknown argument ${a}`)
  }
  // v86 loads the initrd at 64 MiB: a guest needs more than that.
  if (memMiB < MIN_GUEST_MIB) usage(`--mem must be at least ${MIN_GUEST_MIB} (v86 puts the initrd at 64 MiB)`)
  return { only: WORKLOAD_NAMES.filter((n) => only.includes(n)), guests, memMiB, interpreters, force }
}

const args = parse(process.argv.slice(2))
const log = (line: string): void => console.error(`  ${line}`)
console.log(`workloads: ${args.only.join(", ")} into ${CACHE_DIR}`)
let missing = 0
for (const name of args.only) {
  const t0 = performance.now()
  const r = await ensureWorkload(name, { ...args, log })
  const wall = ((performance.now() - t0) / 1e3).toFixed(1)
  if ("missing" in r) {
    missing++
    console.log(`${name}: MISSING: ${r.missing}`)
    continue
  }
  const m = r.manifest
  const how = r.cached ? `cached (generated in ${m.seconds} s on ${m.createdAt})` : `generated in ${m.seconds} s (${wall} s with installs)`
  console.log(`${name}: ${m.instances.length} images, ${how}`)
  console.log(`  ${describeStats(m.stats)}`)
}
if (missing > 0) console.log(`${missing} workload(s) could not be generated (see above); the others are in ${CACHE_DIR}`)
