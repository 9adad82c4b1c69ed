/**
 * sksm/worker in Node (src/worker/): the worker mode on a worker_threads thread (the sources,
 * through tsx), the fallback to the in-thread scanner and its reason, `fallback: false`, and
 * option validation that starts nothing. The browser side is test/package/browser.test.ts.
 */
import { afterEach, describe, expect, it, vi } from "vitest"
import { _internals, Engine } from "../../src/engine/engine.ts"
import { InvalidArgument, Unsupported } from "../../src/errors.ts"
import type { AddressSpace as Space } from "../../src/index.ts"
import { startWorkerScanner } from "../../src/worker/index.ts"

const PS = 4096
const PAGES = 96

/** 64 pages of 4 contents, 32 unique: 4 shared frames, 60 pages sharing them. */
function fill(engine: Engine): Space {
  const s = engine.createSpace({ size: PAGES * PS })
  for (let p = 0; p < PAGES; p++) {
    const b = new Uint8Array(PS).fill(p < 64 ? (p % 4) + 1 : 0x40)
    new DataView(b.buffer).setUint32(8, p < 64 ? p % 4 : 1000 + p)
    s.write(p * PS, b)
  }
  s.advise(0, s.size, "mergeable")
  return s
}

function intact(s: Space): boolean {
  for (let p = 0; p < PAGES; p++) {
    const got = s.read(p * PS, PS)
    const v = new DataView(got.buffer, got.byteOffset)
    if (v.getUint32(8) !== (p < 64 ? p % 4 : 1000 + p) || got[0] !== (p < 64 ? (p % 4) + 1 : 0x40)) return false
  }
  return true
}

const OPTIONS = { policy: "ksm", pagesToScan: 32, sleepMillis: 0 } as const

/** The reference: the in-thread scanner ticked over the same contents. */
function reference(): { pagesShared: number; pagesSharing: number } {
  const engine = new Engine({ pageSize: PS })
  fill(engine)
  const k = engine.scanner(OPTIONS)
  while (engine.stats().fullScans < 6) k.tick()
  const { pagesShared, pagesSharing } = engine.stats()
  return { pagesShared, pagesSharing }
}

/** Wait with the timer loop running until `sharing` pages share (bounded by full scans, not time). */
async function settle(engine: Engine, sharing: number): Promise<void> {
  while (!(engine.stats().fullScans >= 2 && engine.stats().pagesSharing === sharing) && engine.stats().fullScans < 500) await new Promise((r) => setTimeout(r, 2))
}

afterEach(() => {
  vi.restoreAllMocks()
})

describe("startWorkerScanner in Node", () => {
  it("worker mode: hashes on a worker_threads thread and merges what the in-thread scanner merges", async () => {
    const ref = reference()
    expect(ref).toEqual({ pagesShared: 4, pagesSharing: 60 })
    const engine = new Engine({ pageSize: PS, sharedMemory: true })
    const space = fill(engine)
    const onFallback = vi.fn()
    const k = await startWorkerScanner(engine, { ...OPTIONS, fallback: false, onFallback })
    expect([k.mode, k.fallback]).toEqual(["worker", null])
    expect(_internals(engine).scanner()?.offloadChannel()).not.toBeNull()
    k.start()
    await settle(engine, ref.pagesSharing)
    const ring = k.offloadChannel()!.ring
    // The ring's tail (ctl word 1): jobs the thread finished. A thread slow to start is judged
    // stuck and the host hashes meanwhile, so wait for the thread's first jobs.
    for (let i = 0; i < 2000 && Atomics.load(new Int32Array(ring, 0, 4), 1) === 0 && k.threadError === undefined; i++) await new Promise((r) => setTimeout(r, 5))
    expect(k.threadError).toBeUndefined()
    expect(Atomics.load(new Int32Array(ring, 0, 4), 1)).toBeGreaterThan(0)
    const closing = k.close()
    expect(k.close()).toBe(closing)
    await closing
    expect(k.threadError).toBeUndefined()
    expect(k.running).toBe(false)
    const { pagesShared, pagesSharing } = engine.stats()
    expect({ pagesShared, pagesSharing }).toEqual(ref)
    expect(intact(space)).toBe(true)
    expect(onFallback).not.toHaveBeenCalled()
    // Still the engine's scanner: a tick after close hashes on this thread.
    expect(() => k.tick()).not.toThrow()
  })

  it("falls back to the in-thread scanner on an engine without sharedMemory, says why once, and still merges", async () => {
    const ref = reference()
    const engine = new Engine({ pageSize: PS })
    const space = fill(engine)
    const onFallback = vi.fn()
    const k = await startWorkerScanner(engine, { ...OPTIONS, onFallback })
    expect(k.mode).toBe("in-thread")
    expect(k.fallback).toMatch(/sharedMemory: true/)
    expect(onFallback).toHaveBeenCalledTimes(1)
    expect(onFallback).toHaveBeenCalledWith(k.fallback)
    expect(k.offloadChannel()).toBeNull()
    k.start()
    await settle(engine, ref.pagesSharing)
    await k.close()
    expect(k.threadError).toBeUndefined()
    const { pagesShared, pagesSharing } = engine.stats()
    expect({ pagesShared, pagesSharing }).toEqual(ref)
    expect(intact(space)).toBe(true)
  })

  it("without onFallback, the reason goes to console.warn", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {})
    const k = await startWorkerScanner(new Engine({ pageSize: PS }))
    expect(k.mode).toBe("in-thread")
    expect(warn).toHaveBeenCalledTimes(1)
    expect(String(warn.mock.calls[0]![0])).toMatch(/^sksm: worker scanner unavailable, scanning on this thread: .*sharedMemory/)
    await k.close()
  })

  it("fallback: false rejects with Unsupported and leaves the engine's scanner as it was", async () => {
    const engine = new Engine({ pageSize: PS })
    const before = engine.scanner()
    const onFallback = vi.fn()
    const err = await startWorkerScanner(engine, { fallback: false, onFallback }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Unsupported)
    expect((err as Error).message).toMatch(/^worker scanner: .*sharedMemory: true/)
    expect(onFallback).not.toHaveBeenCalled()
    expect(before.detached).toBe(false)
    expect(_internals(engine).scanner()).toBe(before)
  })

  it.each([
    ["threadUrl that is no URL", { threadUrl: "http://[::1" }, /threadUrl/],
    ["relative threadUrl (no page to resolve against)", { threadUrl: "thread.js" }, /threadUrl/],
    ["onFallback not a function", { onFallback: "warn" }, /onFallback/],
    ["offload given", { offload: true }, /offload/],
    ["fallback not a boolean", { fallback: "yes" }, /fallback/],
    ["an invalid scanner option", { pagesToScan: -1 }, /pagesToScan/],
    ["an unknown option", { pagesToScna: 10 }, /pagesToScna/],
  ])("%s: InvalidArgument, nothing started", async (_name, options, message) => {
    for (const sharedMemory of [true, false]) {
      const engine = new Engine({ pageSize: PS, sharedMemory })
      const before = engine.scanner()
      const onFallback = vi.fn()
      const err = await startWorkerScanner(engine, { onFallback, ...options } as never).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(InvalidArgument)
      expect((err as Error).message).toMatch(message)
      expect(before.detached).toBe(false)
      expect(_internals(engine).scanner()).toBe(before)
      expect(onFallback).not.toHaveBeenCalled()
    }
  })

  it("rejects what is not an engine or an options object", async () => {
    await expect(startWorkerScanner({} as Engine)).rejects.toBeInstanceOf(InvalidArgument)
    await expect(startWorkerScanner(new Engine(), null as never)).rejects.toBeInstanceOf(InvalidArgument)
  })
})
