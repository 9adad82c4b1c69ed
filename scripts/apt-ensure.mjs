/**
 * One Debian package for a pretest step (ensure-chromium.mjs, ensure-redis.mjs): as root with
 * apt-get, install it (idempotent; a failing `apt-get update`, e.g. one index during a mirror
 * sync, is tolerated: what matters is whether the package installs), exiting 1 if that fails;
 * otherwise print `advice` in one line (the tests that need it then fail with the same advice).
 */
import { execFileSync, spawnSync } from "node:child_process"

/** Whether `bin` is on PATH. */
export const onPath = (bin) => spawnSync("sh", ["-c", `command -v ${bin}`], { stdio: "ignore" }).status === 0

/** Install Debian package `pkg` for `what` (a phrase: "the browser tests"), or say what to do. */
export function aptEnsure(pkg, what, advice) {
  const root = typeof process.getuid === "function" && process.getuid() === 0
  if (!root || !onPath("apt-get")) {
    process.stderr.write(`pretest: ${advice}\n`)
    return
  }
  process.stderr.write(`pretest: installing Debian's ${pkg} for ${what} (apt-get install -y ${pkg})\n`)
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
  spawnSync("apt-get", ["update", "-q"], { stdio: "ignore", env })
  try {
    execFileSync("apt-get", ["install", "-y", "-q", pkg], { stdio: ["ignore", "ignore", "inherit"], env })
  } catch {
    process.stderr.write(`pretest: apt-get install ${pkg} failed; ${what} will fail\n`)
    process.exit(1)
  }
}
