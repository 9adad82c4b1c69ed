#!/usr/bin/env node
/**
 * The `sksm` command line (the package's `bin`, built to dist/cli/main.js): dispatch to a
 * command, and turn every failure into one line on stderr with a non-zero exit (1 for failures,
 * 2 for bad usage). Commands are imported lazily so `sksm estimate` never loads the interpreter
 * the demo needs, and `sksm --version` loads nothing but this file, errors.ts and help.ts.
 */
import { readFileSync, realpathSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { CliError, isMissingPackage, missingDependency, usageError } from "./errors.ts"
import { HELP, HELP_HELP, MAIN_HELP } from "./help.ts"

const COMMANDS = ["demo", "estimate", "bench", "snapshot", "help"] as const

/** Run the command line with `argv` (without node and script). Resolves to the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [first, ...rest] = argv
  if (first === undefined || first === "-h" || first === "--help") {
    process.stdout.write(MAIN_HELP)
    return 0
  }
  if (first === "-v" || first === "--version") {
    process.stdout.write(`${version()}\n`)
    return 0
  }
  if (first === "help") {
    const topic = rest[0]
    if (topic === undefined) process.stdout.write(MAIN_HELP)
    else if (topic === "-h" || topic === "--help" || topic === "help") process.stdout.write(HELP_HELP)
    else if (topic.startsWith("-")) throw usageError(`unknown option ${topic} for "sksm help"`, "help")
    else if (HELP[topic] !== undefined) process.stdout.write(HELP[topic])
    else throw usageError(`no such command: ${topic}`)
    return 0
  }
  if (!(COMMANDS as readonly string[]).includes(first)) {
    throw usageError(first.startsWith("-") ? `unknown option ${first}` : `no such command: ${first}`)
  }
  if (rest.includes("-h") || rest.includes("--help")) {
    process.stdout.write(HELP[first]!)
    return 0
  }
  switch (first) {
    case "demo":
      await (await needs("demo", "quickjs-emscripten", () => import("./demo.ts"))).demo(rest)
      return 0
    case "estimate":
      await (await import("./estimate.ts")).estimate(rest)
      return 0
    case "bench":
      return (await import("./bench.ts")).bench(rest)
    case "snapshot":
      await (await import("./snapshot.ts")).snapshot(rest)
      return 0
  }
  return 0
}

/**
 * Load a command's module; if a package it imports is not installed (the demo's interpreter is a
 * dev dependency, not installed with the package), say so in one line.
 */
async function needs<T>(command: string, dependency: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load()
  } catch (e) {
    if (isMissingPackage(e, dependency)) throw missingDependency(command, dependency)
    throw e
  }
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: string }
    return `sksm ${pkg.version ?? "?"}`
  } catch {
    return "sksm"
  }
}

/** Print an error as one line and pick the exit code. */
export function report(error: unknown): number {
  if (error instanceof CliError) {
    process.stderr.write(`sksm: ${error.message}\n`)
    return error.exitCode
  }
  const e = error as { _tag?: string; message?: string; stack?: string }
  if (process.env["SKSM_DEBUG"] === "1" && e?.stack !== undefined) process.stderr.write(`${e.stack}\n`)
  const msg = (e?.message ?? String(error)).split("\n")[0]
  const tag = typeof e?._tag === "string" ? `${e._tag}: ` : ""
  process.stderr.write(`sksm: internal error: ${tag}${msg}${process.env["SKSM_DEBUG"] === "1" ? "" : " (SKSM_DEBUG=1 for the stack)"}\n`)
  return 1
}

/**
 * True when this module is the program, not an import: `sksm` (node_modules/.bin/sksm, a
 * symlink to dist/cli/main.js), `node dist/cli/main.js`, or `tsx src/cli/main.ts`.
 */
function isEntry(): boolean {
  const arg = process.argv[1]
  if (arg === undefined) return false
  try {
    if (realpathSync(arg) === realpathSync(fileURLToPath(import.meta.url))) return true
  } catch {
    // not a file: fall through
  }
  return arg.endsWith("/src/cli/main.ts") || arg.endsWith("/src/cli/main")
}

/** Entry used by the built bin, bin/sksm.mjs (sources through tsx) and `tsx src/cli/main.ts`. */
export async function run(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  // `sksm estimate ... | head` closes stdout early: that is not an error.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(0)
  })
  // A failure outside the awaited chain (a timer, a background loop) is still one line.
  const fatal = (e: unknown) => process.exit(report(e))
  process.on("uncaughtException", fatal)
  process.on("unhandledRejection", fatal)
  let code: number
  try {
    code = await main(argv)
  } catch (e) {
    code = report(e)
  }
  process.exitCode = code
}

if (isEntry()) await run()
