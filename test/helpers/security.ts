/**
 * Security invariants, recomputed from the page tables (trusts no counter):
 * - domain isolation: a frame mapped by pages of two domains is allowed only when the engine
 *   merges across domains, or the frame is a constant page and every space mapping it is secure;
 * - secure mode: an armed page (idle > 0) is never writable (so its next write must fault);
 *   a secure page mapping a table frame is never writable.
 * Plus snapshots of everything a failed call must leave unchanged.
 */
import { expect } from "vitest"
import type { AddressSpace } from "./internals.ts"
import type { Engine } from "./internals.ts"
import { FRAME_KSM, ZERO_FRAME } from "../../src/memory/frames.ts"

/** True when frame `f` holds one byte value repeated. */
export function isConstantFrame(engine: Engine, f: number): boolean {
  const pool = engine.pool
  const s = pool.bytes
  const o = f << pool.pageShift
  const b = s[o]!
  for (let i = 1; i < pool.pageSize; i++) if (s[o + i] !== b) return false
  return true
}

/** Throws on the first frame shared across domains without permission. Returns frames shared across domains. */
export function checkDomainIsolation(engine: Engine): number {
  const byFrame = new Map<number, AddressSpace[]>()
  for (const s of engine.spaces()) {
    for (let pi = 0; pi < s.pages; pi++) {
      const f = s.frameAt(pi)
      if (f === ZERO_FRAME) continue
      const list = byFrame.get(f)
      if (list === undefined) byFrame.set(f, [s])
      else if (!list.includes(s)) list.push(s)
    }
  }
  let crossing = 0
  for (const [f, spaces] of byFrame) {
    const domains = new Set(spaces.map((s) => s.domain))
    if (domains.size < 2) continue
    crossing++
    if (engine.core.mergeAcrossDomains) continue
    if (spaces.every((s) => s.secure) && isConstantFrame(engine, f)) continue
    throw new Error(`frame ${f} is shared by domains ${[...domains].join(", ")} (spaces ${spaces.map((s) => `${s.name}${s.secure ? "/secure" : ""}`).join(", ")})`)
  }
  return crossing
}

/** Secure-mode page-state invariants. */
export function checkSecureInvariants(engine: Engine): void {
  const pool = engine.pool
  for (const s of engine.spaces()) {
    if (!s.secure) {
      if (s.idle !== null) throw new Error(`${s.name}: idle array outside secure mode`)
      continue
    }
    const idle = s.idle
    if (idle === null || idle.length !== s.pages) throw new Error(`${s.name}: secure space without an idle array`)
    for (let pi = 0; pi < s.pages; pi++) {
      if (!s.isWritable(pi)) continue
      if (idle[pi] !== 0) throw new Error(`${s.name}[${pi}]: armed (idle ${idle[pi]}) but writable: a write would not end its idle period`)
      if ((pool.flags[s.frameAt(pi)]! & FRAME_KSM) !== 0) throw new Error(`${s.name}[${pi}]: writable on a table frame`)
    }
  }
}

/** Everything a failed call must leave as it was. */
export interface Snapshot {
  contents: Uint8Array[]
  stats: unknown
  framesInUse: number
  ksmStat: unknown[]
  spaces: number
}

/**
 * A failed call may keep memory it reserved before a later allocation point failed (slabs,
 * table capacity): the figures derived from reserved memory (generalProfit, profitReturned)
 * are left out unless `exact` (a call refused before it reserved anything); every other
 * counter must be exact.
 */
export function snapshot(engine: Engine, exact = false): Snapshot {
  const spaces = engine.spaces()
  const { generalProfit, profitReturned, ...rest } = engine.stats()
  return {
    contents: spaces.map((s) => s.read(0, s.size)),
    stats: exact ? { ...rest, generalProfit, profitReturned } : rest,
    framesInUse: engine.memory().framesInUse,
    ksmStat: spaces.map((s) => s.ksmStat()),
    spaces: spaces.length,
  }
}

/** `after` equals `before` (contents compared with memcmp first: expect's deep equality is slow on large arrays). */
export function expectUnchanged(before: Snapshot, after: Snapshot, message: string): void {
  const same = before.contents.length === after.contents.length && before.contents.every((c, i) => Buffer.compare(c, after.contents[i]!) === 0)
  if (same) expect({ ...after, contents: [] }, message).toEqual({ ...before, contents: [] })
  else expect(after, message).toEqual(before)
}
