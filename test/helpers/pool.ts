/**
 * The frame pool's own books, recounted from the page tables and the free list: per-slab use,
 * the free list, the byte figures of engine.memory(), and what a full compaction must leave.
 */
import { expect } from "vitest"
import { FRAME_PINNED, type FramePool, ZERO_FRAME } from "../../src/memory/frames.ts"
import type { Engine } from "./internals.ts"

/**
 * The store's headroom, in bytes, recounted: the store's own buffer past the end of its last
 * listed slab. Growth adds half the store at a time and lists slabs only as frames are needed,
 * so bytesReserved (the buffer) is `bytesInUse + bytesFree + pageSize + headroom`. Checks that
 * the headroom is what growth and the 32 MiB floor can leave, and never written (all zero), so it
 * costs the process no resident memory.
 */
export function headroomBytes(pool: FramePool): number {
  const store = pool.bytes.byteLength
  const listedEnd = Math.min(store, pool.slabCount * pool.framesPerSlab * pool.pageSize)
  const headroom = store - listedEnd
  // Growth adds half the store (under a third of the new one, plus a slab's rounding), and a
  // store above 4 MiB is at least 32 MiB (glibc maps those apart from its heap: RFC, "The frame
  // store"), or the cap.
  const slab = pool.framesPerSlab * pool.pageSize
  const floor = Math.ceil((32 << 20) / slab) * slab
  const cap = Math.floor(pool.maxMemoryBytes / pool.pageSize) * pool.pageSize
  if (store > floor) expect(headroom, "headroom past a third of the store").toBeLessThan(store / 3 + slab)
  else if (store > 4 << 20) expect(store === floor || store === cap, `a store of ${store} bytes, between 4 MiB and the 32 MiB floor`).toBe(true)
  const words = new Uint32Array(pool.bytes.buffer, listedEnd, headroom >>> 2)
  let nonZero = 0
  for (let i = 0; i < words.length; i++) nonZero |= words[i]!
  expect(nonZero, "the store's headroom was written").toBe(0)
  return headroom
}

/**
 * After a full compaction the store holds the fewest slabs it can: the live frames (and every
 * pinned frame, which never moves) would not fit in one slab fewer.
 */
export function checkCompacted(engine: Engine): void {
  const pool = engine.pool
  const fps = pool.framesPerSlab
  const n = pool.slabCount
  let topPinned = 0
  for (let f = 0; f < n * fps; f++) if ((pool.flags[f]! & FRAME_PINNED) !== 0) topPinned = f >>> pool.slabShift
  const live = engine.memory().framesInUse + 1
  expect(n, "slabs after a full compaction").toBe(Math.max(topPinned + 1, Math.ceil(live / fps)))
}

/** The pool's books against a recount from every live space's page table and the free list. */
export function recountPool(engine: Engine): void {
  const pool = engine.pool
  const ps = pool.pageSize
  const nSlabs = pool.slabCount
  const mappedPerSlab = new Int32Array(nSlabs)
  const mapped = new Set<number>()
  for (const space of engine.spaces()) {
    for (let p = 0; p < space.pages; p++) {
      const f = space.frameAt(p)
      if (f === ZERO_FRAME) continue
      expect(f >>> pool.slabShift, `${space.name}[${p}] maps frame ${f} beyond the store`).toBeLessThan(nSlabs)
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
    slabs++
    expect(pool.slabUsed[s], `slab ${s} use`).toBe(mappedPerSlab[s])
  }
  for (const f of free) {
    expect(mapped.has(f), `free frame ${f} is mapped`).toBe(false)
    expect(f >>> pool.slabShift, `free frame ${f} beyond the store`).toBeLessThan(nSlabs)
    expect(pool.refcount[f]).toBe(0)
  }
  const m = engine.memory()
  expect(m.slabs).toBe(slabs)
  expect(m.framesFree).toBe(free.length)
  expect(m.framesInUse).toBe(mapped.size)
  // What is held is the store's buffer: the listed slabs (in use, free, the zero frame) and the headroom past them.
  expect(m.bytesReserved).toBe(pool.bytes.byteLength)
  expect(m.bytesReserved).toBe(m.bytesInUse + m.bytesFree + ps + headroomBytes(pool))
  // Honest profit: merged-away bytes minus the free bytes still held.
  const st = engine.stats()
  expect(st.profitReturned).toBe(Math.max(0, (st.pagesSharing + st.ksmZeroPages) * ps - m.bytesFree))
}
