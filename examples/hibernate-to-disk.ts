/**
 * Hibernate a fleet of real interpreters to disk, end the process, and resume one of them from
 * disk in another process.
 *
 * 1. A child process boots a fleet of QuickJS interpreters (quickjs-emscripten, WebAssembly: the
 *    demo's fleet), copies each linear memory into an sksm address space, and saves the spaces
 *    as one snapshot with sksm/snapshot: every distinct page once on disk, zero pages free. Each
 *    instance then answers a probe once more; the answer goes in the snapshot's meta, so the
 *    resumed instance can be checked against what the hibernated one would have said next.
 *    Once save() has resolved (the snapshot is committed) the child kills itself with SIGKILL:
 *    no clean shutdown, nothing left in memory.
 * 2. This process, which never saw the fleet, opens the store, restores the snapshot (the pages
 *    of the fleet's shared framework merged again in memory), resumes one instance from its
 *    space, and evaluates code in it: it carries on where the hibernated one stopped.
 *
 * Run: npx tsx examples/hibernate-to-disk.ts            (FLEET=N instances, default 4)
 */
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { boot, evalString, hibernate, PROBE, resume, shutdown } from "../src/cli/fleet.ts"
import { Engine } from "../src/index.ts"
import { SnapshotStore } from "../src/snapshot/index.ts"

interface Saved {
  readonly index: number
  readonly app: string
  /** What the instance answered to PROBE right after it was hibernated. */
  readonly next: string
}

const MiB = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`

/** The saving child: boot, hibernate, save, then die without cleaning up. */
async function saver(dir: string, n: number): Promise<void> {
  const engine = new Engine()
  const spaces = []
  const instances: Saved[] = []
  for (let i = 0; i < n; i++) {
    const inst = await boot(i)
    spaces.push(hibernate(inst, engine))
    instances.push({ index: i, app: inst.app, next: evalString(inst.context, PROBE) })
    shutdown(inst)
  }
  const store = await SnapshotStore.open(dir)
  const r = await store.save(spaces, { name: "fleet", meta: { instances } })
  const st = await store.stats()
  console.log(`[saver pid ${process.pid}] hibernated ${n} interpreters: ${MiB(r.pages * engine.pageSize)} of linear memory, ${r.nonZeroPages} non-zero pages, ${r.newPages} distinct pages written (${MiB(st.diskBytes)} on disk)`)
  console.log(`[saver pid ${process.pid}] snapshot committed; killing myself with SIGKILL`)
  process.kill(process.pid, "SIGKILL")
}

async function main(): Promise<void> {
  const n = Number(process.env["FLEET"] ?? 4)
  const dir = mkdtempSync(join(tmpdir(), "sksm-hibernate-"))
  try {
    // 1. Save in a child process that then dies.
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), "--save", dir, String(n)], { stdio: ["ignore", "inherit", "inherit"] })
    const how = await new Promise<string>((res, rej) => {
      child.on("error", rej)
      child.on("exit", (code, signal) => res(signal ?? `exit code ${code}`))
    })
    console.log(`saver process ended: ${how}`)
    if (how !== "SIGKILL") throw new Error(`the saver did not die as planned (${how})`)

    // 2. Resume in this process, from disk only.
    const t0 = performance.now()
    const store = await SnapshotStore.open(dir)
    const [info] = store.list()
    const saved = (info!.meta as { instances: Saved[] }).instances
    const engine = new Engine()
    const spaces = await store.restore("fleet", engine)
    const stats = engine.stats()
    console.log(`[resumer pid ${process.pid}] restored ${spaces.length} spaces from disk in ${(performance.now() - t0).toFixed(0)} ms; ${stats.pagesSharing} pages merged again in memory`)
    const pick = saved[n > 1 ? 1 : 0]!
    const inst = await resume(spaces[pick.index]!, pick.index, pick.app)
    const answer = evalString(inst.context, PROBE)
    console.log(`resumed ${pick.app}-${pick.index}`)
    console.log(`  hibernated instance would have said: ${pick.next}`)
    console.log(`  resumed instance says:               ${answer}`)
    console.log(`  and then:                            ${evalString(inst.context, PROBE)}`)
    shutdown(inst)
    for (const s of spaces) s.dispose()
    await store.close()
    if (answer !== pick.next) throw new Error("the resumed instance diverged")
    console.log("OK: the instance carries on from disk, in a new process")
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[2] === "--save") await saver(process.argv[3]!, Number(process.argv[4]))
else await main()
