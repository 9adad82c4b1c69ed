/**
 * Model-based test of the memory model and the merge core: random programs of
 * createSpace / write / fill / writeU32 / read / discard / fork / pin / unpin / dispose /
 * merge / unmerge / unmergeAll / tunable changes, checked step by step against a naive
 * reference (one plain Uint8Array per space) and a from-scratch recount of every counter
 * (test/helpers/world.ts). A failing run prints fast-check's seed and the shrunk program.
 */
import fc from "fast-check"
import { describe, it } from "vitest"
import { type Op, opArb, type Shape } from "../helpers/program.ts"
import { newWorld, run, teardown } from "../helpers/world.ts"

const PS = 512
const RUNS = Number(process.env["SKSM_MODEL_RUNS"] ?? 3000)

const shape: Shape = { pages: 10, domains: 3, page: 20, run: 6, addr: 8000, len: 1600, bytes: [0, 0, 1, 2, 3, 0xff], unique: false }
const ops = opArb(shape, {
  create: 2,
  write: 6,
  fill: 4,
  fillPages: 6,
  writeU32: 3,
  read: 1,
  discard: 2,
  fork: 2,
  pin: 1,
  unpin: 1,
  dispose: 1,
  merge: 5,
  unmerge: 2,
  unmergeAll: 1,
  maxPageSharing: 1,
  useZeroPages: 1,
  oob: 1,
})
const start: Op = { k: "create", pages: 4, domain: 0, advise: false }

function program(maxMemoryBytes?: number) {
  return fc.property(fc.array(ops, { minLength: 1, maxLength: 60 }), (program) => {
    const w = newWorld({ pageSize: PS, slabBytes: 4 * PS, maxPageSharing: 3, seed: 1, ...(maxMemoryBytes === undefined ? {} : { maxMemoryBytes }) })
    run(w, [start, ...program], {}, maxMemoryBytes !== undefined)
    teardown(w)
  })
}

describe("model-based: memory model + merge core against a naive reference", () => {
  it("random programs keep contents and counters exact", () => {
    fc.assert(program(), { numRuns: RUNS })
  })

  it("under a memory cap, every refused allocation changes nothing", () => {
    fc.assert(program(12 * PS), { numRuns: Math.floor(RUNS / 3) })
  })
})
