/**
 * `npm run soak`: the long soak run for releases (issue 7). Same run as the CI test
 * (test/security/soak.test.ts, ~15 s), for as long as asked:
 *
 *   npm run soak                          10 minutes, seed from the clock
 *   npm run soak -- --seconds 3600 --seed 42 --spaces 96
 *
 * Prints progress every 5 s, then the number of operations and of invariant checks passed;
 * exits non-zero (with the seed) on the first violation.
 */
import { soak } from "./soak-runner.ts"

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0) return fallback
  const v = Number(process.argv[i + 1])
  if (!Number.isSafeInteger(v) || v <= 0) {
    console.error(`--${name} needs a positive integer`)
    process.exit(2)
  }
  return v
}

const seconds = arg("seconds", 600)
const seed = arg("seed", Date.now() % 0x7fffffff)
const spaces = arg("spaces", 48)
console.log(`soak: ${seconds} s, seed ${seed}, up to ${spaces} spaces`)
try {
  const r = await soak({ durationMs: seconds * 1000, seed, maxSpaces: spaces, log: (l) => console.log(l) })
  console.log(`soak passed: ${r.operations} operations, ${r.invariantChecks} invariant checks passed in ${r.seconds.toFixed(1)} s`)
  console.log(`  ${r.refusedForMemory} calls refused for memory (each changed nothing), ${r.pagesScanned} pages scanned in ${r.fullScans} full scans (${r.explicitTicks} explicit ticks), ${r.compactions} compactions`)
  console.log(`  peak: ${r.maxLiveSpaces} spaces, ${r.peakFramesInUse} frames in use, ${r.peakPagesSharing} pages sharing`)
  console.log(`  operations: ${Object.entries(r.byKind).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(", ")}`)
} catch (e) {
  console.error(`soak FAILED (seed ${seed}): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
  process.exit(1)
}
