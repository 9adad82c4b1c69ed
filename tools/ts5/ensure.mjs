// Install this folder's pinned tools (typedoc, TypeScript 5.9) from its lockfile when they are
// missing or stale. Quiet when there is nothing to do. Used by docs.mjs and by the tests.
import { execFileSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

export const TOOLS = dirname(fileURLToPath(import.meta.url))

/** The installed version of `name` in tools/ts5, or undefined. */
function installed(name) {
  const file = join(TOOLS, "node_modules", name, "package.json")
  return existsSync(file) ? JSON.parse(readFileSync(file, "utf8")).version : undefined
}

/** Make sure tools/ts5/node_modules matches tools/ts5/package.json; returns the folder. */
export function ensureTools() {
  const wanted = JSON.parse(readFileSync(join(TOOLS, "package.json"), "utf8")).devDependencies
  const stale = Object.entries(wanted).some(([name, version]) => installed(name) !== version)
  if (stale) {
    const npm = process.platform === "win32" ? "npm.cmd" : "npm"
    execFileSync(npm, ["ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: TOOLS, stdio: ["ignore", "inherit", "inherit"] })
  }
  return TOOLS
}

/** Path of the TypeScript 5.9 `tsc` (JavaScript; run it with node). */
export function tsc59() {
  ensureTools()
  return join(TOOLS, "node_modules", "typescript", "bin", "tsc")
}

if (process.argv[1] === fileURLToPath(import.meta.url)) ensureTools()
