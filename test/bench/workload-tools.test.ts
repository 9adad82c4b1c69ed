/**
 * The pieces of the real-workload pipeline that need no package or network: the SHA-256
 * oracle's census and prediction on synthetic images, the newc archive the guests boot from,
 * and bench/kernel-ksm/ksm_files.c (compiled and loading an image, without touching
 * /sys/kernel/mm/ksm; where cc is missing the driver must say so).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { gunzipSync } from "node:zlib"
import { describe, expect, it } from "vitest"
import { buildHelper, ccMissing, startHelperWith } from "../../bench/kernel-ksm.ts"
import { cpio, initramfs } from "../../scripts/workloads/initramfs.ts"
import { census, expected } from "../../scripts/workloads/oracle.ts"

const PAGE = 4096

/** Images from page fillers: `pages[i][p]` is the byte page p of image i is filled with (0 = zero page). */
function images(pages: number[][]): Uint8Array[] {
  return pages.map((ps) => {
    const img = new Uint8Array(ps.length * PAGE)
    ps.forEach((b, p) => img.fill(b, p * PAGE, (p + 1) * PAGE))
    return img
  })
}

describe("oracle", () => {
  it("counts zero, shared, cross-instance and unique pages", () => {
    const c = census(images([[0, 1, 2, 2], [0, 1, 3, 0]]))
    expect(c).toMatchObject({ pages: 8, zeroPages: 3, distinctNonZero: 3, sharedPages: 4, crossInstancePages: 2, uniquePages: 1 })
  })

  it("predicts ceil(copies / M) frames and the kernel's chain counters", () => {
    // 5 copies of content 1, M = 2: frames 3 (2+2+1), shared 2, sharing 2; the odd page stays private.
    const c = census(images([[1, 1, 1, 1, 1, 0, 0, 0]]))
    expect(expected(c, 2, true)).toEqual({ framesInUse: 3, pagesShared: 2, pagesSharing: 2, ksmZeroPages: 3 })
    // Without the zero page the 3 zero pages are one more content: 2 frames (2+1).
    expect(expected(c, 2, false)).toEqual({ framesInUse: 5, pagesShared: 3, pagesSharing: 3, ksmZeroPages: 0 })
    expect(expected(c, 256, true)).toEqual({ framesInUse: 1, pagesShared: 1, pagesSharing: 4, ksmZeroPages: 3 })
  })
})

describe("initramfs", () => {
  it("writes a newc archive: headers, 4-byte padding, device node, trailer", () => {
    const a = cpio([{ name: "init", mode: 0o100755, data: Buffer.from("#!/bin/sh\n") }, { name: "dev/console", mode: 0o20600, rdev: [5, 1] }])
    const text = a.toString("latin1")
    expect(text.startsWith("070701")).toBe(true)
    expect(a.length % 4).toBe(0)
    expect(text).toContain("init\0")
    expect(text).toContain("#!/bin/sh\n")
    expect(text).toContain("TRAILER!!!\0")
    // The console's header: mode 020600, rdevmajor 5, rdevminor 1 (fields 2, 10 and 11).
    const h = text.slice(text.indexOf("070701", 6), text.indexOf("070701", 6) + 110)
    expect(parseInt(h.slice(14, 22), 16)).toBe(0o20600)
    expect(parseInt(h.slice(6 + 9 * 8, 6 + 10 * 8), 16)).toBe(5)
    expect(parseInt(h.slice(6 + 10 * 8, 6 + 11 * 8), 16)).toBe(1)
  })

  it("gzips busybox and /init into an archive", () => {
    const raw = gunzipSync(initramfs(Buffer.from("not really busybox")))
    expect(raw.toString("latin1")).toContain("bin/busybox\0")
    expect(raw.toString("latin1")).toContain("SKSM-GUEST-UP")
  })
})

describe("bench/kernel-ksm/ksm_files.c", () => {
  it("compiles and loads an image into mergeable memory, or cc's absence is reported", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sksm-files-test-"))
    try {
      const source = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "bench", "kernel-ksm", "ksm_files.c")
      const build = buildHelper(dir, source)
      if (ccMissing() !== null) {
        expect(build.ok).toBe(false)
        return
      }
      if (!build.ok) throw new Error(build.reason)
      const img = join(dir, "a.bin")
      writeFileSync(img, Buffer.alloc(64 * PAGE, 7))
      const helper = await startHelperWith(build.path, [img, img], 30_000)
      expect(helper.pages).toBe(128)
      expect(await helper.stop()).toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
