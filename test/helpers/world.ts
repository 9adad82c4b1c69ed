/**
 * The world a random program runs in, and the one step every model-based test takes: an engine
 * (with its scanner, if any), its spaces, and beside each space the naive reference (one plain
 * Uint8Array, its pin counts, the frame each pinned page was pinned at). {@link step} applies
 * an op to sksm and then, only if the call returned, to the reference; where the reference says
 * the call must fail (discard of a pinned page, unpin of an unpinned one, max_page_sharing
 * while shared, out-of-bounds ranges) the call must throw that typed error and change nothing.
 * {@link check} compares everything after a step. A suite adds ops and checks of its own
 * through an {@link Extension}.
 */
import { expect } from "vitest"
import { SksmError } from "../../src/errors.ts"
import { FRAME_PINNED } from "../../src/memory/frames.ts"
import { PAGE_MERGEABLE, PAGE_MERGED, PAGE_PINNED } from "../../src/memory/flags.ts"
import type { ScannerOptions } from "../../src/policy/registry.ts"
import { type AddressSpace, Engine, type EngineOptions, type Scanner } from "./internals.ts"
import { checkCompacted } from "./pool.ts"
import type { Op } from "./program.ts"
import { checkCounters } from "./recount.ts"
import { checkScanCounters } from "./scanner.ts"
import { rejects } from "./errors.ts"
import { expectUnchanged, snapshot } from "./security.ts"

/** A space and its reference. */
export interface Tracked {
  readonly space: AddressSpace
  readonly ref: Uint8Array
  /** Pin count per page. */
  readonly pins: Int32Array
  /** Frame each pinned page mapped when its pin count went 0 -> 1; -1 when unpinned. */
  readonly pinnedFrame: Int32Array
}

export interface World {
  readonly engine: Engine
  readonly ps: number
  scanner: Scanner | null
  spaces: Tracked[]
  /** Next tag fillPages stamps on a unique page. */
  unique: number
}

/** What a suite adds to the shared program: ops of its own, checks of its own. */
export interface Extension<E = never> {
  /** Apply one of the suite's own ops (those `opArb`'s `extra` generates). */
  readonly step?: (w: World, op: E) => void
  /** Checks after the shared ones, after every step. */
  readonly check?: (w: World) => void
}

export function newWorld(options: EngineOptions, scanner?: ScannerOptions): World {
  const engine = new Engine(options)
  return { engine, ps: engine.pageSize, scanner: scanner === undefined ? null : engine.scanner(scanner), spaces: [], unique: 1 }
}

function track(w: World, space: AddressSpace, ref: Uint8Array): void {
  w.spaces.push({ space, ref, pins: new Int32Array(space.pages), pinnedFrame: new Int32Array(space.pages).fill(-1) })
}

function isOp(op: { k: string }): op is Op {
  return KINDS.has(op.k)
}
const KINDS = new Set<string>(["create", "write", "fill", "fillPages", "writeU32", "read", "discard", "fork", "pin", "unpin", "dispose", "merge", "unmerge", "advise", "mergeAny", "writeProtect", "unmergeAll", "maxPageSharing", "useZeroPages", "oob", "tick", "compact"])

/** The reference says `call` must fail: a typed error (tagged `tag`, any when null) that changes nothing. */
function refused(w: World, tag: string | null, call: () => unknown): void {
  rejects(w.engine, tag, call)
}

/** Byte range [addr, addr+len) clamped into the space. */
function clampRange(space: AddressSpace, addr: number, len: number): [number, number] {
  const a = addr % (space.size + 1)
  return [a, Math.min(len, space.size - a)]
}

/** Page run starting at `page` (modulo the space), at most `n` pages long. */
function pageRun(space: AddressSpace, page: number, n: number): [number, number] {
  const p0 = page % space.pages
  return [p0, Math.min(n, space.pages - p0)]
}

/** Apply `op` to sksm and, only if the call returned, to the reference. */
export function step<E extends { readonly k: string }>(w: World, op: Op | E, ext: Extension<E> = {}): void {
  if (!isOp(op)) {
    if (ext.step === undefined) throw new Error(`no extension handles op ${op.k}`)
    return ext.step(w, op as E)
  }
  const { engine, ps } = w
  switch (op.k) {
    case "create": {
      const space = engine.createSpace({ size: op.pages * ps, domain: `d${op.domain}` })
      if (op.advise) space.advise(0, space.size, "mergeable")
      return track(w, space, new Uint8Array(space.size))
    }
    case "unmergeAll":
      return engine.unmergeAll()
    case "maxPageSharing": {
      const cur = engine.maxPageSharing
      if (op.n < 2) return refused(w, "InvalidArgument", () => engine.setMaxPageSharing(op.n))
      if (op.n !== cur && engine.stats().pagesShared !== 0) return refused(w, "Busy", () => engine.setMaxPageSharing(op.n))
      engine.setMaxPageSharing(op.n)
      expect(engine.maxPageSharing).toBe(op.n)
      return
    }
    case "useZeroPages":
      return engine.setUseZeroPages(op.on)
    case "tick":
      for (let i = 0; i < op.n && w.scanner !== null; i++) w.scanner.tick()
      return
    case "compact":
      return compact(w, op.budget)
  }
  if (w.spaces.length === 0) return
  const t = w.spaces[op.s % w.spaces.length]!
  const { space, ref, pins } = t
  switch (op.k) {
    case "write": {
      const [a, n] = clampRange(space, op.addr, op.len)
      const bytes = new Uint8Array(n).fill(op.byte)
      if (op.pattern) for (let i = 0; i < n; i += 7) bytes[i] = (a + i) & 0xff
      space.write(a, bytes)
      ref.set(bytes, a)
      return
    }
    case "fill": {
      const [a, n] = clampRange(space, op.addr, op.len)
      space.fill(a, n, op.byte)
      ref.fill(op.byte, a, a + n)
      return
    }
    case "fillPages": {
      // Whole identical pages: what makes merging (and chains) happen. Unique ones never merge.
      const [p0, n] = pageRun(space, op.page, op.n)
      if (!op.unique) {
        space.fill(p0 * ps, n * ps, op.byte)
        ref.fill(op.byte, p0 * ps, (p0 + n) * ps)
        return
      }
      const bytes = new Uint8Array(n * ps).fill(op.byte)
      const tag = w.unique
      for (let i = 0; i < n; i++) new DataView(bytes.buffer).setUint32(i * ps + 4, tag + i, true)
      space.write(p0 * ps, bytes)
      w.unique += n
      ref.set(bytes, p0 * ps)
      return
    }
    case "writeU32": {
      const a = op.addr % (space.size - 3)
      space.writeU32(a, op.value)
      new DataView(ref.buffer).setUint32(a, op.value, true)
      expect(space.readU32(a)).toBe(op.value >>> 0)
      return
    }
    case "read": {
      const [a, n] = clampRange(space, op.addr, op.len)
      expect(space.read(a, n)).toEqual(ref.subarray(a, a + n))
      return
    }
    case "discard": {
      const [p0, n] = pageRun(space, op.page, op.n)
      if (pins.subarray(p0, p0 + n).some((c) => c > 0)) return refused(w, "PinnedPage", () => space.discard(p0 * ps, n * ps))
      space.discard(p0 * ps, n * ps)
      ref.fill(0, p0 * ps, (p0 + n) * ps)
      return
    }
    case "fork":
      return track(w, space.fork(), ref.slice())
    case "pin": {
      const [a, n] = clampRange(space, op.addr, op.len)
      space.pin(a, n)
      if (n > 0) for (let p = Math.floor(a / ps); p < Math.ceil((a + n) / ps); p++) if (pins[p]!++ === 0) t.pinnedFrame[p] = space.frameAt(p)
      return
    }
    case "unpin": {
      const [a, n] = clampRange(space, op.addr, op.len)
      const [p0, p1] = [Math.floor(a / ps), Math.ceil((a + n) / ps)]
      if (n > 0 && pins.subarray(p0, p1).some((c) => c === 0)) return refused(w, "InvalidArgument", () => space.unpin(a, n))
      space.unpin(a, n)
      if (n > 0) for (let p = p0; p < p1; p++) if (--pins[p]! === 0) t.pinnedFrame[p] = -1
      return
    }
    case "dispose": {
      space.dispose()
      w.spaces.splice(w.spaces.indexOf(t), 1)
      expect(() => space.readU8(0)).toThrow(expect.objectContaining({ _tag: "SpaceDisposed" }))
      return
    }
    case "merge": {
      const [p0, n] = pageRun(space, op.page, op.n)
      const r = space.merge(p0 * ps, n * ps)
      const sk = r.skipped
      expect(r.scanned).toBe(n)
      expect(r.merged + r.zeroMapped + r.inserted + r.alreadyMerged + sk.unpopulated + sk.pinned + sk.crowded + sk.notIdle).toBe(n)
      // Only secure mode's idle tracking skips a page as "not idle".
      if (!space.secure) expect(sk.notIdle).toBe(0)
      return
    }
    case "unmerge": {
      const [p0, n] = pageRun(space, op.page, op.n)
      space.unmerge(p0 * ps, n * ps)
      return
    }
    case "advise": {
      const [p0, n] = pageRun(space, op.page, op.n)
      space.advise(p0 * ps, n * ps, op.on ? "mergeable" : "unmergeable")
      if (!op.on) for (let p = p0; p < p0 + n; p++) expect(space.pflags[p]! & (PAGE_MERGEABLE | PAGE_MERGED)).toBe(0)
      return
    }
    case "mergeAny":
      return space.setMergeAny(op.on)
    case "writeProtect": {
      const [p0, n] = pageRun(space, op.page, op.n)
      space.writeProtect(p0 * ps, n * ps, true)
      return
    }
    case "oob": {
      const bad: (() => unknown)[] = [
        () => space.write(space.size - 1, new Uint8Array(2)),
        () => space.readU32(space.size - 3),
        () => space.fill(-1, 1, 0),
        () => space.discard(1, ps),
        () => space.merge(0, space.size + 1),
        () => space.writeU32(Number.NaN, 1),
      ]
      return refused(w, null, bad[op.which % bad.length]!)
    }
  }
}

/** An explicit compaction step: within its budget, moving data never changes what is in use. */
function compact(w: World, budget: number): void {
  const { engine } = w
  const before = engine.memory().framesInUse
  const store = engine.pool.bytes.byteLength
  const slabs = engine.pool.slabCount
  const r = engine.compact({ budgetPages: budget })
  expect(r.framesMoved).toBeLessThanOrEqual(budget)
  expect(r.slabsReleased).toBe(slabs - engine.pool.slabCount)
  expect(r.bytesReleased).toBe(store - engine.pool.bytes.byteLength)
  expect(r.pagesRewritten).toBeGreaterThanOrEqual(r.framesMoved)
  expect(engine.memory().framesInUse).toBe(before)
  if (budget === Number.POSITIVE_INFINITY) {
    expect(r.done).toBe(true)
    checkCompacted(engine)
  }
}

/** Everything after a step: contents, pins, every counter recounted, then the suite's checks. */
export function check<E>(w: World, ext: Extension<E> = {}): void {
  const pool = w.engine.pool
  for (const { space, ref, pins, pinnedFrame } of w.spaces) {
    const got = space.read(0, space.size)
    if (Buffer.compare(got, ref) !== 0) {
      const i = got.findIndex((b, k) => b !== ref[k])
      throw new Error(`${space.name}: byte ${i} is ${got[i]}, reference ${ref[i]}`)
    }
    for (let p = 0; p < space.pages; p++) {
      // Pinned pages are never merged, and keep the frame they were pinned at.
      if ((space.pflags[p]! & PAGE_PINNED) !== 0) expect(space.pflags[p]! & PAGE_MERGED).toBe(0)
      if (pins[p]! === 0) continue
      const f = pinnedFrame[p]!
      if (space.frameAt(p) !== f) throw new Error(`${space.name}[${p}] is pinned at frame ${f} but now maps ${space.frameAt(p)}`)
      expect(pool.flags[f]! & FRAME_PINNED).toBe(FRAME_PINNED)
    }
  }
  checkCounters(w.engine)
  if (w.scanner !== null) {
    checkScanCounters(w.engine, w.scanner)
    // engine.stats() reports the active scanner's counters.
    const s = w.engine.stats()
    const c = w.scanner.scanCounters()
    expect([s.pagesUnshared, s.pagesVolatile, s.fullScans]).toEqual([c.pagesUnshared, c.pagesVolatile, c.fullScans])
  }
  ext.check?.(w)
}

/**
 * Run `ops`, checking after each. With `oom` (a memory cap), an OutOfMemory may escape a call
 * the reference expected to succeed: it must have changed nothing.
 */
export function run<E extends { readonly k: string }>(w: World, ops: readonly (Op | E)[], ext: Extension<E> = {}, oom = false): void {
  for (const op of ops) {
    const before = oom ? snapshot(w.engine, true) : null
    try {
      step(w, op, ext)
    } catch (e) {
      if (before === null || !(e instanceof SksmError) || e._tag !== "OutOfMemory") throw e
      expectUnchanged(before, snapshot(w.engine, true), `${JSON.stringify(op)} ran out of memory but changed state`)
    }
    check(w, ext)
  }
}

/** Dispose every space: nothing may stay mapped, in the table or counted, and compaction gives every slab back. */
export function teardown(w: World): void {
  const { engine } = w
  for (const { space } of [...w.spaces]) space.dispose()
  w.spaces = []
  expect(engine.memory().framesInUse).toBe(0)
  expect(engine.core.table.size).toBe(0)
  const s = engine.stats()
  expect([s.pagesShared, s.pagesSharing, s.pagesUnique, s.ksmZeroPages]).toEqual([0, 0, 0, 0])
  engine.compact()
  // Everything gone: only slab 0 (the zero frame) remains.
  expect(engine.memory().slabs).toBe(1)
  expect(engine.memory().framesInUse).toBe(0)
}
