/** Run the `sksm` command as a user would (node bin/sksm.mjs ...), capturing its output. */
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { type Ran, run } from "../helpers/spawn.ts"

export { ROOT } from "../helpers/spawn.ts"
export const BIN = fileURLToPath(new URL("../../bin/sksm.mjs", import.meta.url))

/** Spawn `sksm ...args` and wait for it. */
export function sksm(args: readonly string[], options: { env?: Record<string, string>; prefix?: readonly string[] } = {}): Promise<Ran> {
  const prefix = options.prefix ?? []
  const cmd = prefix.length > 0 ? prefix[0]! : process.execPath
  const argv = prefix.length > 0 ? [...prefix.slice(1), process.execPath, BIN, ...args] : [BIN, ...args]
  return run(cmd, argv, options.env)
}

/** True if `setpriv` can drop to nobody here (we are root and it exists). */
export function canDropPrivileges(): boolean {
  if (process.getuid?.() !== 0) return false
  return spawnSync("setpriv", ["--reuid", "65534", "--regid", "65534", "--clear-groups", "true"]).status === 0
}

/** A one-line error: exactly one line on stderr, no stack frames. */
export function oneLine(stderr: string): boolean {
  const lines = stderr.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("npm warn"))
  return lines.length === 1 && lines[0]!.startsWith("sksm: ") && !/\n\s+at /.test(stderr)
}
