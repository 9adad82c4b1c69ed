/**
 * The API reference (docs/api, linked from the README) is generated from the doc comments by
 * `npm run docs`; it must match the sources. typedoc runs from tools/ts5 (TypeScript 5.9), which
 * is installed from its own lockfile when missing.
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { describe, expect, it } from "vitest"

const ROOT = join(import.meta.dirname, "..")

function tree(dir: string): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else out.set(relative(dir, p), readFileSync(p, "utf8"))
    }
  }
  walk(dir)
  return out
}

describe("API reference", () => {
  it("docs/api is what `npm run docs` generates from the current sources", () => {
    const out = mkdtempSync(join(tmpdir(), "sksm-docs-"))
    try {
      const r = spawnSync(process.execPath, [join(ROOT, "tools/ts5/docs.mjs"), "--out", out, "--quiet"], { cwd: ROOT, encoding: "utf8", timeout: 180_000 })
      expect(r.status, `${r.stdout}${r.stderr}`).toBe(0)
      const fresh = tree(out)
      const committed = tree(join(ROOT, "docs/api"))
      expect(fresh.size).toBeGreaterThan(10)
      const differ = [...new Set([...fresh.keys(), ...committed.keys()])].filter((f) => fresh.get(f) !== committed.get(f)).sort()
      expect(differ, "docs/api is stale: run npm run docs").toEqual([])
      // The two entry points and the main class are there.
      expect(fresh.get("README.md")).toMatch(/effect/)
      expect([...fresh.keys()].some((f) => f.endsWith("classes/Engine.md"))).toBe(true)
    } finally {
      rmSync(out, { recursive: true, force: true })
    }
  })
})
