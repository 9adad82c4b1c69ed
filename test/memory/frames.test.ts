/**
 * The frame pool (src/memory/frames.ts) on its own: the zero frame, ensureFree / alloc / free /
 * decref, refusals (maxMemoryBytes, the failpoint, the backing) that change nothing, placement
 * in the fullest non-full slab, releaseSlab, takeFree / allocFrom, secure mode's allocRandom
 * (only free frames, about uniformly), and the byte operations it does through its backing.
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

/** Everything a refused call must leave as it was. */
function books(p: FramePool): unknown {
  return { reserved: p.bytesReserved, free: p.framesFree, inUse: p.framesInUse, slabs: p.slabs.length, capacity: p.capacity, freeList: [...p.freeFrames()] }
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
    p.slabOf(f).fill(7, p.offsetOf(f), p.offsetOf(f) + PS)
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
    expect(resolveFramePoolOptions({})).toEqual({ pageSize: 4096, maxMemoryBytes: Number.POSITIVE_INFINITY, slabBytes: 1 << 20 })
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

  it("releaseSlab drops an empty slab (never slab 0, never one in use); its slot is reused first", () => {
    const p = pool()
    const frames = take(p, 3 * FPS - 1)
    const slab1 = frames.filter((f) => f >>> p.slabShift === 1)
    expect(p.releaseSlab(1)).toBe(0) // in use
    for (const f of slab1) p.decref(f)
    expect(p.releaseSlab(0)).toBe(0)
    const free = p.framesFree
    expect(p.releaseSlab(1)).toBe(FPS * PS)
    expect(p.slabs[1]).toBeNull()
    expect(p.framesFree).toBe(free - FPS)
    expect([...p.freeFrames()].some((f) => f >>> p.slabShift === 1)).toBe(false)
    expect(p.releaseSlab(1)).toBe(0) // already released
    expect(p.slabFree(1)).toBe(0)
    p.ensureFree(1)
    expect(p.slabs[1]).not.toBeNull()
    expect(p.slabs.length).toBe(3)
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
    p.slabOf(f).fill(9, p.offsetOf(f), p.offsetOf(f) + PS)
    p.decref(f)
    while (true) {
      const g = p.allocRandom(true)
      expect(p.isZero(g)).toBe(true)
      if (g === f) break
      p.free(g)
    }
  })
})

describe("byte operations go through the backing", () => {
  it("compare, copy and isZero use the backing with each frame's slab and offset", () => {
    const calls: string[] = []
    const base = heapBacking(PS)
    const p = pool({}, {
      allocate: base.allocate,
      compare: (a, ao, b, bo, n) => (calls.push(`compare ${ao} ${bo} ${n}`), base.compare(a, ao, b, bo, n)),
      copy: (s, so, d, dso, n) => (calls.push(`copy ${so} ${dso} ${n}`), base.copy(s, so, d, dso, n)),
      isZero: (a, ao, n) => (calls.push(`isZero ${ao} ${n}`), base.isZero(a, ao, n)),
    })
    const [a, b] = take(p, FPS).slice(FPS - 2) as [number, number] // the last of slab 0, the first of slab 1
    expect(a >>> p.slabShift).not.toBe(b >>> p.slabShift)
    p.slabOf(a)[p.offsetOf(a) + 5] = 1
    expect(p.isZero(a)).toBe(false)
    expect(p.isZero(b)).toBe(true)
    expect(p.compare(a, b)).toBeGreaterThan(0)
    expect(p.compare(b, a)).toBeLessThan(0)
    p.copy(a, b)
    expect(p.compare(a, b)).toBe(0)
    expect(p.slabOf(b)[p.offsetOf(b) + 5]).toBe(1)
    const [oa, ob] = [p.offsetOf(a), p.offsetOf(b)]
    expect(calls).toEqual([`isZero ${oa} ${PS}`, `isZero ${ob} ${PS}`, `compare ${oa} ${ob} ${PS}`, `compare ${ob} ${oa} ${PS}`, `copy ${oa} ${ob} ${PS}`, `compare ${oa} ${ob} ${PS}`])
  })
})
