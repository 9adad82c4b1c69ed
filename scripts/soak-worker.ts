/**
 * The worker scanner's randomised soak (issue 16): a real hashing thread (sksm/worker) scans at
 * full speed while the host writes, forks, discards, merges, compacts and disposes at random,
 * yielding to the event loop between bursts like a cooperating host. Every few bursts, and at
 * the end: every space's bytes equal a plain reference, and every digest the host would use
 * equals a fresh hash of its frame (no stale digest ever passes). Exported for the CI test
 * (test/worker/thread.test.ts, a few seconds); run longer with
 *
 *   npx tsx scripts/soak-worker.ts --seconds 600 --seed 42
 */
import { startWorkerScanner } from "../src/worker/index.ts"
import { Engine } from "../test/helpers/internals.ts"
import { xorshift32 } from "../bench/xorshift.ts"
import { staleDigest } from "../test/helpers/digests.ts"
import { _internals } from "../src/engine/engine.ts"

export interface WorkerSoakResult {
  readonly operations: number
  readonly checks: number
  readonly fullScans: number
  readonly pagesSharing: number
  readonly hostHashes: number
  /** Times the host judged the thread stuck (starved of CPU for 100 ms) and hashed meanwhile. */
  readonly stuckEvents: number
  readonly mode: string
}

const PS = 4096

/** Run the soak for `durationMs`; throws on the first violation (with the seed in the message). */
export async function soakWorker(durationMs: number, seed: number, log: (line: string) => void = () => {}): Promise<WorkerSoakResult> {
  const rnd = xorshift32(seed)
  const pick = (n: number): number => rnd() % n
  const engine = new Engine({ sharedMemory: true, seed })
  const spaces: { space: ReturnType<Engine["createSpace"]>; ref: Uint8Array }[] = []
  const add = (pages: number): void => {
    const space = engine.createSpace({ size: pages * PS })
    space.advise(0, pages * PS, "mergeable")
    const ref = new Uint8Array(pages * PS)
    // Pages drawn from a few contents: plenty to merge.
    for (let p = 0; p < pages; p++) {
      const c = pick(6)
      if (c === 0) continue
      ref.fill(c, p * PS, p * PS + PS)
    }
    space.write(0, ref)
    spaces.push({ space, ref })
  }
  for (let i = 0; i < 4; i++) add(256)
  const ksmd = await startWorkerScanner(engine, { policy: "ksm", pagesToScan: 2000, sleepMillis: 0, fallback: false })
  ksmd.start()
  let operations = 0
  let checks = 0
  const t0 = performance.now()
  let lastLog = t0
  const fail = (what: string): never => {
    throw new Error(`worker soak (seed ${seed}): ${what}`)
  }
  const checkAll = (): void => {
    for (const { space, ref } of spaces) {
      const got = space.read(0, space.size)
      if (Buffer.compare(got, ref) !== 0) fail(`${space.name}: contents differ from the reference at byte ${got.findIndex((b, k) => b !== ref[k])}`)
    }
    const stale = staleDigest(engine, spaces.map((s) => s.space))
    if (stale !== null) fail(stale)
    checks++
  }
  try {
    while (performance.now() - t0 < durationMs) {
      // A burst of host work, then a turn of the event loop (the scanner's batches run there).
      for (let i = 0; i < 50; i++) {
        const s = spaces[pick(spaces.length)]!
        const pages = s.space.pages
        const op = pick(100)
        if (op < 60) {
          const addr = pick(pages * (PS >>> 2)) * 4
          const v = pick(4) === 0 ? 0 : pick(6) * 0x01010101
          s.space.writeU32(addr, v)
          new DataView(s.ref.buffer).setUint32(addr, v, true)
        } else if (op < 75) {
          // A whole page rewritten with a common content (it may merge again).
          const p = pick(pages)
          const c = pick(6)
          s.ref.fill(c, p * PS, p * PS + PS)
          s.space.write(p * PS, s.ref.subarray(p * PS, p * PS + PS))
        } else if (op < 80) {
          const p = pick(pages)
          s.space.discard(p * PS, PS)
          s.ref.fill(0, p * PS, p * PS + PS)
        } else if (op < 84) {
          const p = pick(pages - 8)
          s.space.merge(p * PS, 8 * PS)
        } else if (op < 86 && spaces.length < 8) {
          spaces.push({ space: s.space.fork(), ref: s.ref.slice() })
        } else if (op < 88 && spaces.length > 2) {
          const k = spaces.indexOf(s)
          spaces.splice(k, 1)
          s.space.dispose()
        } else if (op < 89 && spaces.length < 8) {
          // Growth: the store is reallocated, the thread must fetch the new buffers.
          add(128 + pick(512))
        } else if (op < 90) {
          engine.compact()
        } else {
          const addr = pick(pages * (PS >>> 2)) * 4
          if (s.space.readU32(addr) !== new DataView(s.ref.buffer).getUint32(addr, true)) fail(`${s.space.name}: readU32(${addr}) differs from the reference`)
        }
        operations++
      }
      await new Promise((resolve) => setImmediate(resolve))
      if (operations % 500 === 0) checkAll()
      const now = performance.now()
      if (now - lastLog > 5000) {
        lastLog = now
        log(`  ${((now - t0) / 1000).toFixed(0)} s: ${operations} operations, ${checks} checks, ${engine.stats().fullScans} full scans, ${engine.stats().pagesSharing} pages sharing`)
      }
    }
    // Let it converge with the host quiet, then check once more.
    const scans = engine.stats().fullScans
    while (engine.stats().fullScans < scans + 3) await new Promise((resolve) => setTimeout(resolve, 2))
    checkAll()
  } finally {
    await ksmd.close()
  }
  if (ksmd.threadError !== undefined) fail(`the hashing thread died: ${String(ksmd.threadError)}`)
  const inner = _internals(engine).scanner()
  const hostHashes = inner?.hostHashes ?? 0
  log(`  stuck events: ${inner?.stuckEvents}`)
  return { operations, checks, fullScans: engine.stats().fullScans, pagesSharing: engine.stats().pagesSharing, hostHashes, stuckEvents: inner?.stuckEvents ?? 0, mode: ksmd.mode }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string, fallback: number): number => {
    const i = process.argv.indexOf(`--${name}`)
    return i < 0 ? fallback : Number(process.argv[i + 1])
  }
  const seconds = arg("seconds", 600)
  const seed = arg("seed", Date.now() % 0x7fffffff)
  console.log(`worker soak: ${seconds} s, seed ${seed}`)
  try {
    const r = await soakWorker(seconds * 1000, seed, (l) => console.log(l))
    console.log(`worker soak passed: ${r.operations} operations, ${r.checks} checks, ${r.fullScans} full scans, ${r.pagesSharing} pages sharing at the end (mode ${r.mode}; ${r.hostHashes} pages hashed on the host)`)
  } catch (e) {
    console.error(e instanceof Error ? (e.stack ?? e.message) : String(e))
    process.exit(1)
  }
}
