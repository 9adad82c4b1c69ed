/**
 * `sksm estimate` end to end: exact KSM counts for memory-image files and a live process's
 * memory, its flags, its readable report, and one-line errors with a non-zero exit.
 */
import { spawn } from "node:child_process"
import { chmodSync, linkSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { EstimateReport } from "../../src/cli/estimate.ts"
import { canDropPrivileges, oneLine, sksm } from "./spawn.ts"

const PS = 4096
let dir: string
let img1: string
let img2: string

/** A page of one content: 0 is all zero, other values are uniform bytes or a tag. */
function pageOf(kind: "zero" | "x" | "y" | number): Buffer {
  if (kind === "zero") return Buffer.alloc(PS)
  if (kind === "x") return Buffer.alloc(PS, 0x11)
  if (kind === "y") {
    const b = Buffer.alloc(PS, 0x22)
    b.write("sksm estimate test page Y")
    return b
  }
  const b = Buffer.alloc(PS, 0x33)
  b.writeUInt32LE(kind, 64)
  return b
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "sksm-estimate-test-"))
  // img1: 300 x X, 3 zero, 2 x Y, 5 unique = 310 pages.
  const pages1: Buffer[] = []
  for (let i = 0; i < 300; i++) pages1.push(pageOf("x"))
  for (let i = 0; i < 3; i++) pages1.push(pageOf("zero"))
  for (let i = 0; i < 2; i++) pages1.push(pageOf("y"))
  for (let i = 0; i < 5; i++) pages1.push(pageOf(1000 + i))
  img1 = join(dir, "img1.raw")
  writeFileSync(img1, Buffer.concat(pages1))
  // img2: 10 x Y, 1 unique, and a partial page of 100 zero bytes (zero-padded: a zero page).
  const pages2: Buffer[] = []
  for (let i = 0; i < 10; i++) pages2.push(pageOf("y"))
  pages2.push(pageOf(2000))
  pages2.push(Buffer.alloc(100))
  img2 = join(dir, "img2.raw")
  writeFileSync(img2, Buffer.concat(pages2))
})

afterAll(() => rmSync(dir, { recursive: true, force: true }))

async function estimateJson(args: readonly string[]): Promise<EstimateReport> {
  const r = await sksm(["estimate", "--json", ...args])
  expect(r.stderr).toBe("")
  expect(r.code).toBe(0)
  return JSON.parse(r.stdout) as EstimateReport
}

describe("sksm estimate on memory-image files", () => {
  it("gives the exact KSM counts (max_page_sharing 256, use_zero_pages off)", async () => {
    const r = await estimateJson([img1, img2])
    // X x300 -> 2 shared / 298 sharing (256 + 44); zero x4 -> 1/3; Y x12 -> 1/11; 6 unique.
    expect(r.totals).toMatchObject({
      pages: 322,
      zeroPages: 4,
      duplicatePages: 312,
      distinctContents: 9,
      duplicatedContents: 2,
      pagesShared: 4,
      pagesSharing: 312,
      pagesUnshared: 6,
      ksmZeroPages: 0,
      rmapItems: 322,
      savedBytes: 312 * PS,
      profitBytes: 312 * PS - 322 * 64,
      scannedBytes: 322 * PS,
    })
    expect(r.sources.map((s) => [s.kind, s.counts.pages, s.counts.pagesShared, s.counts.pagesSharing])).toEqual([
      ["file", 310, 4, 301],
      ["file", 12, 0, 11],
    ])
    expect(r.top[0]).toMatchObject({ count: 300, uniformByte: 0x11 })
    expect(r.top[1]).toMatchObject({ count: 12, uniformByte: null })
    expect(r.top[1]!.previewAscii.startsWith("sksm estimate test page Y")).toBe(true)
  })

  it("follows --max-page-sharing and --use-zero-pages", async () => {
    const m2 = await estimateJson(["--max-page-sharing", "2", img1, img2])
    // X 300 -> 150/150; zero 4 -> 2/2; Y 12 -> 6/6.
    expect(m2.totals).toMatchObject({ pagesShared: 158, pagesSharing: 158 })
    expect(m2.maxPageSharing).toBe(2)
    const zp = await estimateJson(["--use-zero-pages", img1, img2])
    expect(zp.totals).toMatchObject({ ksmZeroPages: 4, pagesShared: 3, pagesSharing: 309, savedBytes: 313 * PS })
  })

  it("counts a file given twice (or under another name) once, with a note, in the same totals", async () => {
    const link = join(dir, "img1-again.raw")
    linkSync(img1, link)
    const once = await estimateJson([img1, img2])
    const twice = await estimateJson([img2, img1, img1, link])
    expect(twice.totals).toEqual(once.totals)
    expect(twice.sources.map((s) => s.path)).toEqual([img2, img1])
    expect(twice.notes).toEqual([`${img1} was given more than once: counted once`, `${link} is the same file as ${img1}: counted once`])
    const text = await sksm(["estimate", img1, img1])
    expect(text.stdout).toMatch(/^note: .*img1\.raw was given more than once: counted once$/m)
  })

  it("tells duplicates at the same offset from duplicates elsewhere, and keeps --page-size", async () => {
    // img2 holds Y at pages 0..9; img1 holds Y at pages 303..304: no shared offset. X repeats
    // within img1 only. So every duplicate is "elsewhere".
    const r = await estimateJson([img1, img2])
    expect(r.whyNotMore.duplicatesSameOffset).toBe(0)
    expect(r.whyNotMore.duplicatesElsewhere).toBe(312)
    expect(r.whyNotMore.uniquePages).toBe(6)
    const same = join(dir, "img1-copy.raw")
    writeFileSync(same, readFileSync(img1))
    const c = await estimateJson([img1, same])
    // Every non-zero page of img1 has its twin at the same offset in the copy.
    expect(c.whyNotMore.duplicatesSameOffset).toBe(2 * (310 - 3))
    // 8 KiB pages: pairs of 4 KiB pages.
    const big = await estimateJson(["--page-size", "8192", img1])
    expect(big.pageSize).toBe(8192)
    expect(big.totals.pages).toBe(155)
  })

  it("prints a readable report without --json", async () => {
    const r = await sksm(["estimate", img1])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/pages_sharing\s+301/)
    expect(r.stdout).toMatch(/most duplicated contents/)
    expect(r.stdout).toMatch(/every byte 0x11/)
    // stderr is not a terminal here: no progress bar.
    expect(r.stderr).toBe("")
  })
})

describe("sksm estimate --pid on a live process", () => {
  it("finds the duplicate pages a child node process holds", async () => {
    // 4 MiB: 64 pages of one byte (0x5a), then 960 pages of random bytes. The Buffer need not be
    // page-aligned, so at least 63 whole process pages hold only 0x5a.
    const script = `
      const b = Buffer.alloc(4096 * 1024)
      b.fill(0x5a, 0, 64 * 4096)
      require("node:crypto").randomFillSync(b, 64 * 4096)
      globalThis.keep = b
      process.stdout.write("ready\\n")
      setInterval(() => {}, 1000)`
    const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] })
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (d: Buffer) => d.toString().includes("ready") && resolve())
        child.on("error", reject)
        child.on("exit", () => reject(new Error("child exited early")))
      })
      const r = await estimateJson(["--pid", String(child.pid)])
      expect(r.sources).toHaveLength(1)
      expect(r.sources[0]).toMatchObject({ kind: "pid", id: String(child.pid), name: "node" })
      expect(r.totals.pages).toBeGreaterThanOrEqual(1024)
      const fill = r.top.find((t) => t.uniformByte === 0x5a)
      expect(fill?.count).toBeGreaterThanOrEqual(63)
      expect(r.totals.duplicatePages).toBeGreaterThanOrEqual(63)
      expect(r.totals.pagesSharing).toBeGreaterThanOrEqual(62)
      // The random pages are distinct: at least 959 contents of their own.
      expect(r.totals.distinctContents).toBeGreaterThanOrEqual(959)
      // Some mapping holds the buffer: at least 1000 of its pages.
      expect(r.sources[0]!.regions.some((g) => g.pages >= 1000)).toBe(true)
    } finally {
      child.kill()
    }
  })
})

describe.concurrent("sksm estimate errors are one line with a non-zero exit", () => {
  const cases: [string, string[], number, RegExp][] = [
    ["no source", [], 2, /nothing to estimate/],
    ["unknown flag", ["--bogus", "x"], 2, /unknown option --bogus/],
    ["flag without value", ["--pid"], 2, /--pid needs a value/],
    ["bad pid", ["--pid", "abc"], 2, /--pid must be a process id/],
    ["bad max-page-sharing", ["--max-page-sharing", "1", "x"], 2, /--max-page-sharing must be an integer >= 2/],
    ["no such pid", ["--pid", "2147483646"], 1, /no such process: 2147483646/],
    ["missing file", ["/nonexistent/sksm.raw"], 1, /\/nonexistent\/sksm\.raw: no such file or directory/],
    ["directory", ["/tmp"], 1, /\/tmp: is a directory/],
  ]
  for (const [name, args, code, message] of cases) {
    it(name, async () => {
      const r = await sksm(["estimate", ...args])
      expect(r.code).toBe(code)
      expect(r.stdout).toBe("")
      expect(oneLine(r.stderr)).toBe(true)
      expect(r.stderr).toMatch(message)
    })
  }

  it.runIf(canDropPrivileges())("no permission: another user's process, and an unreadable file", async () => {
    const asNobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "env", "HOME=/tmp"]
    const proc = await sksm(["estimate", "--pid", "1"], { prefix: asNobody })
    expect(proc.code).toBe(1)
    expect(oneLine(proc.stderr)).toBe(true)
    expect(proc.stderr).toMatch(/pid 1: permission denied \(.*root.*ptrace/)
    const secret = join(dir, "secret.raw")
    writeFileSync(secret, Buffer.alloc(PS))
    chmodSync(secret, 0o600)
    const file = await sksm(["estimate", secret], { prefix: asNobody })
    expect(file.code).toBe(1)
    expect(oneLine(file.stderr)).toBe(true)
    expect(file.stderr).toMatch(/secret\.raw: permission denied/)
  })
})
