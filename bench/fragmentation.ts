/**
 * Fragmentation under churn: how many slabs the frame pool keeps non-empty compared with the
 * fewest that could hold its live frames, and how many frames a full compaction would have to
 * move. Measures the allocator's placement policy, with automatic compaction off.
 *
 * Run: npx tsx bench/fragmentation.ts   (prints a markdown table)
 *
 * Workload: a 64 MiB space, half duplicate pages (64 contents) and half unique, merged; then 20
 * rounds of: rewrite 5% of pages (copy-on-write allocations), create a 16 MiB scratch space
 * and dispose the one from two rounds ago, discard 3% of pages, merge again.
 */
import { Engine } from "../test/helpers/internals.ts"
import { xorshift32 } from "./xorshift.ts"

const PS = 4096
const PAGES = 16384
const ROUNDS = 20

interface Shape {
  nonEmptySlabs: number
  minSlabs: number
  movesToCompact: number
}

/** Slab occupancy from the pool's public arrays (works with any allocator version). */
function shape(engine: Engine): Shape {
  const pool = engine.pool
  const fps = pool.framesPerSlab
  const used: number[] = []
  let free = 0
  for (let s = 0; s < pool.slabCount; s++) {
    const u = pool.slabUsed[s]!
    if (u === 0) continue
    used.push(s === 0 ? Number.MAX_SAFE_INTEGER : u) // slab 0 (zero frame) never moves
    free += pool.slabFrames[s]! - u
  }
  used.sort((a, b) => a - b)
  const releasable = Math.floor(free / fps)
  let moves = 0
  for (let i = 0; i < releasable && i < used.length; i++) moves += used[i]!
  const live = engine.memory().framesInUse + 1
  return { nonEmptySlabs: used.length, minSlabs: Math.ceil(live / fps), movesToCompact: moves }
}

/** Steady churn: after the merge, discard one random page and write another, 200k times. */
function runChurn(): { final: Shape; meanExcess: number; ms: number } {
  const engine = new Engine({ pageSize: PS, seed: 7, autoCompact: false })
  const r = xorshift32(999)  // deterministic, so both allocators see the same program
  const a = engine.createSpace({ size: PAGES * PS, name: "a" })
  let unique = 1
  const t0 = performance.now()
  for (let p = 0; p < PAGES; p++) {
    if ((r() & 1) === 0) a.fill(p * PS, PS, 1 + (r() % 64))
    else {
      a.fill(p * PS, PS, 0x80)
      a.writeU32(p * PS, unique++)
    }
  }
  a.merge()
  let excess = 0
  const STEPS = 200_000
  for (let k = 1; k <= STEPS; k++) {
    a.discard((r() % PAGES) * PS, PS)
    a.writeU32((r() % PAGES) * PS + 8, unique++)
    if (k % (STEPS / ROUNDS) === 0) {
      const s = shape(engine)
      excess += s.nonEmptySlabs - s.minSlabs
    }
  }
  const ms = performance.now() - t0
  return { final: shape(engine), meanExcess: excess / ROUNDS, ms }
}

function run(): { final: Shape; meanExcess: number; ms: number } {
  const engine = new Engine({ pageSize: PS, seed: 7, autoCompact: false })
  const r = xorshift32(12345)
  const a = engine.createSpace({ size: PAGES * PS, name: "a" })
  let unique = 1
  const t0 = performance.now()
  for (let p = 0; p < PAGES; p++) {
    if ((r() & 1) === 0) a.fill(p * PS, PS, 1 + (r() % 64))
    else {
      a.fill(p * PS, PS, 0x80)
      a.writeU32(p * PS, unique++)
    }
  }
  a.merge()
  const scratch: ReturnType<Engine["createSpace"]>[] = []
  let excess = 0
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < PAGES / 20; k++) a.writeU32((r() % PAGES) * PS + 8, unique++)
    const b = engine.createSpace({ size: 4096 * PS, name: `b${round}` })
    for (let p = 0; p < 4096; p++) b.writeU32(p * PS, unique++)
    scratch.push(b)
    if (scratch.length > 2) scratch.shift()!.dispose()
    for (let k = 0; k < (PAGES * 3) / 100; k++) a.discard((r() % PAGES) * PS, PS)
    a.merge()
    const s = shape(engine)
    excess += s.nonEmptySlabs - s.minSlabs
  }
  const ms = performance.now() - t0
  return { final: shape(engine), meanExcess: excess / ROUNDS, ms }
}

const label = process.env["SKSM_BENCH_LABEL"] ?? "current"
console.log(`| allocator | workload | non-empty slabs (end) | fewest possible | excess slabs, mean of 20 samples | frames a full compaction moves (end) | workload time |`)
console.log(`|---|---|---|---|---|---|---|`)
for (const [name, fn] of [["batch rounds", run], ["steady churn", runChurn]] as const) {
  const res = fn()
  console.log(
    `| ${label} | ${name} | ${res.final.nonEmptySlabs} | ${res.final.minSlabs} | ${res.meanExcess.toFixed(1)} | ${res.final.movesToCompact} | ${res.ms.toFixed(0)} ms |`,
  )
}
