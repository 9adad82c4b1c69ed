/** `npm start` (the demo) end to end, with the small fleet: it merges, charts and resumes. */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { run } from "../helpers/spawn.ts"
import { BIN } from "./spawn.ts"

/** A temp dir of the test's own, given to the demo as TMPDIR: what the demo leaves shows there. */
const tmp = mkdtempSync(join(tmpdir(), "sksm-demo-test-"))
const out = join(tmp, "out")
afterAll(() => rmSync(tmp, { recursive: true, force: true }))
const leftovers = () => readdirSync(tmp).filter((n) => n.startsWith("sksm-demo-"))

/** `npm start` exactly as CI runs it, with the small fleet (and --out for the SVG). */
const npmStart = () => run("npm", ["start", "--silent", "--", "--out", out], { SKSM_DEMO_SMALL: "1", TMPDIR: tmp })

describe("npm start (sksm demo, small fleet)", () => {
  it("merges the fleet, writes the chart, and resumes an interpreter that carries on", async () => {
    const r = await npmStart()
    expect(r.stderr.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("npm warn"))).toEqual([])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/a fleet of 3 QuickJS interpreters/)
    // The table: merge() saved something, on every row that ran.
    const row = /^\s+merge\(\)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)/m.exec(r.stdout)
    expect(row).not.toBeNull()
    const [pages, zero, , sharing] = row!.slice(1).map((s) => Number(s.replace(/,/g, "")))
    expect(pages).toBe(3 * 4096)
    expect(zero).toBeGreaterThan(0)
    expect(sharing).toBeGreaterThan(100)
    // The scanners, on identical copies, end where merge() did (the demo stops them there; the
    // small fleet needs two or three passes, well inside its time limit).
    for (const policy of ["ksm", "tracked"]) {
      const m = new RegExp(`^\\s+scanner "${policy}"\\s+([\\d,]+)\\s+([\\d,]+)\\s+([\\d,]+)\\s+([\\d,]+)`, "m").exec(r.stdout)
      expect(m).not.toBeNull()
      const [p, z, , sh] = m!.slice(1).map((s) => Number(s.replace(/,/g, "")))
      expect([p, z, sh]).toEqual([pages, zero, sharing])
    }
    expect(r.stdout).toMatch(/scanner "ksm"\s+pages_to_scan \d+, sleep \d+ ms, \d+ full scans; reached merge\(\)'s saving/)
    // The headline says how much of the saving is zero pages and how much real duplicates.
    const head = /of merge\(\)'s ([\d.]+ \w+) saved, ([\d.]+ \w+) are zero pages \(([\d.]+)%[^)]*\) and ([\d.]+ \w+) are merged non-zero duplicates \(([\d,]+) pages/.exec(r.stdout)
    expect(head).not.toBeNull()
    expect(Number(head![5]!.replace(/,/g, ""))).toBe(sharing)
    expect(Number(head![3])).toBeGreaterThan(50)
    expect(Number(head![3])).toBeLessThan(100)
    // The SVG exists and is an SVG.
    const svg = /^chart: (.+\.svg)$/m.exec(r.stdout)?.[1]
    expect(svg).toBeDefined()
    expect(existsSync(svg!)).toBe(true)
    expect(readFileSync(svg!, "utf8")).toMatch(/^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/)
    // Resume: byte-exact and the same answers as the original.
    expect(r.stdout).toMatch(/byte-exact: yes/)
    expect(r.stdout).not.toMatch(/DIFF|MISMATCH/)
    expect(r.stdout).toMatch(/carries on exactly where the hibernated one stopped/)
    expect(svg).toBe(join(out, "demo-savings.svg"))
    expect(existsSync(join(out, "demo-results.json"))).toBe(true)
    expect(leftovers()).toEqual([])
  })

  it("leaves no temporary folder behind without --out, also when piped to head", async () => {
    const r = await run("sh", ["-c", `"${process.execPath}" "${BIN}" demo --small | head -2`], { TMPDIR: tmp })
    expect(r.code).toBe(0)
    expect(r.stdout.split("\n")[0]).toMatch(/a fleet of 3 QuickJS interpreters/)
    expect(r.stderr).toBe("")
    expect(leftovers()).toEqual([])
  })
})
