#!/usr/bin/env node
/**
 * `npm test`'s pretest step: the browser tests (test/package/browser.test.ts) drive Debian's
 * chromium. When it is missing and this runs as root with apt-get, install it (idempotent; a
 * failing `apt-get update`, e.g. one index during a mirror sync, is tolerated: what matters is
 * whether chromium installs). Otherwise say in one line what to do; the browser tests then fail
 * with the same advice. CHROMIUM_PATH names a browser elsewhere.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { existsSync } from "node:fs"

function have() {
  if (process.env.CHROMIUM_PATH && existsSync(process.env.CHROMIUM_PATH)) return true
  if (existsSync("/usr/bin/chromium") || existsSync("/usr/bin/chromium-browser")) return true
  return spawnSync("sh", ["-c", "command -v chromium || command -v chromium-browser"], { stdio: "ignore" }).status === 0
}

if (!have()) {
  const root = typeof process.getuid === "function" && process.getuid() === 0
  const apt = spawnSync("sh", ["-c", "command -v apt-get"], { stdio: "ignore" }).status === 0
  if (root && apt) {
    process.stderr.write("pretest: installing Debian's chromium for the browser tests (apt-get install -y chromium)\n")
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
    spawnSync("apt-get", ["update", "-q"], { stdio: "ignore", env })
    try {
      execFileSync("apt-get", ["install", "-y", "-q", "chromium"], { stdio: ["ignore", "ignore", "inherit"], env })
    } catch {
      process.stderr.write("pretest: apt-get install chromium failed; the browser tests will fail\n")
      process.exit(1)
    }
  } else {
    process.stderr.write("pretest: the browser tests need Chromium: apt-get install -y chromium (as root), or set CHROMIUM_PATH\n")
  }
}
