/**
 * The "ksm" policy keeps a page's rmap-item state across a merge and an unshare, as Linux 6.18
 * does (oldchecksum, smart-scan age and skips survive while the item is stable), or resets it as
 * the newer mm tree does (`resetOnUnshare: true`). Measured against the live 6.18 kernel, scan by
 * scan: a merged page rewritten with the bytes it already held rejoins its KSM page at the very
 * next visit; with the reset it needs two visits again.
 */
import { describe, expect, it } from "vitest"
import { Engine } from "../helpers/internals.ts"
import { checkCounters } from "../helpers/recount.ts"

const PS = 4096

function world(resetOnUnshare: boolean) {
  const engine = new Engine({ useZeroPages: false })
  const s = engine.createSpace({ size: 4 * PS })
  for (let p = 0; p < 4; p++) s.fill(p * PS, PS, 0x42)
  s.setMergeAny(true)
  const ksmd = engine.scanner({ policy: "ksm", pagesToScan: 1000, smartScan: false, resetOnUnshare })
  return { engine, s, ksmd }
}

function pass(ksmd: { tick(): { fullScan: boolean } }): void {
  for (let i = 0; i < 100; i++) if (ksmd.tick().fullScan) return
  throw new Error("no full pass")
}

describe("ksm policy: rmap-item state across unshare", () => {
  it("6.18 (default): a merged page rewritten with the same bytes rejoins at the next pass", () => {
    const { engine, s, ksmd } = world(false)
    pass(ksmd)
    pass(ksmd)
    expect(engine.stats().pagesSharing).toBe(3)
    s.writeU8(2 * PS, 0x42) // copy-on-write: same bytes, a private copy
    expect(engine.stats().pagesSharing).toBe(2)
    pass(ksmd)
    expect(engine.stats().pagesSharing).toBe(3)
    checkCounters(engine)
  })

  it("resetOnUnshare: the rewritten page starts over and needs two passes", () => {
    const { engine, s, ksmd } = world(true)
    pass(ksmd)
    pass(ksmd)
    expect(engine.stats().pagesSharing).toBe(3)
    s.writeU8(2 * PS, 0x42)
    pass(ksmd)
    expect(engine.stats().pagesSharing).toBe(2)
    pass(ksmd)
    expect(engine.stats().pagesSharing).toBe(3)
    checkCounters(engine)
  })

  it("a page whose bytes really changed is volatile either way; one written back to its bytes rejoins only with 6.18", () => {
    for (const reset of [false, true]) {
      const { engine, s, ksmd } = world(reset)
      pass(ksmd)
      pass(ksmd)
      s.writeU8(2 * PS, 0x43)
      s.writeU8(2 * PS, 0x42) // page 2: written, but back to the bytes it shared
      s.writeU8(3 * PS + 1, 7) // page 3: really changed
      pass(ksmd)
      expect(engine.stats().pagesSharing).toBe(reset ? 1 : 2)
      checkCounters(engine)
    }
  })

  it("resetOnUnshare is fixed at creation and is the ksm policy's own option", () => {
    const engine = new Engine()
    const ksmd = engine.scanner({ policy: "ksm", resetOnUnshare: true })
    expect(ksmd.tunables["resetOnUnshare"]).toBe(true)
    expect(() => ksmd.set({ resetOnUnshare: false } as never)).toThrow("resetOnUnshare is fixed when the scanner is created")
    expect(() => engine.scanner({ policy: "tracked", resetOnUnshare: true } as never)).toThrow('resetOnUnshare applies to the "ksm" policy only')
  })
})
