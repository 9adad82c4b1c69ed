/**
 * Soak (short, CI) and scale (issue 7).
 * - soak: ~12 s of the randomised run in scripts/soak-runner.ts (the long one is `npm run soak`):
 *   many spaces in three domains (one secure), the scanner's own loop running, writes, forks,
 *   merges, compactions, disposals and refused allocations; every invariant checked every 400
 *   operations; nothing left after disposing everything.
 * - scale: one engine with 1,000,000 pages in 10,000 spaces (lazily populated, 512-byte pages),
 *   merged, scanned and disposed, with engine.memory().metadataBytes within 16 bytes per page.
 */
import { describe, expect, it } from "vitest"
import { soak } from "../../scripts/soak-runner.ts"
import type { AddressSpace } from "../helpers/internals.ts"
import { Engine } from "../helpers/internals.ts"
import { checkCounters } from "../helpers/recount.ts"
import { checkDomainIsolation } from "../helpers/security.ts"

describe("soak", () => {
  it("a randomised 12-second run keeps every invariant", async () => {
    const seed = Number(process.env["SKSM_SOAK_SEED"] ?? 20250301)
    const r = await soak({ durationMs: Number(process.env["SKSM_SOAK_MS"] ?? 12_000), seed })
    console.log(
      `soak (seed ${seed}): ${r.operations} operations, ${r.invariantChecks} invariant checks passed in ${r.seconds.toFixed(1)} s; ` +
        `${r.refusedForMemory} refused for memory, ${r.fullScans} full scans, ${r.compactions} compactions, peak ${r.maxLiveSpaces} spaces / ${r.peakPagesSharing} pages sharing`,
    )
    expect(r.operations).toBeGreaterThan(10_000)
    expect(r.invariantChecks).toBeGreaterThan(20)
    expect(r.fullScans).toBeGreaterThan(10)
    expect(r.peakPagesSharing).toBeGreaterThan(0)
    for (const k of ["write-page", "fork", "merge", "compact", "dispose", "scanner-replace", "tick"]) expect(r.byKind[k] ?? 0).toBeGreaterThan(0)
  }, 60_000)
})

describe("scale", () => {
  for (const policy of ["ksm", "tracked"] as const) {
    it(`1,000,000 pages in 10,000 spaces (${policy} scanner): merged, scanned, disposed; metadata within 16 bytes per page`, () => {
      const PS = 512
      const SPACES = 10_000
      const PAGES = 100
      const engine = new Engine({ pageSize: PS, secureDomains: ["tenant-0"], idlePasses: 0, autoCompact: false })
      const shared = new Uint8Array(PS).fill(0x42)
      const spaces: AddressSpace[] = []
      for (let i = 0; i < SPACES; i++) {
        const s = engine.createSpace({ size: PAGES * PS, domain: `tenant-${i % 4}` })
        // Four populated pages: two every tenant has, two of its own; the rest stays unpopulated.
        s.write(0, shared)
        s.write(PS, shared)
        s.writeU32(2 * PS, i)
        s.writeU32(3 * PS, i ^ 0x55555555)
        s.setMergeAny(true)
        spaces.push(s)
      }
      const total = SPACES * PAGES
      expect(engine.memory().spaces).toBe(SPACES)
      // merge() on a tenth, the scanner for the rest.
      for (let i = 0; i < SPACES; i += 10) spaces[i]!.merge()
      const ksmd = engine.scanner({ policy, pagesToScan: 200_000, ...(policy === "tracked" ? { stablePasses: 1 } : {}) })
      for (let i = 0; i < 40 && engine.stats().pagesSharing < 2 * SPACES - 8; i++) ksmd.tick()
      const st = engine.stats()
      // Every tenant's two shared pages end on one frame per domain (maxPageSharing dups aside).
      expect(st.pagesSharing).toBeGreaterThan(2 * SPACES - 4 * 2 * 40)
      const mem = engine.memory()
      const perPage = mem.metadataBytes / total
      console.log(
        `scale (${policy}): ${total} pages in ${SPACES} spaces, ${mem.framesInUse} frames in use, pages_sharing ${st.pagesSharing}, ` +
          `metadata ${mem.metadataBytes} B = ${perPage.toFixed(2)} B/page, frames ${mem.bytesReserved} B`,
      )
      expect(perPage).toBeLessThanOrEqual(16)
      checkCounters(engine)
      checkDomainIsolation(engine)
      for (const s of spaces) s.dispose()
      expect(engine.memory().framesInUse).toBe(0)
      expect(engine.core.table.size).toBe(0)
    }, 120_000)
  }
})
