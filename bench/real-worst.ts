/**
 * Issue 13's worst case for merge(): 10,000 near-identical distinct pages (a base page with
 * one byte changed at a random offset, each page a different change) against 10,000 random
 * pages. Near-identical pages defeat a key that samples part of the page: they share keys
 * and must be told apart by full compares. Two bases: a random page, and the zero page (what
 * real guests are full of: page tables, bitmaps, allocator metadata).
 *
 * Goals: time ratio ≤ 2 against the random pages; no false merge (10,000 frames, nothing
 * sharing); no missed merge (a second space holding the same pages merges every one of them:
 * 10,000 shared, 10,000 sharing, 10,000 frames).
 */
import { randomFillSync, randomInt } from "node:crypto"
import { type AddressSpace, Engine } from "../test/helpers/internals.ts"
import { type BenchRow, fmt, median, PAGE } from "./lib.ts"

const N = 10_000

/** A turn of the event loop: merge()'s deferred table shrink runs, and the engine it holds can go. */
export const laterTurn = (): Promise<void> => new Promise((r) => setImmediate(r))

/** `n` distinct pages, each `base` with one byte changed at a random offset. */
export function nearIdentical(n: number, base: Uint8Array): Uint8Array {
  const out = new Uint8Array(n * PAGE)
  const used = new Set<number>()
  for (let i = 0; i < n; i++) {
    let off: number
    let val: number
    do {
      off = randomInt(PAGE)
      val = randomInt(256)
    } while (val === base[off] || used.has(off * 256 + val))
    used.add(off * 256 + val)
    out.set(base, i * PAGE)
    out[i * PAGE + off] = val
  }
  return out
}

/** Median seconds of merge() of `copies` spaces each holding `bytes`; counters of the first run. */
async function timeMerge(bytes: Uint8Array, copies: number, iterations: number): Promise<{ seconds: number; frames: number; shared: number; sharing: number }> {
  const times: number[] = []
  let first: { frames: number; shared: number; sharing: number } | null = null
  for (let it = 0; it <= iterations; it++) {
    const engine = new Engine({ maxPageSharing: 256, useZeroPages: true })
    const spaces: AddressSpace[] = []
    for (let c = 0; c < copies; c++) {
      const s = engine.createSpace({ size: bytes.length })
      s.write(0, bytes)
      spaces.push(s)
    }
    const t0 = performance.now()
    for (const s of spaces) s.merge()
    const t = (performance.now() - t0) / 1e3
    const st = engine.stats()
    first ??= { frames: engine.memory().framesInUse, shared: st.pagesShared, sharing: st.pagesSharing }
    if (it > 0) times.push(t)
    for (const s of spaces) s.dispose()
    await laterTurn()
  }
  return { seconds: median(times), ...first! }
}

/** The worst-case rows and a note. */
export async function worstCase(iterations: number): Promise<{ rows: BenchRow[]; notes: string[] }> {
  const random = randomFillSync(new Uint8Array(N * PAGE))
  const r = await timeMerge(random, 1, iterations)
  const rows: BenchRow[] = []
  const lines: string[] = []
  for (const [label, base] of [["random base", randomFillSync(new Uint8Array(PAGE))], ["zero base", new Uint8Array(PAGE)]] as const) {
    const near = nearIdentical(N, base)
    const one = await timeMerge(near, 1, iterations)
    const two = await timeMerge(near, 2, iterations)
    const falseMerges = N - one.frames + one.sharing
    const missed = Math.abs(two.shared - N) + Math.abs(two.sharing - N) + Math.abs(two.frames - N)
    rows.push({ name: `worst case (${label}): 10k near-identical / 10k random pages, merge() time`, value: one.seconds / r.seconds, unit: "x", goal: { op: "<=", target: 2 }, detail: `${fmt(one.seconds * 1e3)} ms vs ${fmt(r.seconds * 1e3)} ms (medians of ${iterations})` })
    rows.push({ name: `worst case (${label}): false merges`, value: falseMerges, unit: "pages", goal: { op: "<=", target: 0 }, detail: `one space: ${one.frames} frames, pagesSharing ${one.sharing} (want ${N}, 0)` })
    rows.push({ name: `worst case (${label}): missed merges (two copies)`, value: missed, unit: "pages off", goal: { op: "<=", target: 0 }, detail: `two spaces: pagesShared ${two.shared}, pagesSharing ${two.sharing}, frames ${two.frames} (want ${N} each); ${fmt(two.seconds * 1e3)} ms` })
    lines.push(`${label}: ${fmt(one.seconds * 1e3)} ms one copy, ${fmt(two.seconds * 1e3)} ms two copies`)
  }
  return { rows, notes: [`Worst case: 10,000 pages each; random pages merge in ${fmt(r.seconds * 1e3)} ms (${r.frames} frames). ${lines.join("; ")}.`] }
}
