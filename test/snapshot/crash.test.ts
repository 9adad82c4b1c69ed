/**
 * Crash safety, for real: a child process saves snapshots (and deletes and collects) in a loop
 * and is killed with SIGKILL at random points, many times. After every kill the store opens,
 * every snapshot committed before the kill restores byte-exact, an interrupted save is absent
 * or complete, and gc() leaves no unreferenced page and no garbage in the pack files.
 */
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { build } from "esbuild"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Engine } from "../../src/index.ts"
import { PackBackend, SnapshotStore } from "../../src/snapshot/index.ts"
import { RECORD_HEADER_BYTES } from "../../src/snapshot/pack.ts"
import { imageOf } from "./fixtures/image.ts"

const KILLS = 24
let work: string
let child: string

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "sksm-crash-"))
  child = join(work, "child.mjs")
  // One bundle, so each run is a plain `node` start (tens of ms), not a TypeScript loader's.
  await build({ entryPoints: [join(import.meta.dirname, "fixtures/crash-child.ts")], bundle: true, platform: "node", format: "esm", target: "node20", outfile: child, logLevel: "silent" })
})

afterAll(() => rmSync(work, { recursive: true, force: true }))

/** Run the child until a random moment after it is ready, SIGKILL it, return what it said. */
function runAndKill(dir: string, firstGen: number, delayMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, dir, String(firstGen)], { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    let timer: NodeJS.Timeout | undefined
    p.stdout.on("data", (d: Buffer) => {
      out += d.toString()
      if (timer === undefined && out.includes("ready\n")) timer = setTimeout(() => p.kill("SIGKILL"), delayMs)
    })
    p.stderr.on("data", (d: Buffer) => (err += d.toString()))
    p.on("error", reject)
    p.on("close", (code, signal) => {
      if (signal !== "SIGKILL") reject(new Error(`child ended by itself (code ${code}): ${err}`))
      else resolve(out.split("\n").filter((l) => l !== ""))
    })
  })
}

describe("kill -9 while saving, deleting and collecting", () => {
  it(`the store survives ${KILLS} SIGKILLs at random points`, async () => {
    const dir = join(work, "store")
    // A fresh seed each run (printed, and settable with SKSM_CRASH_SEED, to replay a failure).
    const seed0 = Number(process.env["SKSM_CRASH_SEED"] ?? Math.floor(Math.random() * 2 ** 31))
    let seed = seed0
    const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32)
    const committed = new Set<string>()
    let nextGen = 1
    let interruptedPresent = 0
    let interruptedAbsent = 0
    let restored = 0
    const t0 = performance.now()
    for (let round = 0; round < KILLS; round++) {
      const lines = await runAndKill(dir, nextGen, Math.floor(random() * 120))
      const inFlight = new Set<string>()
      let deleting: string | null = null
      let maxGen = nextGen
      for (const l of lines) {
        const [what, name] = l.split(" ")
        if (what === "begin") inFlight.add(name!), (maxGen = Math.max(maxGen, Number(name!.slice(1)) + 1))
        else if (what === "commit") inFlight.delete(name!), committed.add(name!)
        else if (what === "begin-delete") deleting = name!
        else if (what === "deleted") committed.delete(name!), (deleting = null)
      }
      nextGen = maxGen
      const backend = await PackBackend.open(dir, { packBytes: 64 * 1024 })
      const store = await SnapshotStore.withBackend(backend)
      try {
        const stats = await store.stats()
        expect(stats.damaged).toEqual([])
        const listed = new Set(store.list().map((s) => s.name))
        for (const name of committed) if (name !== deleting) expect(listed.has(name), `committed ${name} is listed`).toBe(true)
        for (const name of listed) expect(committed.has(name) || inFlight.has(name), `${name} was saved`).toBe(true)
        for (const name of inFlight) listed.has(name) ? interruptedPresent++ : interruptedAbsent++
        if (deleting !== null && !listed.has(deleting)) committed.delete(deleting)
        for (const name of inFlight) if (listed.has(name)) committed.add(name)
        // Every listed snapshot restores byte-exact.
        const engine = new Engine()
        for (const name of listed) {
          const [space] = await store.restore(name, engine)
          expect(Buffer.compare(space!.read(0, space!.size), imageOf(Number(name.slice(1)))), name).toBe(0)
          space!.dispose()
          restored++
        }
        // gc leaves exactly the referenced pages, and pack files hold nothing else.
        await store.gc()
        const after = await store.stats()
        expect(after.unreferencedPages).toBe(0)
        expect(await backend.packFileBytes()).toBe(after.storedBytes + after.storedPages * RECORD_HEADER_BYTES)
      } finally {
        await store.close()
      }
    }
    const seconds = (performance.now() - t0) / 1000
    console.log(`crash test (seed ${seed0}): ${KILLS} kills, ${committed.size} snapshots left, ${restored} restores checked, interrupted saves present ${interruptedPresent} / absent ${interruptedAbsent}, ${seconds.toFixed(1)} s`)
    expect(restored).toBeGreaterThan(KILLS)
  }, 60_000)
})
