/**
 * Smoke test of bench/kernel-ksm's C helper: it compiles with cc and maps a small W
 * (without touching /sys/kernel/mm/ksm). Where cc is missing, the driver must say so.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { buildHelper, ccMissing, kernelKsmUnavailable, startHelper } from "../../bench/kernel-ksm.ts"
import { expectedCounts } from "../../bench/workload.ts"

describe("bench/kernel-ksm helper", () => {
  it("compiles ksm_w.c and maps a 1 MiB W, or reports why it cannot", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sksm-ksm-test-"))
    try {
      const missing = ccMissing()
      const build = buildHelper(dir)
      if (missing !== null) {
        expect(build).toEqual({ ok: false, reason: missing })
        expect(kernelKsmUnavailable()).not.toBeNull()
        return
      }
      if (!build.ok) throw new Error(build.reason)
      const helper = await startHelper(build.path, 1 << 20, 0.5, 16, 7, 30_000)
      expect(helper.pages).toBe(256)
      expect(helper.dupPages).toBe(128)
      expect(await helper.stop()).toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("predicts the kernel's counters for W with the max_page_sharing rule", () => {
    // 256 MiB: 16 contents x 2048 pages, M = 256: 8 frames of 256 each per content.
    expect(expectedCounts(65536, 0.5, 16, 256)).toEqual({ shared: 128, sharing: 32640 })
    // 2049 pages of one content: N mod M = 1, so the odd page adds no shared frame.
    expect(expectedCounts(2049, 1, 1, 256)).toEqual({ shared: 8, sharing: 2040 })
    // N mod M = 2: one more shared frame holding the last 2 pages.
    expect(expectedCounts(2050, 1, 1, 256)).toEqual({ shared: 9, sharing: 2041 })
  })
})
