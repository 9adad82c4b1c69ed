/** `npm start` (the demo) end to end, with the small fleet: it merges, charts and resumes. */
import { existsSync, readFileSync, rmSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { run } from "../helpers/spawn.ts"

/** `npm start` exactly as CI runs it, with the small fleet. */
const npmStart = () => run("npm", ["start", "--silent"], { SKSM_DEMO_SMALL: "1" })

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
    // The SVG exists and is an SVG.
    const svg = /^chart: (.+\.svg)$/m.exec(r.stdout)?.[1]
    expect(svg).toBeDefined()
    expect(existsSync(svg!)).toBe(true)
    expect(readFileSync(svg!, "utf8")).toMatch(/^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/)
    // Resume: byte-exact and the same answers as the original.
    expect(r.stdout).toMatch(/byte-exact: yes/)
    expect(r.stdout).not.toMatch(/DIFF|MISMATCH/)
    expect(r.stdout).toMatch(/carries on exactly where the hibernated one stopped/)
    rmSync(svg!.replace(/\/demo-savings\.svg$/, ""), { recursive: true, force: true })
  })
})
