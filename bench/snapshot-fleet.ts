/**
 * Issue 15's fleet backend under two hosts: a real redis-server (started here on a free loopback
 * port, killed at the end, on error and on SIGINT) and two child processes (bench/
 * snapshot-fleet-host.ts) that save the same real fleet into it at the same moment and then
 * restore it, against the embedded default doing the same: pack files allow one writer per
 * directory, so each host saves to its own store, both at once (two hosts with local disks,
 * here sharing one disk). Figures: save and restore GB/s of logical bytes per host and in total
 * (2 x logical / wall time from the start signal to the last host's answer), and the pages each
 * store holds afterwards (must equal the fleet's distinct non-zero pages: stored once).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { RedisBackend, SnapshotStore } from "../src/snapshot/index.ts"
import { type Fleet, quickjsFleet, v86Fleet } from "./fleets.ts"
import { type BenchModule, type BenchOptions, type BenchResult, type BenchRow, childNodeArgs, fmt, GB, median, MiB } from "./lib.ts"
import type { HostCommand, HostReply } from "./snapshot-fleet-host.ts"
import { distinctPages } from "./snapshot.ts"
import { startRedisServer } from "../test/helpers/redis.ts"

const HOST = fileURLToPath(new URL("./snapshot-fleet-host.ts", import.meta.url))

/** Everything this bench started, killed however it ends. */
const started: ChildProcess[] = []
const killAll = () => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL")
}

/** A host process and a way to ask it something. */
interface Host {
  ask(c: HostCommand): Promise<HostReply>
}

function startHost(files: readonly string[]): Promise<Host> {
  const child = spawn(process.execPath, [...childNodeArgs(false), HOST, ...files], { stdio: ["ignore", "inherit", "inherit", "ipc"] })
  started.push(child)
  let waiting: ((r: HostReply) => void) | null = null
  let failed: ((e: Error) => void) | null = null
  child.on("message", (r: HostReply) => waiting?.(r))
  child.on("exit", (code, sig) => failed?.(new Error(`a host exited (${sig ?? code})`)))
  const next = () =>
    new Promise<HostReply>((resolve, reject) => {
      waiting = (r) => (r.ok ? resolve(r) : reject(new Error(`host: ${r.error}`)))
      failed = reject
    })
  const ready = next()
  return ready.then(() => ({
    ask(c: HostCommand) {
      const r = next()
      child.send(c)
      return r
    },
  }))
}

/** Both hosts do `c` at once: their replies and the wall time from the signal to the last answer. */
async function together(hosts: readonly Host[], c: (i: number) => HostCommand): Promise<{ replies: HostReply[]; wall: number }> {
  const t0 = performance.now()
  const replies = await Promise.all(hosts.map((h, i) => h.ask(c(i))))
  return { replies, wall: (performance.now() - t0) / 1e3 }
}

interface Run {
  save: { per: number[]; wall: number; newPages: number[] }
  restore: { per: number[]; wall: number }
  stored: number[]
}

/** Two hosts: open, save at once, restore at once, close; then count what the store(s) hold. */
async function twoHosts(hosts: readonly Host[], open: (i: number) => HostCommand, count: () => Promise<number[]>, round: number): Promise<Run> {
  await together(hosts, open)
  const s = await together(hosts, (i) => ({ op: "save", name: `fleet-${round}-host-${i}` }))
  const r = await together(hosts, (i) => ({ op: "restore", name: `fleet-${round}-host-${i}` }))
  if (r.replies.some((x) => x.exact !== true)) throw new Error("a host's restore is not byte-exact")
  await together(hosts, () => ({ op: "close" }))
  return { save: { per: s.replies.map((x) => x.seconds!), wall: s.wall, newPages: s.replies.map((x) => x.newPages!) }, restore: { per: r.replies.map((x) => x.seconds!), wall: r.wall }, stored: await count() }
}

async function redisPages(port: number, namespace: string): Promise<number> {
  const store = await SnapshotStore.withBackend(await RedisBackend.open({ nodes: [{ host: "127.0.0.1", port }], namespace }))
  try {
    return (await store.stats()).storedPages
  } finally {
    await store.close()
  }
}

async function packPages(dir: string): Promise<number> {
  const store = await SnapshotStore.open(dir)
  try {
    return (await store.stats()).storedPages
  } finally {
    await store.close()
  }
}

async function measure(f: Fleet, files: readonly string[], work: string, rounds: number, opts: BenchOptions, rows: BenchRow[], notes: string[]): Promise<void> {
  const logical = f.images.reduce((a, i) => a + i.byteLength, 0)
  const distinct = distinctPages(f.images).length
  const targets: { name: string; run: (round: number, hosts: readonly Host[]) => Promise<Run> }[] = []
  for (const [label, extra] of [
    ["Redis, no persistence (as the tests run it)", ["--appendonly", "no"]],
    ["Redis, AOF appendfsync always (durable like the pack files' fsync)", ["--appendonly", "yes", "--appendfsync", "always"]],
  ] as const) {
    const port = await startRedisServer(work, extra, started)
    // A namespace per round: every round saves into an empty store, as the pack files do.
    targets.push({ name: label, run: (round, hosts) => twoHosts(hosts, () => ({ op: "open", redisPort: port, namespace: `r${round}` }), async () => [await redisPages(port, `r${round}`)], round) })
  }
  // Pack files: one writer per directory, so each host its own store (fresh each round).
  targets.push({
    name: "pack files, one store per host (single-writer lock)",
    run: (round, hosts) => {
      const dirs = hosts.map((_, i) => join(work, `pack-${round}-${i}`))
      return twoHosts(hosts, (i) => ({ op: "open", packDir: dirs[i]! }), () => Promise.all(dirs.map(packPages)), round)
    },
  })
  const results = new Map<string, Run[]>(targets.map((t) => [t.name, []]))
  for (let r = 0; r < rounds; r++) {
    // Two fresh host processes per round, each store's turn in rotated order.
    const hosts = await Promise.all([0, 1].map(() => startHost(files)))
    for (let k = 0; k < targets.length; k++) {
      const t = targets[(k + r) % targets.length]!
      opts.log(`snapshot-fleet: round ${r + 1}/${rounds}: ${t.name}`)
      results.get(t.name)!.push(await t.run(r, hosts))
    }
    await Promise.all(hosts.map((h) => h.ask({ op: "exit" })))
  }
  const gbs = (secs: readonly number[]) => secs.map((s) => logical / GB / s)
  const cell = (xs: readonly number[]) => `${fmt(median(xs))} (${fmt(Math.min(...xs))}..${fmt(Math.max(...xs))})`
  const table = [
    `**${f.name}**: ${fmt(logical / MiB)} MiB logical per host, ${distinct.toLocaleString("en-US")} distinct non-zero pages; two host processes on one machine (${rounds} rounds, order rotated; median (min..max)); GB/s of logical bytes. Total = 2 x logical / wall time from the start signal to the last host's answer.`,
    "",
    "| store | save GB/s per host | save GB/s total | restore GB/s per host | restore GB/s total | pages each host handed to its backend, host 0 / host 1 (first round) | pages stored |",
    "|---|---|---|---|---|---|---|",
  ]
  for (const t of targets) {
    const runs = results.get(t.name)!
    const first = runs[0]!
    const stored = runs[runs.length - 1]!.stored
    if (stored.some((n) => n !== distinct)) throw new Error(`${t.name}: stored ${stored.join(" + ")} pages, expected ${distinct} per store`)
    table.push(`| ${t.name} | ${cell(gbs(runs.flatMap((x) => x.save.per)))} | ${cell(runs.map((x) => (2 * logical) / GB / x.save.wall))} | ${cell(gbs(runs.flatMap((x) => x.restore.per)))} | ${cell(runs.map((x) => (2 * logical) / GB / x.restore.wall))} | ${first.save.newPages.join(" / ")} | ${stored.join(" + ")} (${stored.length === 1 ? "one shared store" : "one store per host"}) |`)
    rows.push({ name: `two hosts, save total: ${t.name}`, value: median(runs.map((x) => (2 * logical) / GB / x.save.wall)), unit: "GB/s", detail: `${f.name}; per host ${fmt(median(gbs(runs.flatMap((x) => x.save.per))))} GB/s; pages stored ${stored.join(" + ")} = distinct ${distinct}${stored.length === 1 ? "" : " per store"}` })
    rows.push({ name: `two hosts, restore total: ${t.name}`, value: median(runs.map((x) => (2 * logical) / GB / x.restore.wall)), unit: "GB/s", detail: `${f.name}; per host ${fmt(median(gbs(runs.flatMap((x) => x.restore.per))))} GB/s; byte-exact` })
  }
  notes.push(table.join("\n"))
}

export const snapshotFleet: BenchModule = {
  name: "snapshot-fleet",
  description: "issue 15: two host processes save the same real fleet at once and restore it, into one redis-server (no persistence / AOF always) vs pack files (one store per host): GB/s per host and total, pages stored once",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const rows: BenchRow[] = []
    const notes: string[] = []
    const work = mkdtempSync(join(tmpdir(), "sksm-bench-fleet-"))
    const onSignal = (sig: NodeJS.Signals) => {
      killAll()
      rmSync(work, { recursive: true, force: true })
      process.exit(sig === "SIGINT" ? 130 : 143)
    }
    process.once("SIGINT", onSignal)
    process.once("SIGTERM", onSignal)
    process.once("exit", killAll)
    try {
      let f: Fleet
      const v86 = v86Fleet()
      if (typeof v86 === "string") {
        notes.push(`${v86} The demo's QuickJS interpreters stand in.`)
        f = await quickjsFleet(8)
      } else f = { name: `${v86.name}, first ${opts.quick ? 1 : 2} (per host)`, images: v86.images.slice(0, opts.quick ? 1 : 2) }
      // The hosts read the images from files (the cache's, or copies in the work directory).
      const files = f.images.map((img, i) => {
        const p = join(work, `image-${i}.bin`)
        writeFileSync(p, img)
        return p
      })
      await measure(f, files, work, opts.quick ? 1 : 2, opts, rows, notes)
      notes.push("Both hosts run on this one machine (2 cores), so total GB/s is bounded by its CPU: each host hashes every page (HMAC-SHA-256) on save and verifies every page on restore. Pages handed to the backend: both hosts lack every page when they start, so both send them; Redis keeps one copy (SET NX), and the pages stored are the distinct pages. Redis: one redis-server, hosts with cacheBytes 0 (every restored page fetched from the server). Pack files: a directory has one writer (LOCK), so each host saves into a store of its own at the same time, and each store holds the distinct pages once; one shared directory would serialise the hosts.")
    } finally {
      killAll()
      process.removeListener("SIGINT", onSignal)
      process.removeListener("SIGTERM", onSignal)
      process.removeListener("exit", killAll)
      rmSync(work, { recursive: true, force: true })
    }
    return { rows, notes }
  },
}
