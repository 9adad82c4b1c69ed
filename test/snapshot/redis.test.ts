/**
 * The Redis fleet backend against real servers: Debian's redis-server, started here on loopback
 * ports in a temp dir, as a single node and as a 3-node Redis Cluster (`redis-cli --cluster
 * create`). Two processes save the same image: its pages are stored once (counted as keys on
 * the servers). Restore byte-exact, delete + gc, a flipped byte as SnapshotCorrupt, and a save
 * that relied on pages another host's gc freed fails instead of committing. No mock: every
 * server is killed at the end. (`npm test`'s pretest installs redis-server when missing.)
 */
import { type ChildProcess, execFile, spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { build } from "esbuild"
import { Cluster, Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Engine } from "../../src/index.ts"
import { RedisBackend, type RedisBackendOptions, SnapshotCorrupt, SnapshotStore, StoreIOError } from "../../src/snapshot/index.ts"
import { fleetImage } from "./fixtures/redis-fleet.ts"
import { freePort, redisCli, startRedisServer, until } from "../helpers/redis.ts"

const PAGE = 4096
const HAVE = spawnSync("sh", ["-c", "command -v redis-server && command -v redis-cli"], { stdio: "ignore" }).status === 0
if (!HAVE) throw new Error("the Redis backend tests need redis-server and redis-cli: apt-get install -y redis-server (as root); npm test's pretest does it")

let work: string
let child: string
const servers: ChildProcess[] = []
let single: RedisBackendOptions
let cluster: RedisBackendOptions
let singlePort = 0
let clusterPorts: number[] = []

const cli = redisCli

const startServer = (extra: string[] = []): Promise<number> => startRedisServer(work, ["--appendonly", "no", ...extra], servers)

// Should this worker end without afterAll (a crash, a timeout), the servers go with it.
process.once("exit", () => {
  for (const p of servers) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL")
})

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "sksm-redis-"))
  // The child "host": one bundle (a plain node start), ioredis left to resolve from this repo.
  const cache = join(import.meta.dirname, "../../node_modules/.cache/sksm-redis-test")
  mkdirSync(cache, { recursive: true })
  child = join(cache, "child.mjs")
  const built = build({ entryPoints: [join(import.meta.dirname, "fixtures/redis-child.ts")], bundle: true, platform: "node", format: "esm", target: "node20", outfile: child, external: ["ioredis"], logLevel: "silent" })
  singlePort = await startServer()
  clusterPorts = await Promise.all([0, 1, 2].map(() => startServer(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"])))
  await cli(clusterPorts[0]!, "--cluster", "create", ...clusterPorts.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes")
  for (const p of clusterPorts) await until(`cluster state ok on ${p}`, async () => (await cli(p, "CLUSTER", "INFO")).includes("cluster_state:ok"))
  single = { nodes: [{ host: "127.0.0.1", port: singlePort }] }
  cluster = { nodes: clusterPorts.map((port) => ({ host: "127.0.0.1", port })), cluster: true }
  await built
}, 30_000)

afterAll(async () => {
  await Promise.all(
    servers.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve()
          p.once("exit", () => resolve())
          p.kill("SIGKILL")
        }),
    ),
  )
  rmSync(work, { recursive: true, force: true })
})

/** Run the child host: save the fleet image as `name`; its save report. */
function host(options: RedisBackendOptions, name: string): Promise<{ newPages: number; nonZeroPages: number }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [child, JSON.stringify(options), name], { timeout: 20_000 }, (e, out, err) => (e ? reject(new Error(`${e.message}: ${err}`)) : resolve(JSON.parse(out.trim()))))
  })
}

/** A raw client on the deployment (for counting and damaging keys). */
async function raw(kind: "single" | "cluster"): Promise<Redis | Cluster> {
  const c = kind === "single" ? new Redis({ host: "127.0.0.1", port: singlePort, lazyConnect: true }) : new Cluster(clusterPorts.map((port) => ({ host: "127.0.0.1", port })), { lazyConnect: true })
  await c.connect()
  return c
}

/** Keys matching `pattern` on every master. */
async function keys(c: Redis | Cluster, pattern: string): Promise<string[]> {
  const nodes = c instanceof Cluster ? c.nodes("master") : [c]
  const out: string[] = []
  for (const n of nodes) out.push(...(await n.keys(pattern)))
  return out
}

function distinctNonZero(bytes: Uint8Array): number {
  const seen = new Set<string>()
  const zero = new Uint8Array(PAGE)
  for (let o = 0; o < bytes.length; o += PAGE) {
    const p = bytes.subarray(o, o + PAGE)
    if (Buffer.compare(p, zero) !== 0) seen.add(createHash("sha256").update(p).digest("hex"))
  }
  return seen.size
}

describe.each(["single", "cluster"] as const)("RedisBackend on a real Redis (%s)", (kind) => {
  const opts = (ns: string, extra: Partial<RedisBackendOptions> = {}): RedisBackendOptions => ({ ...(kind === "single" ? single : cluster), namespace: ns, ...extra })

  it("two hosts (two processes) saving the same image at once store its pages once; restore is byte-exact; delete + gc frees them", async () => {
    const ns = `fleet-${kind}`
    const engine = new Engine()
    const image = fleetImage(engine)
    const expected = image.read(0, image.size)
    const distinct = distinctNonZero(expected)
    const [a, b] = await Promise.all([host(opts(ns), "host-a"), host(opts(ns), "host-b")])
    expect(a.nonZeroPages).toBe(b.nonZeroPages)
    // Each page was written by one host or the other, never both.
    expect(a.newPages + b.newPages).toBeGreaterThanOrEqual(distinct)
    const c = await raw(kind)
    try {
      expect((await keys(c, `${ns}:p:*`)).length).toBe(distinct)
      if (kind === "cluster") {
        // Pages are spread over the nodes; the metadata lives in one slot.
        const per = await Promise.all((c as Cluster).nodes("master").map((n) => n.keys(`${ns}:p:*`)))
        expect(per.filter((k) => k.length > 0).length).toBe(3)
      }
      const store = await SnapshotStore.withBackend(await RedisBackend.open(opts(ns)))
      try {
        expect(store.list().map((s) => s.name)).toEqual(["host-a", "host-b"])
        const st = await store.stats()
        expect(st.storedPages).toBe(distinct)
        expect(st.dedupRatio).toBeCloseTo((2 * a.nonZeroPages) / distinct, 5)
        for (const name of ["host-a", "host-b"]) {
          const [space] = await store.restore(name, engine)
          expect(Buffer.compare(space!.read(0, space!.size), expected)).toBe(0)
        }
        // A third save from this host writes nothing.
        expect((await store.save(image, { name: "host-c" })).newPages).toBe(0)
        await store.delete("host-a")
        await store.delete("host-b")
        expect((await store.gc()).pagesFreed).toBe(0)
        expect((await keys(c, `${ns}:p:*`)).length).toBe(distinct)
        await store.delete("host-c")
        expect((await store.gc()).pagesFreed).toBe(distinct)
        expect(await keys(c, `${ns}:p:*`)).toEqual([])
        expect((await store.stats()).storedPages).toBe(0)
      } finally {
        await store.close()
      }
    } finally {
      c.disconnect()
    }
  })

  it("refresh(): a host's store sees the snapshots other hosts committed, replaced and deleted", async () => {
    const ns = `refresh-${kind}`
    const engine = new Engine()
    const hostA = await SnapshotStore.withBackend(await RedisBackend.open(opts(ns)))
    const hostB = await SnapshotStore.withBackend(await RedisBackend.open(opts(ns)))
    try {
      await hostA.save(fleetImage(engine, 11), { name: "x", meta: { v: 1 } })
      expect(hostB.list()).toEqual([])
      await hostB.refresh()
      expect(hostB.list().map((s) => [s.name, s.meta])).toEqual([["x", { v: 1 }]])
      await hostA.save(fleetImage(engine, 12), { name: "x", meta: { v: 2 }, replace: true })
      await hostB.refresh()
      expect(hostB.list().map((s) => s.meta)).toEqual([{ v: 2 }])
      await hostB.delete("x")
      await hostA.refresh()
      expect(hostA.list()).toEqual([])
      expect((await hostA.stats()).unreferencedPages).toBeGreaterThan(0)
      await hostA.gc()
      const st = await hostA.stats()
      expect([st.storedPages, st.unreferencedPages, st.snapshots]).toEqual([0, 0, 0])
    } finally {
      await hostA.close()
      await hostB.close()
    }
  })

  it("a flipped byte in a stored page is SnapshotCorrupt naming the snapshot and page (the local cache does not hide it from a fresh host)", async () => {
    const ns = `corrupt-${kind}`
    const engine = new Engine()
    const image = fleetImage(engine, 3)
    const store = await SnapshotStore.withBackend(await RedisBackend.open(opts(ns)))
    await store.save(image, { name: "vm" })
    await store.close()
    const c = await raw(kind)
    try {
      const [victim] = await keys(c, `${ns}:p:*`)
      const byte = (await c.getrangeBuffer(victim!, 100, 100))[0]!
      await c.setrange(victim!, 100, Buffer.from([byte ^ 0x10]))
      const fresh = await SnapshotStore.withBackend(await RedisBackend.open(opts(ns)))
      try {
        const e = await fresh.restore("vm", engine).then(
          () => null,
          (x: unknown) => x,
        )
        expect(e).toBeInstanceOf(SnapshotCorrupt)
        expect((e as SnapshotCorrupt).snapshot).toBe("vm")
        expect((e as SnapshotCorrupt).page).toBeGreaterThanOrEqual(0)
        expect((e as SnapshotCorrupt).message).toContain("do not match")
        expect(engine.spaces().length).toBe(1) // only the image: the restore disposed what it made
      } finally {
        await fresh.close()
      }
    } finally {
      c.disconnect()
    }
  })

  it("a save relying on pages another host's gc freed fails (never commits a manifest with a missing page); saving again works", async () => {
    const ns = `race-${kind}`
    const engine = new Engine()
    const image = fleetImage(engine, 7)
    const expected = image.read(0, image.size)
    const hostA = await SnapshotStore.withBackend(await RedisBackend.open(opts(ns)))
    const hostB = await SnapshotStore.withBackend(await RedisBackend.open(opts(ns)))
    try {
      await hostA.save(image, { name: "one" })
      await hostA.delete("one")
      // Host B collects: the pages host A still believes present are freed.
      expect((await hostB.gc()).pagesFreed).toBe(distinctNonZero(expected))
      const e = await hostA.save(image, { name: "two" }).then(
        () => null,
        (x: unknown) => x,
      )
      expect(e).toBeInstanceOf(StoreIOError)
      expect((e as Error).message).toMatch(/freed by a gc on another host/)
      expect(await hostB.restore("two", engine).then(() => "restored", (x: unknown) => (x as { _tag: string })._tag)).toBe("SnapshotNotFound")
      const again = await hostA.save(image, { name: "two" })
      expect(again.newPages).toBe(distinctNonZero(expected))
      const [space] = await hostB.restore("two", engine)
      expect(Buffer.compare(space!.read(0, space!.size), expected)).toBe(0)
    } finally {
      await hostA.close()
      await hostB.close()
    }
  })
})

describe("RedisBackend: the gc protocol's leases", () => {
  it("gc waits for a save in flight (its lease) and a save waits for a gc (its lock), both on the server's clock", async () => {
    const ns = "lease"
    const c = await raw("single")
    try {
      // A save lease held by a host that crashed: gc waits until it expires (leaseMs), then runs.
      await c.zadd(`{${ns}}:s`, Date.now() + 600, "crashed-host")
      const store = await SnapshotStore.withBackend(await RedisBackend.open({ ...single, namespace: ns, leaseMs: 500 }))
      const t0 = Date.now()
      await store.gc()
      expect(Date.now() - t0).toBeGreaterThanOrEqual(300)
      // A gc lock held: a save waits for it (here: until waitMs, then StoreUnavailable).
      await c.set(`{${ns}}:l`, "other-gc", "PX", 5000)
      const waiting = await SnapshotStore.withBackend(await RedisBackend.open({ ...single, namespace: ns, waitMs: 300 }))
      const e = await waiting.save(fleetImage(new Engine()), { name: "x" }).then(
        () => null,
        (x: unknown) => x,
      )
      expect((e as { _tag: string })._tag).toBe("StoreUnavailable")
      expect(waiting.list()).toEqual([])
      await c.del(`{${ns}}:l`)
      await waiting.save(fleetImage(new Engine()), { name: "x" })
      expect(waiting.list().map((s) => s.name)).toEqual(["x"])
      await waiting.close()
      await store.close()
    } finally {
      c.disconnect()
    }
  })

  it("bad options are InvalidArgument; an unreachable server is StoreIOError", async () => {
    await expect(RedisBackend.open({ nodes: [] })).rejects.toMatchObject({ _tag: "InvalidArgument" })
    await expect(RedisBackend.open({ ...single, namespace: "{x}" })).rejects.toMatchObject({ _tag: "InvalidArgument" })
    await expect(RedisBackend.open({ nodes: [{ host: "127.0.0.1", port: await freePort() }] })).rejects.toMatchObject({ _tag: "StoreIOError" })
  })
})
