// npm run docs: the API reference (docs/api, Markdown) from the doc comments of the two entry
// points, src/index.ts ("sksm") and src/effect.ts ("sksm/effect"). typedoc needs TypeScript's
// JavaScript API, which TypeScript 7 does not have, so it runs from tools/ts5 with TS 5.9.
//   node tools/ts5/docs.mjs [--out DIR] [--quiet]     (default docs/api; --quiet: errors only)
import { execFileSync } from "node:child_process"
import { join, resolve } from "node:path"
import { ensureTools, TOOLS } from "./ensure.mjs"

ensureTools()
const args = ["--options", join(TOOLS, "typedoc.json"), "--logLevel", process.argv.includes("--quiet") ? "Error" : "Warn"]
const at = process.argv.indexOf("--out")
if (at !== -1 && process.argv[at + 1] !== undefined) args.push("--out", resolve(process.argv[at + 1]))
execFileSync(process.execPath, [join(TOOLS, "node_modules", "typedoc", "bin", "typedoc"), ...args], { cwd: TOOLS, stdio: "inherit" })
