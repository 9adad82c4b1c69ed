#!/usr/bin/env node
/**
 * `npm test`'s pretest step: the Redis backend's tests (test/snapshot/redis.test.ts) start real
 * Debian `redis-server` processes (a single node and a 3-node cluster, via `redis-cli --cluster
 * create`). When either binary is missing and this runs as root with apt-get, install
 * redis-server (it brings redis-tools; idempotent; a failing `apt-get update` is tolerated: what
 * matters is whether it installs). Otherwise say in one line what to do; those tests then fail
 * with the same advice. Installing does not leave a server running here: the tests start their own.
 */
import { execFileSync, spawnSync } from "node:child_process"

const have = (bin) => spawnSync("sh", ["-c", `command -v ${bin}`], { stdio: "ignore" }).status === 0

if (!have("redis-server") || !have("redis-cli")) {
  const root = typeof process.getuid === "function" && process.getuid() === 0
  if (root && have("apt-get")) {
    process.stderr.write("pretest: installing Debian's redis-server for the Redis backend tests (apt-get install -y redis-server)\n")
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
    spawnSync("apt-get", ["update", "-q"], { stdio: "ignore", env })
    try {
      execFileSync("apt-get", ["install", "-y", "-q", "redis-server"], { stdio: ["ignore", "ignore", "inherit"], env })
    } catch {
      process.stderr.write("pretest: apt-get install redis-server failed; the Redis backend tests will fail\n")
      process.exit(1)
    }
  } else {
    process.stderr.write("pretest: the Redis backend tests need redis-server and redis-cli: apt-get install -y redis-server (as root)\n")
  }
}
