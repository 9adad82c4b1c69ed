/**
 * The operations of the random programs every model-based test runs, and the arbitrary that
 * generates them: one op per call of the public API (spaces, merge core, tunables, scanner
 * ticks, compaction). A suite picks the ops it wants by weight (weight 0 or absent: never),
 * sizes them with a {@link Shape}, and may add ops of its own (see {@link Extension} in
 * world.ts). Ops name spaces and pages by arbitrary numbers, reduced modulo what exists when
 * the op runs, so every generated program is valid and shrinks well.
 */
import fc from "fast-check"

export type Op =
  | { k: "create"; pages: number; domain: number; advise: boolean }
  | { k: "write"; s: number; addr: number; len: number; byte: number; pattern: boolean }
  | { k: "fill"; s: number; addr: number; len: number; byte: number }
  | { k: "fillPages"; s: number; page: number; n: number; byte: number; unique: boolean }
  | { k: "writeU32"; s: number; addr: number; value: number }
  | { k: "read"; s: number; addr: number; len: number }
  | { k: "discard"; s: number; page: number; n: number }
  | { k: "fork"; s: number }
  | { k: "pin"; s: number; addr: number; len: number }
  | { k: "unpin"; s: number; addr: number; len: number }
  | { k: "dispose"; s: number }
  | { k: "merge"; s: number; page: number; n: number }
  | { k: "unmerge"; s: number; page: number; n: number }
  | { k: "advise"; s: number; page: number; n: number; on: boolean }
  | { k: "mergeAny"; s: number; on: boolean }
  | { k: "writeProtect"; s: number; page: number; n: number }
  | { k: "unmergeAll" }
  | { k: "maxPageSharing"; n: number }
  | { k: "useZeroPages"; on: boolean }
  | { k: "oob"; s: number; which: number }
  | { k: "tick"; n: number }
  | { k: "compact"; budget: number }

export type Kind = Op["k"]

/** How big a suite's programs are. */
export interface Shape {
  /** A created space has 1 to `pages` pages. */
  readonly pages: number
  /** Spaces are created in domains d0 .. d(domains-1). */
  readonly domains: number
  /** Page runs start at page 0 .. `page` (reduced modulo the space) and span 0 .. `run` pages. */
  readonly page: number
  readonly run: number
  /** Byte ranges start at 0 .. `addr` (reduced modulo the space) and span 0 .. `len` bytes. */
  readonly addr: number
  readonly len: number
  /** The byte values written: few, so that pages coincide and merge. */
  readonly bytes: readonly number[]
  /** Whether fillPages may stamp each page with a unique tag (pages that never merge). */
  readonly unique: boolean
}

/** Every op's arbitrary for `shape`. */
function arbitraries(shape: Shape): { [K in Kind]: fc.Arbitrary<Extract<Op, { k: K }>> } {
  const s = fc.nat(1000)
  const byte = fc.constantFrom(...shape.bytes)
  const page = fc.nat(shape.page)
  const run = (min: number, max: number) => fc.integer({ min, max })
  const addr = fc.nat(shape.addr)
  const k = <K extends Kind>(kind: K) => fc.constant(kind)
  return {
    create: fc.record({ k: k("create"), pages: run(1, shape.pages), domain: fc.nat(shape.domains - 1), advise: fc.boolean() }),
    write: fc.record({ k: k("write"), s, addr, len: run(0, shape.len), byte, pattern: fc.boolean() }),
    fill: fc.record({ k: k("fill"), s, addr, len: run(0, shape.len), byte }),
    fillPages: fc.record({ k: k("fillPages"), s, page, n: run(1, shape.run), byte, unique: shape.unique ? fc.boolean() : fc.constant(false) }),
    writeU32: fc.record({ k: k("writeU32"), s, addr, value: fc.oneof(fc.constantFrom(0, 1, 7), fc.nat()) }),
    read: fc.record({ k: k("read"), s, addr, len: fc.nat(shape.len) }),
    discard: fc.record({ k: k("discard"), s, page, n: run(0, shape.run) }),
    fork: fc.record({ k: k("fork"), s }),
    pin: fc.record({ k: k("pin"), s, addr, len: fc.nat(shape.len) }),
    unpin: fc.record({ k: k("unpin"), s, addr, len: fc.nat(shape.len) }),
    dispose: fc.record({ k: k("dispose"), s }),
    merge: fc.record({ k: k("merge"), s, page, n: run(0, shape.pages + 2) }),
    unmerge: fc.record({ k: k("unmerge"), s, page, n: run(0, shape.pages + 2) }),
    advise: fc.record({ k: k("advise"), s, page, n: run(0, shape.pages), on: fc.boolean() }),
    mergeAny: fc.record({ k: k("mergeAny"), s, on: fc.boolean() }),
    writeProtect: fc.record({ k: k("writeProtect"), s, page, n: run(0, shape.run) }),
    unmergeAll: fc.constant({ k: "unmergeAll" as const }),
    maxPageSharing: fc.record({ k: k("maxPageSharing"), n: run(1, 4) }),
    useZeroPages: fc.record({ k: k("useZeroPages"), on: fc.boolean() }),
    oob: fc.record({ k: k("oob"), s, which: fc.nat(5) }),
    tick: fc.record({ k: k("tick"), n: run(1, 6) }),
    compact: fc.record({ k: k("compact"), budget: fc.oneof(run(0, 12), fc.constant(Number.POSITIVE_INFINITY)) }),
  }
}

/**
 * One op of a program: the shared ops with the given weights, plus the suite's own `extra`
 * ops (already weighted).
 */
export function opArb<E = never>(shape: Shape, weights: Partial<Record<Kind, number>>, extra: fc.WeightedArbitrary<E>[] = []): fc.Arbitrary<Op | E> {
  const all = arbitraries(shape)
  const picked: fc.WeightedArbitrary<Op | E>[] = []
  for (const [kind, weight] of Object.entries(weights) as [Kind, number][]) {
    if (weight > 0) picked.push({ weight, arbitrary: all[kind] })
  }
  return fc.oneof(...picked, ...extra)
}
