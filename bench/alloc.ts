/**
 * Frame allocation cost on the fault path: first-touch writes (one allocation per page) and
 * copy-on-write faults after fork, with discards in between so the free list is churned.
 * Run: npx tsx bench/alloc.ts   (prints ns per fault; automatic compaction off)
 */
import { Engine } from "../src/index.ts"

const PS = 4096
const PAGES = 32768 // 128 MiB

function once(): { firstTouchNs: number; cowNs: number; churnNs: number } {
  const engine = new Engine({ pageSize: PS, autoCompact: false })
  const a = engine.createSpace({ size: PAGES * PS })
  let t = performance.now()
  for (let p = 0; p < PAGES; p++) a.writeU32(p * PS, p)
  const firstTouchNs = ((performance.now() - t) * 1e6) / PAGES
  const b = a.fork()
  t = performance.now()
  for (let p = 0; p < PAGES; p++) b.writeU32(p * PS, p + 1)
  const cowNs = ((performance.now() - t) * 1e6) / PAGES
  // Churn: discard every 3rd page of b, then touch them again (free + alloc in scattered slabs).
  t = performance.now()
  for (let round = 0; round < 4; round++) {
    for (let p = round; p < PAGES; p += 3) b.discard(p * PS, PS)
    for (let p = round; p < PAGES; p += 3) b.writeU32(p * PS, p)
  }
  const churnNs = ((performance.now() - t) * 1e6) / (4 * 2 * Math.ceil(PAGES / 3))
  return { firstTouchNs, cowNs, churnNs }
}

once() // warm up
const runs = [once(), once(), once()]
const med = (k: keyof ReturnType<typeof once>): string => runs.map((r) => r[k]).sort((x, y) => x - y)[1]!.toFixed(0)
const label = process.env["SKSM_BENCH_LABEL"] ?? "current"
console.log(`| allocator | first-touch write fault | copy-on-write fault | discard + re-fault (per op) |`)
console.log(`|---|---|---|---|`)
console.log(`| ${label} | ${med("firstTouchNs")} ns | ${med("cowNs")} ns | ${med("churnNs")} ns |`)
