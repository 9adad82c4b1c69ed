/**
 * Real redis-server processes for the tests and benches of the Redis backend: a free loopback
 * port, a server started on it (no snapshots, no daemon) and waited for until it answers PING.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { mkdirSync } from "node:fs"
import { createServer } from "node:net"

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

/** `redis-cli -p port args...`: its stdout, or a rejection with its stderr. */
export const redisCli = (port: number, ...args: string[]): Promise<string> =>
  new Promise((resolve, reject) => execFile("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args], { timeout: 10_000 }, (e, out, err) => (e ? reject(new Error(`${e.message}: ${err}`)) : resolve(out))))

/** Poll `ok` every 50 ms until it holds; throws after `ms`. */
export async function until(what: string, ok: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    if (await ok().catch(() => false)) return
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (is redis-server installed? apt-get install -y redis-server)`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/**
 * Start redis-server on a free port with its files in `parent/redis-<port>`, `extra` arguments
 * last; the process goes into `started` (the caller kills it). Resolves with the port once it
 * answers PING.
 */
export async function startRedisServer(parent: string, extra: readonly string[], started: ChildProcess[]): Promise<number> {
  const port = await freePort()
  const dir = `${parent}/redis-${port}`
  mkdirSync(dir)
  const p = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--daemonize", "no", "--loglevel", "warning", ...extra], { stdio: "ignore" })
  started.push(p)
  await until(`redis-server on ${port}`, async () => (await redisCli(port, "PING")).trim() === "PONG")
  return port
}
