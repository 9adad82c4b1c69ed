/**
 * A slow, obviously-correct recount of everything the engine keeps incrementally.
 * Walks every page of every live space; trusts no counter.
 */
import type { Engine } from "./internals.ts"
import { FRAME_KSM, FRAME_SHARED, ZERO_FRAME } from "../../src/memory/frames.ts"
import { PAGE_KSM_ZERO, PAGE_MERGED, PAGE_PINNED, PAGE_UFFD_WP } from "../../src/memory/flags.ts"

export interface Recount {
  pagesShared: number
  pagesSharing: number
  pagesUnique: number
  ksmZeroPages: number
  framesInUse: number
}

/** Recount from the page tables and check every structural invariant; throws on the first violation. */
export function recount(engine: Engine): Recount {
  const pool = engine.pool
  const table = engine.core.table
  const mapped = new Map<number, number>() // frame -> PTEs mapping it
  const merged = new Map<number, number>() // frame -> PAGE_MERGED PTEs mapping it
  let ksmZero = 0
  for (const s of engine.spaces()) {
    let spaceZero = 0
    for (let pi = 0; pi < s.pages; pi++) {
      const f = s.frameAt(pi)
      const fl = s.pflags[pi]!
      const writable = s.isWritable(pi)
      if ((fl & PAGE_KSM_ZERO) !== 0) {
        if (f !== ZERO_FRAME) throw new Error(`${s.name}[${pi}]: KSM_ZERO page maps frame ${f}`)
        if ((fl & PAGE_MERGED) !== 0 || writable) throw new Error(`${s.name}[${pi}]: KSM_ZERO page is merged or writable`)
        spaceZero++
      }
      if (f === ZERO_FRAME) {
        if ((fl & (PAGE_MERGED | PAGE_PINNED)) !== 0 || writable) throw new Error(`${s.name}[${pi}]: zero-frame page has flags ${fl}${writable ? " and is writable" : ""}`)
        continue
      }
      mapped.set(f, (mapped.get(f) ?? 0) + 1)
      if ((fl & PAGE_MERGED) !== 0) {
        merged.set(f, (merged.get(f) ?? 0) + 1)
        if ((pool.flags[f]! & FRAME_KSM) === 0) throw new Error(`${s.name}[${pi}]: merged page maps non-table frame ${f}`)
        if ((fl & PAGE_PINNED) !== 0 || writable) throw new Error(`${s.name}[${pi}]: merged page is writable or pinned`)
      }
      if (writable) {
        if ((fl & PAGE_UFFD_WP) !== 0) throw new Error(`${s.name}[${pi}]: writable and uffd-wp`)
        if ((pool.flags[f]! & FRAME_KSM) !== 0) throw new Error(`${s.name}[${pi}]: writable page maps a table frame`)
      }
      if ((fl & PAGE_PINNED) !== 0 && (pool.flags[f]! & 2) === 0) throw new Error(`${s.name}[${pi}]: pinned page's frame not FRAME_PINNED`)
    }
    if (spaceZero !== s.ksmZeroPages) throw new Error(`${s.name}: ksmZeroPages ${s.ksmZeroPages} != recount ${spaceZero}`)
    ksmZero += spaceZero
  }
  // Every mapped frame's refcount equals its PTE count; writable pages are sole mappers.
  for (const [f, n] of mapped) {
    if (pool.refcount[f] !== n) throw new Error(`frame ${f}: refcount ${pool.refcount[f]} != ${n} PTEs`)
  }
  for (const s of engine.spaces()) {
    for (let pi = 0; pi < s.pages; pi++) {
      if (s.isWritable(pi) && mapped.get(s.frameAt(pi)) !== 1) throw new Error(`${s.name}[${pi}]: writable page's frame is shared`)
    }
  }
  // Table: every entry's frame is a mapped table frame with exactly its merged mappers; no stale entries.
  let shared = 0
  let sharing = 0
  let unique = 0
  const entries = table.entries()
  const seen = new Set<number>()
  for (const e of entries) {
    const f = table.frame[e]!
    if (seen.has(f)) throw new Error(`frame ${f} has two table entries`)
    seen.add(f)
    if ((pool.flags[f]! & FRAME_KSM) === 0) throw new Error(`entry ${e}: frame ${f} not FRAME_KSM`)
    if (pool.entry[f] !== e) throw new Error(`frame ${f}: back-pointer ${pool.entry[f]} != entry ${e}`)
    const m = merged.get(f) ?? 0
    if (m === 0) throw new Error(`entry ${e} (frame ${f}) is stale: no merged page maps it`)
    if (table.mappers(e) !== m) throw new Error(`entry ${e}: mappers ${table.mappers(e)} != ${m} merged PTEs`)
    if ((pool.flags[f]! & FRAME_SHARED) !== 0) {
      shared++
      sharing += m - 1
    } else {
      if (m !== 1) throw new Error(`unique entry ${e} has ${m} mappers`)
      unique++
    }
  }
  for (const f of merged.keys()) if (!seen.has(f)) throw new Error(`merged frame ${f} has no table entry`)
  for (let f = 1; f < pool.capacity; f++) {
    if ((pool.flags[f]! & FRAME_KSM) !== 0 && !seen.has(f)) throw new Error(`frame ${f} is FRAME_KSM but not in the table`)
    if (pool.refcount[f]! > 0 && !mapped.has(f)) throw new Error(`frame ${f} leaked: refcount ${pool.refcount[f]} but no PTE maps it`)
  }
  return { pagesShared: shared, pagesSharing: sharing, pagesUnique: unique, ksmZeroPages: ksmZero, framesInUse: mapped.size }
}

/** Recount and compare with engine.stats() / engine.memory(); throws with both on mismatch. */
export function checkCounters(engine: Engine): Recount {
  const r = recount(engine)
  const s = engine.stats()
  const m = engine.memory()
  const got = { pagesShared: s.pagesShared, pagesSharing: s.pagesSharing, pagesUnique: s.pagesUnique, ksmZeroPages: s.ksmZeroPages, framesInUse: m.framesInUse }
  for (const k of Object.keys(r) as (keyof Recount)[]) {
    if (got[k] !== r[k]) throw new Error(`counter ${k}: engine says ${got[k]}, recount says ${r[k]}\n${JSON.stringify({ got, recount: r })}`)
  }
  return r
}
