/**
 * The frame pool's own books, recounted from the page tables and the free list: per-slab use,
 * the free list, the byte figures of engine.memory(), and what a full compaction must leave.
 */
import { expect } from "vitest"
import { FRAME_PINNED, ZERO_FRAME } from "../../src/memory/frames.ts"
import type { Engine } from "./internals.ts"

/** After a full compaction: no victim set fits any more, so fewer than one slab's worth of frames is free in non-empty slabs. */
export function checkCompacted(engine: Engine): void {
  const pool = engine.pool
  const fps = pool.framesPerSlab
  let pinnedSlabFree = 0
  let free = 0
  for (let s = 0; s < pool.slabs.length; s++) {
    if (pool.slabs[s] === null) continue
    expect(pool.slabUsed[s], `slab ${s} is empty after a full compaction`).toBeGreaterThan(0)
    let pinned = s === 0
    for (let f = s * fps; f < (s + 1) * fps; f++) if ((pool.flags[f]! & FRAME_PINNED) !== 0) pinned = true
    const fr = fps - pool.slabUsed[s]!
    if (pinned) pinnedSlabFree += fr
    free += fr
  }
  // Free frames outside slabs that must stay (slab 0, pinned) are less than one slab.
  expect(free - pinnedSlabFree < fps || free < fps).toBe(true)
}

/** The pool's books against a recount from every live space's page table and the free list. */
export function recountPool(engine: Engine): void {
  const pool = engine.pool
  const ps = pool.pageSize
  const nSlabs = pool.slabs.length
  const mappedPerSlab = new Int32Array(nSlabs)
  const mapped = new Set<number>()
  for (const space of engine.spaces()) {
    for (let p = 0; p < space.pages; p++) {
      const f = space.pte[p]!
      if (f === ZERO_FRAME) continue
      expect(pool.slabs[f >>> pool.slabShift], `${space.name}[${p}] maps frame ${f} in a released slab`).not.toBeNull()
      if (!mapped.has(f)) {
        mapped.add(f)
        mappedPerSlab[f >>> pool.slabShift]!++
      }
    }
  }
  mappedPerSlab[0]!++ // the zero frame
  const free = pool.freeFrames()
  const freeSet = new Set(free)
  expect(freeSet.size, "a frame is on the free list twice").toBe(free.length)
  let slabs = 0
  for (let s = 0; s < nSlabs; s++) {
    if (pool.slabs[s] === null) {
      expect(mappedPerSlab[s]).toBe(0)
      continue
    }
    slabs++
    expect(pool.slabUsed[s], `slab ${s} use`).toBe(mappedPerSlab[s])
  }
  for (const f of free) {
    expect(mapped.has(f), `free frame ${f} is mapped`).toBe(false)
    expect(pool.slabs[f >>> pool.slabShift], `free frame ${f} in a released slab`).not.toBeNull()
    expect(pool.refcount[f]).toBe(0)
  }
  const m = engine.memory()
  expect(m.slabs).toBe(slabs)
  expect(m.framesFree).toBe(free.length)
  expect(m.framesInUse).toBe(mapped.size)
  expect(m.bytesReserved).toBe(slabs * pool.framesPerSlab * ps)
  expect(m.bytesReserved).toBe(m.bytesInUse + m.bytesFree + ps)
  // Honest profit: merged-away bytes minus the free bytes still held.
  const st = engine.stats()
  expect(st.profitReturned).toBe(Math.max(0, (st.pagesSharing + st.ksmZeroPages) * ps - m.bytesFree))
}
