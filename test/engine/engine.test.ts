/**
 * The engine (src/engine/engine.ts): memory() adds up honestly, and its tunables are validated
 * (InvalidArgument below 2, Busy while pages are shared) without changing anything.
 */
import { describe, expect, it } from "vitest"
import { rejects } from "../helpers/errors.ts"
import { Engine } from "../helpers/internals.ts"

const PS = 4096

function setup(pages = 8): { engine: Engine; a: ReturnType<Engine["createSpace"]> } {
  const engine = new Engine()
  return { engine, a: engine.createSpace({ size: pages * PS, name: "a" }) }
}

describe("engine", () => {
  it("memory() is honest: reserved slab bytes, metadata per page, spaces", () => {
    const { engine, a } = setup(256)
    a.fill(0, a.size, 1)
    const m = engine.memory()
    expect(m.framesInUse).toBe(256)
    expect(m.bytesReserved).toBeGreaterThanOrEqual(257 * PS)
    expect(m.bytesReserved).toBe((m.framesInUse + m.framesFree + 1) * PS)
    expect(m.metadataBytes / 256).toBeLessThanOrEqual(32)
    expect(m.spaces).toBe(1)
  })
  it("tunables: InvalidArgument below 2, Busy while pages are shared", () => {
    const { engine, a } = setup()
    a.fill(0, 2 * PS, 1)
    a.merge()
    rejects(engine, "InvalidArgument", () => engine.setMaxPageSharing(1))
    rejects(engine, "InvalidArgument", () => engine.setMaxPageSharing(2.5))
    rejects(engine, "Busy", () => engine.setMaxPageSharing(10))
    engine.setMaxPageSharing(256) // same value: fine
    rejects(engine, "InvalidArgument", () => engine.setUseZeroPages(1 as unknown as boolean))
    engine.unmergeAll()
    engine.setMaxPageSharing(10)
    expect(engine.maxPageSharing).toBe(10)
  })
})

describe("deferred housekeeping never keeps a dropped engine alive", () => {
  it("an engine dropped right after merge() and compaction is collectable once the event loop turns", async () => {
    const { run, ROOT } = await import("../helpers/spawn.ts")
    // A child with --expose-gc: merge, discard (schedules the deferred store shrink), drop the
    // engine; after a turn of the event loop a full GC must collect every one of them.
    const script = `
      const { Engine } = await import(${JSON.stringify(`${ROOT}src/index.ts`)})
      const refs = []
      // In a function of its own: a suspended async frame (this module's top-level await) can keep
      // its last locals alive, which would say nothing about sksm.
      function make() {
      for (let i = 0; i < 4; i++) {
        const e = new Engine({ autoCompact: { minFreeFrames: 0, minFreeRatio: 0 } })
        const s = e.createSpace({ size: 8 << 20 })
        s.fill(0, 8 << 20, 7)
        s.merge()
        s.discard(0, 4 << 20)
        refs.push(new WeakRef(e))
      }
      }
      make()
      // Deferred housekeeping (the store's shrink) holds no strong reference: one turn later,
      // nothing of sksm's keeps the dropped engines.
      await new Promise((r) => setImmediate(r))
      await new Promise((r) => setTimeout(r, 10))
      globalThis.gc(); globalThis.gc()
      console.log(refs.filter((r) => r.deref() !== undefined).length)
    `
    const r = await run(process.execPath, ["--expose-gc", "--import", "tsx", "--input-type=module", "-e", script])
    expect(r.stderr).toBe("")
    expect(r.stdout.trim()).toBe("0")
  })
})
