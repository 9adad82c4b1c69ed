/**
 * A host whose own loop must stay responsive while background merging runs at full speed: a fleet
 * of guests (half of each guest's pages are the same boot image, half its own), scanned by the
 * ksm policy at full speed, first on the host's thread, then with the hashing on a worker thread
 * (`sksm/worker`). Meanwhile the host runs its loop: a burst of word accesses on its own memory,
 * then a turn of the event loop. Both runs merge the same pages; the worker run keeps the host's
 * slowest iterations short.
 *
 * Run: npx tsx examples/worker-scanner.ts          (GUESTS=8 GUEST_MIB=16 by default)
 */
import { Engine } from "../src/index.ts"
import { startWorkerScanner } from "../src/worker/index.ts"

const PAGE = 4096
const GUESTS = Number(process.env["GUESTS"] ?? 8)
const GUEST_PAGES = Number(process.env["GUEST_MIB"] ?? 16) * 256

/** A fleet in a fresh engine: every guest's even pages hold the shared image, odd pages its own bytes. */
function fleet(): Engine {
  const engine = new Engine({ sharedMemory: true })
  let x = 12345
  for (let g = 0; g < GUESTS; g++) {
    const guest = engine.createSpace({ size: GUEST_PAGES * PAGE, name: `guest-${g}` })
    guest.advise(0, guest.size, "mergeable")
    for (let p = 0; p < GUEST_PAGES; p++) {
      for (let o = 0; o < PAGE; o += 64) {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0
        guest.writeU32(p * PAGE + o, p % 2 === 0 ? p * 2654435761 + o : x)
      }
    }
  }
  return engine
}

/** Run the host's loop until the scanner has converged, and at least 2 s; its iteration times, sorted. */
async function hostLoop(engine: Engine): Promise<{ times: number[]; seconds: number }> {
  const own = engine.createSpace({ size: 16 << 20, name: "host" })
  const times: number[] = []
  const t0 = performance.now()
  let last = -1
  let still = 0
  let scans = 0
  let x = 1
  let converged = 0
  while (still < 2 || performance.now() - t0 < 2000) {
    const t = performance.now()
    for (let i = 0; i < 4096; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0
      const addr = (x % (own.size >>> 2)) * 4
      if (i & 1) own.writeU32(addr, x)
      else x ^= own.readU32(addr)
    }
    await new Promise((resolve) => setImmediate(resolve))
    times.push(performance.now() - t)
    const s = engine.stats()
    if (s.fullScans !== scans) {
      scans = s.fullScans
      if (s.pagesSharing === last) still++
      else still = 0
      last = s.pagesSharing
      if (still === 2 && converged === 0) converged = (performance.now() - t0) / 1000
    }
  }
  own.dispose()
  return { times: times.sort((a, b) => a - b), seconds: converged }
}

const p99 = (sorted: number[]): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))]!

console.log(`${GUESTS} guests x ${(GUEST_PAGES * PAGE) >> 20} MiB, half of each the shared image; ksm policy at full speed (10000 pages per batch, no sleep)`)
const results: Record<string, number> = {}
for (const mode of ["in-thread", "worker"] as const) {
  const engine = fleet()
  const options = { policy: "ksm" as const, pagesToScan: 10_000, sleepMillis: 0 }
  const worker = mode === "worker" ? await startWorkerScanner(engine, { ...options, fallback: false }) : null
  const ksmd = worker ?? engine.scanner(options)
  ksmd.start()
  const { times, seconds } = await hostLoop(engine)
  await ksmd.stop()
  await worker?.close()
  const s = engine.stats()
  results[mode] = s.pagesSharing
  console.log(
    `${mode.padEnd(9)}: ${s.pagesSharing} pages merged away, converged in ${seconds.toFixed(2)} s; host loop p50 ${(times[times.length >> 1]! * 1000).toFixed(0)} µs, p99 ${(p99(times) * 1000).toFixed(0)} µs, max ${(times[times.length - 1]! * 1000).toFixed(0)} µs over ${times.length} iterations`,
  )
}
if (results["worker"] !== results["in-thread"]) throw new Error("the two modes merged different pages")
console.log(`OK: both modes merged the same ${results["worker"]} pages`)
