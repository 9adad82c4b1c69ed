/**
 * The frame pool (src/memory/frames.ts) on its own: the zero frame, ensureFree / alloc / free /
 * decref, refusals (maxMemoryBytes, the failpoint, the backing) that change nothing, placement
 * in the fullest non-full slab, the flat store's growth, shrink and revocation (old views
 * detached, users told, live frames kept), takeFree / allocFrom, secure mode's allocRandom
 * (only free frames, about uniformly), recycled page tables, and the byte operations it does
 * through its backing.
 */
import { describe, expect, it } from "vitest"
import { Busy, InvalidArgument, OutOfMemory } from "../../src/errors.ts"
import { type FrameBacking, heapBacking } from "../../src/memory/backing.ts"
import { FramePool, resolveFramePoolOptions, ZERO_FRAME } from "../../src/memory/frames.ts"
import { makeRandom } from "../../src/memory/random.ts"

const PS = 512
const FPS = 4

function pool(options: { maxMemoryBytes?: number; slabBytes?: number } = {}, backing?: FrameBacking): FramePool {
  return new FramePool(resolveFramePoolOptions({ pageSize: PS, slabBytes: FPS * PS, ...options }), backing)
}

/** Everything a refused call must leave as it was (metadata arrays may have grown: reserved room). */
function books(p: FramePool): unknown {
  return { reserved: p.bytesReserved, store: p.bytes, free: p.framesFree, inUse: p.framesInUse, slabs: p.slabCount, freeList: [...p.freeFrames()] }
}

/** Fill frame `f` with `byte`. */
function paint(p: FramePool, f: number, byte: number): void {
  p.bytes.fill(byte, f << p.pageShift, (f + 1) << p.pageShift)
}

/** Allocate `n` frames, each mapped once. */
function take(p: FramePool, n: number): number[] {
  p.ensureFree(n)
  return Array.from({ length: n }, () => {
    const f = p.alloc()
    p.refcount[f] = 1
    return f
  })
}

describe("FramePool basics", () => {
  it("frame 0 is the zero frame, in slab 0, not in use; the rest of slab 0 is free", () => {
    const p = pool()
    expect(p.framesInUse).toBe(0)
    expect(p.framesFree).toBe(FPS - 1)
    expect(p.bytesReserved).toBe(FPS * PS)
    expect(p.freeFrames()).not.toContain(ZERO_FRAME)
    expect(p.isZero(ZERO_FRAME)).toBe(true)
  })

  it("ensureFree(n) reserves whole slabs up front; n allocations then never grow the pool", () => {
    const p = pool()
    p.ensureFree(10)
    expect(p.framesFree).toBeGreaterThanOrEqual(10)
    const reserved = p.bytesReserved
    const frames = Array.from({ length: 10 }, () => p.alloc())
    expect(new Set(frames).size).toBe(10)
    expect(frames).not.toContain(ZERO_FRAME)
    expect(p.bytesReserved).toBe(reserved)
    expect(p.framesInUse).toBe(10)
  })

  it("decref frees a frame at zero references (flags cleared, back on the free list); the zero frame is ignored", () => {
    const p = pool()
    const [f] = take(p, 1) as [number]
    p.refcount[f] = 2
    p.flags[f] = 1
    p.decref(f)
    expect(p.freeFrames()).not.toContain(f)
    const frees = p.frees
    p.decref(f)
    expect(p.freeFrames()).toContain(f)
    expect([p.flags[f], p.framesInUse, p.frees]).toEqual([0, 0, frees + 1])
    const before = books(p)
    p.decref(ZERO_FRAME)
    expect(books(p)).toEqual(before)
  })

  it("allocZeroed zeroes a frame that held data", () => {
    const p = pool()
    const [f] = take(p, 1) as [number]
    paint(p, f, 7)
    p.refcount[f] = 0
    p.free(f)
    const g = p.allocZeroed()
    expect(g).toBe(f) // the most recently freed frame of the fullest slab
    expect(p.isZero(g)).toBe(true)
  })
})

describe("FramePool refusals change nothing", () => {
  it("past maxMemoryBytes: OutOfMemory naming the cap", () => {
    const p = pool({ maxMemoryBytes: 3 * FPS * PS })
    take(p, 2 * FPS)
    const before = books(p)
    expect(() => p.ensureFree(FPS + 1)).toThrow(OutOfMemory)
    expect(() => p.ensureFree(FPS + 1)).toThrow(/maxMemoryBytes/)
    expect(books(p)).toEqual(before)
    // What is left under the cap can still be allocated.
    expect(p.framesFree).toBe(FPS - 1)
    expect(take(p, FPS - 1)).toHaveLength(FPS - 1)
  })

  it("past the store's 2 GiB limit (int32 byte offsets): OutOfMemory naming it, before allocating", () => {
    const big = new FramePool(resolveFramePoolOptions({ pageSize: 65536 }))
    const before = books(big)
    // 2 GiB of 64 KiB frames would make `frame << 16` wrap negative at the top of the store.
    expect(() => big.ensureFree(2 ** 31 / 65536)).toThrow(OutOfMemory)
    expect(() => big.ensureFree(2 ** 31 / 65536)).toThrow(/frame store's limit \(2147418112 bytes/)
    expect(books(big)).toEqual(before)
    // A cap the caller set is named as theirs.
    expect(() => pool({ maxMemoryBytes: FPS * PS }).ensureFree(FPS + 1)).toThrow(/maxMemoryBytes \(2048\)/)
  })

  it("a cap that is not a whole number of slabs gives a short last slab", () => {
    const p = pool({ maxMemoryBytes: FPS * PS + 2 * PS })
    take(p, FPS - 1 + 2)
    expect(p.bytesReserved).toBe(FPS * PS + 2 * PS)
    expect(p.framesFree).toBe(0)
    expect(() => p.ensureFree(1)).toThrow(OutOfMemory)
  })

  it("the failpoint fails ensureFree before anything changes, naming the site", () => {
    const p = pool()
    const sites: string[] = []
    p.failpoint = (site) => {
      sites.push(site)
      throw new OutOfMemory("injected")
    }
    const before = books(p)
    expect(() => p.ensureFree(100, "cow")).toThrow(OutOfMemory)
    expect(sites).toEqual(["cow"])
    expect(books(p)).toEqual(before)
  })

  it("a backing that refuses memory (RangeError) becomes OutOfMemory", () => {
    let refuse = false
    const base = heapBacking(PS)
    const p = pool({}, { ...base, allocate: (bytes) => (refuse ? new Uint8Array(-1) : base.allocate(bytes)) })
    refuse = true
    const before = books(p)
    expect(() => p.ensureFree(100)).toThrow(OutOfMemory)
    expect(books(p)).toEqual(before)
  })

  it("while a user callback runs (busy), ensureFree throws Busy", () => {
    const p = pool()
    p.busy = 1
    expect(() => p.ensureFree(1)).toThrow(Busy)
    p.busy = 0
    p.ensureFree(1)
  })

  it("options are validated, naming the field", () => {
    expect(() => resolveFramePoolOptions({ pageSize: 1000 })).toThrow(InvalidArgument)
    expect(() => resolveFramePoolOptions({ pageSize: 256 })).toThrow(/pageSize/)
    expect(() => resolveFramePoolOptions({ pageSize: 4096, maxMemoryBytes: 100 })).toThrow(/maxMemoryBytes/)
    expect(() => resolveFramePoolOptions({ pageSize: 4096, slabBytes: 2048 })).toThrow(/slabBytes/)
    expect(resolveFramePoolOptions({})).toEqual({ pageSize: 4096, maxMemoryBytes: Number.POSITIVE_INFINITY, slabBytes: 1 << 20, sharedMemory: false })
  })
})

describe("placement and slabs", () => {
  it("allocation goes to the fullest non-full slab, so sparse slabs drain", () => {
    const p = pool()
    const frames = take(p, 3 * FPS - 1) // slabs 0, 1, 2 full
    const slabOf = (f: number) => f >>> p.slabShift
    // Slab 1 keeps 3 of 4 frames, slab 2 keeps 1.
    const inSlab = (s: number) => frames.filter((f) => slabOf(f) === s)
    for (const f of inSlab(1).slice(0, 1)) p.decref(f)
    for (const f of inSlab(2).slice(0, 3)) p.decref(f)
    expect(slabOf(p.alloc())).toBe(1)
    expect(slabOf(p.alloc())).toBe(2)
  })

  it("the store grows by reallocation, keeping every frame's bytes; users are told; old views are detached when write translations were lent", () => {
    const p = pool()
    const [f] = take(p, 1) as [number]
    paint(p, f, 0x5a)
    const old = p.bytes
    let told = 0
    p.addUser({ storeChanged: () => told++ })
    take(p, FPS)
    expect(p.bytes === old).toBe(false)
    // Nothing lent: the old buffer is simply dropped (a transfer would only delay its release).
    expect(old.byteLength).toBeGreaterThan(0)
    expect(told).toBeGreaterThan(0)
    // Lent: the next growth detaches the old buffer, so a kept view takes no writes.
    const lentView = p.bytes
    p.lentForWrite = true
    take(p, 4 * FPS)
    expect(lentView.byteLength).toBe(0) // detached
    expect(p.lentForWrite).toBe(false)
    expect(p.bytesReserved).toBe(p.slabCount * FPS * PS)
    expect(p.bytes[(f << p.pageShift) + PS - 1]).toBe(0x5a)
  })

  it("shrink drops empty top slabs, keeping the frames below; it refuses to drop a slab in use", () => {
    const p = pool()
    const frames = take(p, 3 * FPS - 1) // slabs 0, 1, 2 full
    for (const f of frames) paint(p, f, f)
    const top = frames.filter((f) => f >>> p.slabShift === 2)
    expect(() => p.shrink(2)).toThrow(/slab 2 still holds frames/)
    for (const f of top) p.decref(f)
    expect(p.shrink(0)).toBe(0)
    expect(p.shrink(3)).toBe(0)
    const free = p.framesFree
    expect(p.shrink(2)).toBe(FPS * PS)
    expect([p.slabCount, p.bytesReserved, p.framesFree]).toEqual([2, 2 * FPS * PS, free - FPS])
    expect([...p.freeFrames()].some((f) => f >>> p.slabShift === 2)).toBe(false)
    for (const f of frames.filter((f) => f >>> p.slabShift < 2)) expect(p.bytes[f << p.pageShift], `frame ${f}`).toBe(f)
    expect(p.slabFree(2)).toBe(0)
    expect(p.allocFrom(2)).toBe(-1)
    // It grows back on demand.
    take(p, FPS)
    expect(p.slabCount).toBe(3)
  })

  it("growth lists only the slabs needed; the rest of the store is headroom, listed as frames run out, without a copy", () => {
    const p = pool()
    for (let k = 0; k < 5; k++) take(p, FPS) // the store grows 1, 2, 3, 5, 8 slabs (half again each time)
    expect(p.slabCount).toBe(6)
    expect(p.bytesReserved).toBe(8 * FPS * PS)
    expect(p.framesFree).toBe(FPS - 1)
    expect(p.capacity).toBeLessThan(8 * FPS) // the per-frame arrays cover the listed slabs
    expect([...p.freeFrames()].every((f) => f < 6 * FPS)).toBe(true)
    const store = p.bytes
    take(p, 2 * FPS) // from the headroom
    expect([p.slabCount, p.bytes]).toEqual([8, store])
  })

  it("a store above 4 MiB is at least 32 MiB (glibc maps it apart from its heap); the shrink keeps the floor, its dropped slabs fresh", () => {
    const MiB = 1 << 20
    const p = new FramePool(resolveFramePoolOptions({ pageSize: 4096 }))
    const fps = p.framesPerSlab
    const frames = take(p, 7 * fps) // 8 MiB needed: 32 MiB
    expect([p.slabCount, p.bytesReserved]).toEqual([8, 32 * MiB])
    for (const f of frames) paint(p, f, 1)
    for (const f of frames.filter((f) => f >= 5 * fps)) p.decref(f)
    // Down to 5 slabs: the store keeps 32 MiB, reallocated, so the dropped slabs are unwritten headroom again.
    const old = p.bytes
    expect(p.shrink(5)).toBe(0)
    expect([p.slabCount, p.bytesReserved, p.bytes === old]).toEqual([5, 32 * MiB, false])
    expect(p.bytes.subarray(5 * MiB).every((b) => b === 0)).toBe(true)
    // Down to 1 slab: at most 4 MiB, the exact size.
    for (const f of frames.filter((f) => f >= fps - 1)) if (p.refcount[f] === 1) p.decref(f)
    expect(p.shrink(1)).toBe(31 * MiB)
    expect(p.bytesReserved).toBe(MiB)
    // A cap below 32 MiB caps the floor too.
    const capped = new FramePool(resolveFramePoolOptions({ pageSize: 4096, maxMemoryBytes: 6 * MiB }))
    take(capped, 5 * fps)
    expect(capped.bytesReserved).toBe(6 * MiB)
  })

  it("revokeWrites moves the store to a new buffer (no copy, views of the old one detached) only if writes were lent", () => {
    const p = pool()
    const [f] = take(p, 1) as [number]
    paint(p, f, 3)
    let told = 0
    p.addUser({ storeChanged: () => told++ })
    const before = p.bytes
    p.revokeWrites()
    expect([p.bytes === before, told]).toEqual([true, 0])
    p.lentForWrite = true
    p.revokeWrites()
    expect(p.bytes === before).toBe(false)
    expect(before.byteLength).toBe(0)
    expect([told, p.lentForWrite, p.bytes[f << p.pageShift]]).toEqual([1, false, 3])
  })

  it("page tables of a disposed space are recycled for the next of the same size, zeroed when asked", () => {
    const p = pool()
    const t = p.takeTables(8, true)
    t.pte[3] = 7
    t.pflags[3] = 1
    p.recycleTables(t.pte, t.pflags)
    const again = p.takeTables(8, false)
    expect(again.pte).toBe(t.pte)
    expect(again.pte[3]).toBe(7)
    p.recycleTables(again.pte, again.pflags)
    const zeroed = p.takeTables(8, true)
    expect(zeroed.pte).toBe(t.pte)
    expect([zeroed.pte[3], zeroed.pflags[3]]).toEqual([0, 0])
    expect(p.takeTables(8, true).pte).not.toBe(t.pte)
  })

  it("takeFree takes exactly the frame asked for, only if it is free", () => {
    const p = pool()
    take(p, 2)
    p.ensureFree(6)
    const f = p.freeFrames()[4]!
    expect(p.takeFree(f)).toBe(true)
    expect(p.freeFrames()).not.toContain(f)
    expect(p.takeFree(f)).toBe(false)
    expect(p.takeFree(p.capacity + 100)).toBe(false)
  })

  it("allocFrom(s) allocates in slab s or returns -1; it never grows the pool", () => {
    const p = pool()
    take(p, 2 * FPS - 1)
    p.decref(FPS + 1)
    const reserved = p.bytesReserved
    expect(p.allocFrom(1)).toBe(FPS + 1)
    expect(p.allocFrom(1)).toBe(-1)
    expect(p.allocFrom(7)).toBe(-1)
    expect(p.allocFrom(-1)).toBe(-1)
    expect(p.bytesReserved).toBe(reserved)
  })
})

describe("allocRandom (secure mode)", () => {
  /** How often each free frame is drawn, drawing one and putting it back `draws` times. */
  function histogram(p: FramePool, draws: number): Map<number, number> {
    const counts = new Map<number, number>()
    const free = new Set(p.freeFrames())
    for (let i = 0; i < draws; i++) {
      const f = p.allocRandom(false)
      expect(free.has(f), `frame ${f} was not free`).toBe(true)
      counts.set(f, (counts.get(f) ?? 0) + 1)
      p.free(f)
    }
    return counts
  }

  it("draws only free frames, about uniformly, while many are free", () => {
    const p = pool()
    p.random = makeRandom(Uint32Array.of(1, 2, 3, 4))
    take(p, 40)
    for (let f = 2; f < 40; f += 3) p.decref(f) // free frames scattered over many slabs
    const free = p.framesFree
    const counts = histogram(p, 400 * free)
    expect(counts.size).toBe(free)
    for (const [f, n] of counts) expect(n / 400, `frame ${f}`).toBeGreaterThan(0.75)
    for (const [f, n] of counts) expect(n / 400, `frame ${f}`).toBeLessThan(1.25)
  })

  it("draws only free frames, about uniformly, when few are free among many (the counting path)", () => {
    const p = pool()
    p.random = makeRandom(Uint32Array.of(5, 6, 7, 8))
    const frames = take(p, 400)
    p.ensureFree(0)
    while (p.framesFree > 0) p.refcount[p.alloc()] = 1
    for (const f of [frames[3]!, frames[200]!, frames[399]!]) p.decref(f)
    const counts = histogram(p, 3000)
    expect([...counts.keys()].sort((a, b) => a - b)).toEqual([frames[3]!, frames[200]!, frames[399]!].sort((a, b) => a - b))
    for (const n of counts.values()) expect(n).toBeGreaterThan(800)
  })

  it("zeroes the frame when asked", () => {
    const p = pool()
    const [f] = take(p, 1) as [number]
    paint(p, f, 9)
    p.decref(f)
    while (true) {
      const g = p.allocRandom(true)
      expect(p.isZero(g)).toBe(true)
      if (g === f) break
      p.free(g)
    }
  })
})

describe("byte operations", () => {
  it("compare and isZero go through the backing at each frame's offset in the store; copy copies one frame", () => {
    const calls: string[] = []
    const base = heapBacking(PS)
    const p = pool({}, {
      shared: false,
      allocate: base.allocate,
      compare: (a, ao, b, bo, n) => (calls.push(`compare ${ao} ${bo} ${n}`), base.compare(a, ao, b, bo, n)),
      isZero: (a, ao, n) => (calls.push(`isZero ${ao} ${n}`), base.isZero(a, ao, n)),
    })
    const [a, next, b] = take(p, FPS + 1).slice(FPS - 2) as [number, number, number] // the last of slab 0, the first two of slab 1
    expect(a >>> p.slabShift).not.toBe(b >>> p.slabShift)
    paint(p, next, 0xee)
    p.bytes[(a << p.pageShift) + 5] = 1
    expect(p.isZero(a)).toBe(false)
    expect(p.isZero(b)).toBe(true)
    expect(p.compare(a, b)).toBeGreaterThan(0)
    expect(p.compare(b, a)).toBeLessThan(0)
    p.copy(a, b)
    expect(p.compare(a, b)).toBe(0)
    expect(p.bytes[(b << p.pageShift) + 5]).toBe(1)
    // Only frame b was written: the frames after a and after b are as they were.
    expect(p.bytes[next << p.pageShift]).toBe(0xee)
    expect(p.isZero(b + 1)).toBe(true)
    const [oa, ob] = [a << p.pageShift, b << p.pageShift]
    expect(calls).toEqual([`isZero ${oa} ${PS}`, `isZero ${ob} ${PS}`, `compare ${oa} ${ob} ${PS}`, `compare ${ob} ${oa} ${PS}`, `compare ${oa} ${ob} ${PS}`, `isZero ${ob + PS} ${PS}`])
  })
})
