/** The README's API snippet runs as written (with the package import pointed at src/). */
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"

const root = join(import.meta.dirname, "..")

describe("README", () => {
  it("its API snippet runs and prints merge figures", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8")
    const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!)
    const main = blocks.find((b) => b.includes('from "sksm"'))
    expect(main).toBeDefined()
    const code = main!.replace(/from "sksm".*\n/, `from ${JSON.stringify(join(root, "src/index.ts"))}\n`)
    const dir = mkdtempSync(join(root, ".readme-"))
    try {
      const file = join(dir, "snippet.ts")
      writeFileSync(file, code)
      const out = execFileSync(join(root, "node_modules/.bin/tsx"), [file], { cwd: root, encoding: "utf8", timeout: 60_000 })
      expect(out).toContain("merged")
      expect(out).toContain("ksmMergingPages")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("its sksm/snapshot snippet runs and prints dedup figures", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8")
    const block = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes('from "sksm/snapshot"'))
    expect(block).toBeDefined()
    const code = block!
      .replace(/from "sksm"/, `from ${JSON.stringify(join(root, "src/index.ts"))}`)
      .replace(/from "sksm\/snapshot"/, `from ${JSON.stringify(join(root, "src/snapshot/index.ts"))}`)
    const dir = mkdtempSync(join(root, ".readme-"))
    try {
      const file = join(dir, "snapshot.mts")
      writeFileSync(file, code)
      const out = execFileSync(join(root, "node_modules/.bin/tsx"), [file], { cwd: root, encoding: "utf8", timeout: 60_000 })
      expect(out).toMatch(/dedup x4\.0/)
      expect(out).toContain("1002 512 frames")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
