/**
 * `sksm bench`: run the repository's comparison benchmarks (bench/run.ts) in a child process,
 * through tsx, passing the flags on. A child keeps the benchmark's memory and timing apart from
 * the CLI's own, and keeps the CLI independent of the bench modules' internals.
 */
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"
import { parse } from "./args.ts"
import { CliError, missingDependency } from "./errors.ts"

const COMMAND = "bench"

/** Resolve `specifier` from `from` (a path or file URL), or fail in one line naming the dev dependency. */
function resolveFrom(from: string, specifier: string, dependency: string): string {
  try {
    return createRequire(from).resolve(specifier)
  } catch {
    throw missingDependency(COMMAND, dependency)
  }
}

/** Run `sksm bench`; resolves to the benchmark's exit code. */
export async function bench(args: readonly string[]): Promise<number> {
  const { values, positionals } = parse(COMMAND, args, { quick: { type: "boolean" }, out: { type: "string" }, write: { type: "boolean" } }, true)
  const runTs = fileURLToPath(new URL("../../bench/run.ts", import.meta.url))
  if (!existsSync(runTs)) throw new CliError(`sksm bench needs the benchmarks of a clone of the repository (${runTs} not found)`)
  // The benchmarks are TypeScript run through tsx and use tinybench: both dev dependencies.
  const tsxCli = resolveFrom(import.meta.url, "tsx/cli", "tsx")
  resolveFrom(runTs, "tinybench", "tinybench")
  const pass = [...(values.quick === true ? ["--quick"] : []), ...(values.out !== undefined ? ["--out", values.out] : []), ...(values.write === false ? ["--no-write"] : []), ...positionals]
  const child = spawn(process.execPath, [tsxCli, runTs, ...pass], { stdio: "inherit" })
  const forward = (sig: NodeJS.Signals) => child.kill(sig)
  process.on("SIGINT", forward)
  process.on("SIGTERM", forward)
  try {
    return await new Promise<number>((resolve, reject) => {
      child.on("error", (e) => reject(new CliError(`cannot start the benchmarks: ${e.message}`)))
      child.on("exit", (code, signal) => resolve(code ?? (signal !== null ? 128 : 1)))
    })
  } finally {
    process.off("SIGINT", forward)
    process.off("SIGTERM", forward)
  }
}
