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
