/**
 * sksm/worker from the sources (what tests, benches and tools of this repository run): the
 * hashing thread must start from src/worker/thread.ts and do the hashing. On Node 20 a worker's
 * own `--import tsx` never reached its .ts entry module (ERR_UNKNOWN_FILE_EXTENSION): the thread
 * died at once and the scanner, still reporting mode "worker", hashed every page on the host
 * after a 100 ms stall.
 */
import { describe, expect, it } from "vitest"
import { startWorkerScanner } from "../../src/worker/index.ts"
import { Engine } from "../helpers/internals.ts"

const PAGE = 4096
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe("sksm/worker from the sources", () => {
  it("starts the hashing thread from thread.ts, which hashes every page (none on the host)", async () => {
    const engine = new Engine({ sharedMemory: true, seed: 7 })
    const pages = 64
    const space = engine.createSpace({ size: pages * PAGE })
    // Pairs of equal pages: 32 contents, each twice.
    for (let p = 0; p < pages; p++) space.fill(p * PAGE, PAGE, 1 + (p >> 1))
    space.advise(0, pages * PAGE, "mergeable")
    const scanner = await startWorkerScanner(engine, { policy: "ksm", pagesToScan: pages, sleepMillis: 0, fallback: false })
    try {
      expect(scanner.mode).toBe("worker")
      const inner = engine.core.scan as unknown as { hostHashes: number; offload: { queued: number; done: number } }
      // The first batch queues the pages and waits; let the thread (loading its modules through
      // tsx) hash them all before the next batch, so the host never judges it stuck (100 ms).
      expect(scanner.tick().waited).toBe(true)
      for (let i = 0; i < 5000 && inner.offload.done < inner.offload.queued && scanner.threadError === undefined; i++) await sleep(2)
      expect(scanner.threadError).toBeUndefined()
      expect(inner.offload.done).toBe(inner.offload.queued)
      for (let i = 0; i < 2000 && engine.stats().pagesSharing < pages / 2; i++) {
        scanner.tick()
        await sleep(2)
      }
      expect(scanner.threadError).toBeUndefined()
      expect(engine.stats()).toMatchObject({ pagesShared: pages / 2, pagesSharing: pages / 2 })
      expect(inner.hostHashes).toBe(0)
    } finally {
      await scanner.close()
    }
    expect(scanner.threadError).toBeUndefined()
  })
})
