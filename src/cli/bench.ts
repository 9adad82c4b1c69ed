/**
 * `sksm bench`: run the repository's comparison benchmarks (bench/run.ts) in a child process,
 * through tsx, passing the flags on. A child keeps the benchmark's memory and timing apart from
 * the CLI's own, and keeps the CLI independent of the bench modules' internals.
 */
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { availableParallelism, loadavg } from "node:os"
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

/**
 * One line about how busy the machine is: the 1-minute load average against the cores, with a
 * warning when other work competes with the benchmarks (their timings and goals then suffer).
 */
export function loadLine(load: number = loadavg()[0]!, cores: number = availableParallelism()): string {
  const base = `load average ${load.toFixed(2)} (1 min) on ${cores} core${cores === 1 ? "" : "s"}`
  if (load <= cores) return base
  return `${base}: the machine is loaded (${(load / cores).toFixed(1)} runnable tasks per core), so timings run slow and time goals may FAIL for that reason alone; rerun on an idle machine to judge them`
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
  process.stdout.write(`sksm bench: ${loadLine()}\n`)
  const child = spawn(process.execPath, [tsxCli, runTs, ...pass], { stdio: "inherit" })
  const forward = (sig: NodeJS.Signals) => child.kill(sig)
  process.on("SIGINT", forward)
  process.on("SIGTERM", forward)
  try {
    const code = await new Promise<number>((resolve, reject) => {
      child.on("error", (e) => reject(new CliError(`cannot start the benchmarks: ${e.message}`)))
      child.on("exit", (code, signal) => resolve(code ?? (signal !== null ? 128 : 1)))
    })
    // Again at the end, next to the goals: the load during the run is what matters.
    process.stdout.write(`sksm bench: at the end, ${loadLine()}\n`)
    return code
  } finally {
    process.off("SIGINT", forward)
    process.off("SIGTERM", forward)
  }
}
