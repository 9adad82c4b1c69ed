/**
 * The worker scanner with a real hashing thread, as a host lives with it: a randomised soak
 * (host writes, forks, discards, merges, compactions, disposals, store growth, all while the
 * thread hashes at full speed; contents and digests checked throughout), the same final state as
 * the in-thread scanner, disposing spaces mid-scan, and a host process that exits mid-scan
 * without closing anything (it must exit, not hang on the thread).
 */
import { spawnSync } from "node:child_process"
import { describe, expect, it } from "vitest"
import { soakWorker } from "../../scripts/soak-worker.ts"
import { _internals } from "../../src/engine/engine.ts"
import { startWorkerScanner } from "../../src/worker/index.ts"
import { Engine } from "../helpers/internals.ts"

const PS = 4096

function fleet(engine: Engine, spaces: number, pages: number): void {
  for (let s = 0; s < spaces; s++) {
    const sp = engine.createSpace({ size: pages * PS, name: `g${s}` })
    sp.advise(0, pages * PS, "mergeable")
    for (let p = 0; p < pages; p++) if (p % 5 !== 0) sp.writeU32(p * PS + 64, p % 3 === 0 ? p + 1 : (p % 17) + 1)
  }
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

describe("worker scanner with a real thread", () => {
  it("soak: random host work while the thread hashes at full speed; no stale digest, contents exact, nothing hashed on the host", async () => {
    const r = await soakWorker(4000, 20261130)
    expect(r.mode).toBe("worker")
    expect(r.checks).toBeGreaterThan(10)
    // The host hashes only while the thread is judged stuck (starved of CPU on a loaded machine).
    if (r.stuckEvents === 0) expect(r.hostHashes).toBe(0)
    expect(r.pagesSharing).toBeGreaterThan(0)
  }, 30_000)

  it("reaches the in-thread scanner's final state (every counter) after the same passes", async () => {
    const a = new Engine({ seed: 11 })
    const b = new Engine({ seed: 11, sharedMemory: true })
    fleet(a, 3, 600)
    fleet(b, 3, 600)
    const sa = a.scanner({ policy: "ksm", pagesToScan: 500 })
    while (a.stats().fullScans < 5) sa.tick()
    const sb = await startWorkerScanner(b, { policy: "ksm", pagesToScan: 500, fallback: false })
    try {
      while (b.stats().fullScans < 5) {
        sb.tick()
        await turn()
      }
    } finally {
      await sb.close()
    }
    expect(sb.mode).toBe("worker")
    // The store's shrink after merging runs in the background (with the worker, once its thread
    // has prefaulted the smaller store): the host's idle call finishes it in both.
    a.maybeCompact()
    b.maybeCompact()
    expect(b.stats()).toEqual(a.stats())
    expect(_internals(b).scanner()!.hostHashes).toBe(0)
  }, 30_000)

  it("the store's shrink after merging copies into the store the thread prefaulted; contents exact", async () => {
    const e = new Engine({ seed: 5, sharedMemory: true })
    const pages = 32768 // 128 MiB, half of it duplicates: the shrink gives back ~64 MiB
    const sp = e.createSpace({ size: pages * PS })
    sp.advise(0, sp.size, "mergeable")
    for (let p = 0; p < pages; p++) sp.writeU32(p * PS, p % 2 === 0 ? p + 1 : 7)
    const ref = sp.read(0, sp.size)
    const k = await startWorkerScanner(e, { pagesToScan: 10000, sleepMillis: 0, fallback: false })
    const pool = _internals(e).pool
    const requested: SharedArrayBuffer[] = []
    let requestedAt = 0
    const pf = pool.prefaulter!
    const prefault = pf.prefault.bind(pf)
    pf.prefault = (store, copyBytes, moves) => {
      requested.push(store)
      requestedAt = performance.now()
      prefault(store, copyBytes, moves)
    }
    const before = e.memory().bytesReserved
    let shrunkAt = 0
    try {
      k.start()
      const t0 = Date.now()
      while (e.memory().bytesReserved === before && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 1))
      shrunkAt = performance.now()
    } finally {
      await k.close()
    }
    expect(e.memory().bytesReserved).toBeLessThan(before)
    expect(requested.length).toBeGreaterThan(0)
    // The prefaulted store, unless the thread was starved past the bounded wait (a loaded machine).
    if (!requested.includes(pool.bytes.buffer as SharedArrayBuffer)) expect(shrunkAt - requestedAt).toBeGreaterThanOrEqual(240)
    expect(Buffer.compare(sp.read(0, sp.size), ref)).toBe(0)
    expect(e.stats().pagesSharing).toBeGreaterThan(0)
    // The thread pre-copied the live frames: the host copied none (nothing was written meanwhile), unless it was starved.
    if (requested.includes(pool.bytes.buffer as SharedArrayBuffer)) expect(pool.shrinkCopied).toBe(0)
  }, 30_000)

  it("disposing spaces mid-scan, then close(): counters stay consistent and the thread is gone", async () => {
    const e = new Engine({ seed: 3, sharedMemory: true })
    fleet(e, 4, 400)
    const k = await startWorkerScanner(e, { pagesToScan: 300, sleepMillis: 0, fallback: false })
    k.start()
    while (e.stats().fullScans < 1) await turn()
    for (const sp of [...e.spaces()].slice(0, 2)) sp.dispose()
    const scans = e.stats().fullScans
    while (e.stats().fullScans < scans + 3) await turn()
    await k.close()
    expect(k.running).toBe(false)
    expect(k.threadError).toBeUndefined()
    // Every merged page left reads back what was written; the recount of the core's books holds.
    for (const sp of e.spaces()) for (let p = 0; p < sp.pages; p++) expect(sp.readU32(p * PS + 64)).toBe(p % 5 === 0 ? 0 : p % 3 === 0 ? p + 1 : (p % 17) + 1)
    const s = e.stats()
    expect(s.pagesShared).toBeGreaterThan(0)
    // After close a batch still works (the host hashes once it finds the thread gone).
    expect(() => k.tick()).not.toThrow()
  }, 30_000)

  it("a host that exits mid-scan without closing anything exits (the thread never keeps it alive)", () => {
    const script = `
      import { Engine } from "./src/index.ts"
      import { startWorkerScanner } from "./src/worker/index.ts"
      const e = new Engine({ sharedMemory: true })
      const sp = e.createSpace({ size: 4096 * 2000 })
      sp.advise(0, 4096 * 2000, "mergeable")
      for (let p = 0; p < 2000; p++) sp.writeU32(p * 4096, p % 7)
      const k = await startWorkerScanner(e, { pagesToScan: 100, sleepMillis: 0, fallback: false })
      k.start()
      setTimeout(() => console.log("mode", k.mode, "scans", e.stats().fullScans), 300)
    `
    const t0 = Date.now()
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: process.cwd(), encoding: "utf8", timeout: 20_000 })
    expect(r.stderr).toBe("")
    expect(r.stdout).toMatch(/^mode worker scans \d+/)
    expect(r.status).toBe(0)
    expect(Date.now() - t0).toBeLessThan(20_000)
  }, 30_000)
})
