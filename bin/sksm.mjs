#!/usr/bin/env node
// `sksm` from the TypeScript sources, through tsx (a dev dependency): for a clone of the
// repository, without a build (`node bin/sksm.mjs --help`). The published package's `sksm` is the
// built dist/cli/main.js; this file is not shipped.
import { register } from "tsx/esm/api"

register()
const { run } = await import("../src/cli/main.ts")
await run(process.argv.slice(2))
