/**
 * Shared helpers of the scanner tests: the selftests' ksm_start() (wait two full scans),
 * range_maps_duplicates(), and a recount of the scanner's own counters.
 */
import type { AddressSpace } from "./internals.ts"
import type { Engine } from "./internals.ts"
import type { ScannerOptions } from "../../src/policy/registry.ts"
import type { Scanner } from "./internals.ts"

export const PS = 4096

/** The policies the ported selftests run under; tracked with stablePasses 1 needs the same two passes as ksmd. */
export const POLICIES: { name: string; options: ScannerOptions }[] = [
  { name: "ksm", options: { policy: "ksm" } },
  { name: "tracked", options: { policy: "tracked", stablePasses: 1 } },
]

/** Tick until `n` more full scans completed (vm_util.c ksm_start waits for 2). Bounded. */
export function fullScans(ksmd: Scanner, n = 2): void {
  const target = ksmd.scanCounters().fullScans + n
  for (let i = 0; i < 1_000_000; i++) {
    if (ksmd.scanCounters().fullScans >= target) return
    ksmd.tick()
  }
  throw new Error("scanner made no progress")
}

/** range_maps_duplicates(): true if two populated pages of the spaces share a frame. */
export function mapsDuplicates(spaces: AddressSpace[]): boolean {
  const seen = new Set<number>()
  for (const s of spaces) {
    for (let pi = 0; pi < s.pages; pi++) {
      const f = s.frameAt(pi)
      if (f === 0) continue
      if (seen.has(f)) return true
      seen.add(f)
    }
  }
  return false
}

/** A space of `pages` pages filled with `byte`. */
export function filled(engine: Engine, pages: number, byte: number, advise = true): AddressSpace {
  const s = engine.createSpace({ size: pages * PS })
  s.fill(0, s.size, byte)
  if (advise) s.advise(0, s.size, "mergeable")
  return s
}

/** Every page of `s` holds `byte` only. */
export function allBytes(s: AddressSpace, byte: number): boolean {
  return s.read(0, s.size).every((b) => b === byte)
}

/** Scanner counters must agree with the per-space figures and the kernel's volatile formula. */
export function checkScanCounters(engine: Engine, ksmd: Scanner): void {
  const c = ksmd.scanCounters()
  let items = 0
  for (const s of engine.spaces()) items += ksmd.rmapItemsOf(s)
  if (items !== c.rmapItems) throw new Error(`rmapItems ${c.rmapItems} != sum over spaces ${items}`)
  if (c.pagesUnshared < 0 || c.pagesUnshared > c.rmapItems) throw new Error(`pagesUnshared ${c.pagesUnshared} out of [0, ${c.rmapItems}]`)
  if (c.pagesVolatile !== c.rmapItems - c.pagesUnshared) throw new Error(`pagesVolatile ${c.pagesVolatile} != ${c.rmapItems} - ${c.pagesUnshared}`)
}
