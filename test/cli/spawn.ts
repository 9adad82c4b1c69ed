/** Run the `sksm` command as a user would (node bin/sksm.mjs ...), capturing its output. */
import { spawn, spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"

export const ROOT = fileURLToPath(new URL("../../", import.meta.url))
export const BIN = fileURLToPath(new URL("../../bin/sksm.mjs", import.meta.url))

export interface Ran {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Spawn `sksm ...args` and wait for it. */
export function sksm(args: readonly string[], options: { env?: Record<string, string>; prefix?: readonly string[] } = {}): Promise<Ran> {
  const prefix = options.prefix ?? []
  const cmd = prefix.length > 0 ? prefix[0]! : process.execPath
  const argv = prefix.length > 0 ? [...prefix.slice(1), process.execPath, BIN, ...args] : [BIN, ...args]
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { cwd: ROOT, env: { ...process.env, ...options.env }, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    child.on("error", reject)
    child.on("close", (code) => resolve({ code, stdout, stderr }))
  })
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
