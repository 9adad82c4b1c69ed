#!/usr/bin/env node
// The `sksm` command: run the TypeScript sources through tsx (no build step).
import { register } from "tsx/esm/api"

register()
const { run } = await import("../src/cli/main.ts")
await run(process.argv.slice(2))
