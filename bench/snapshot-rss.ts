/**
 * RssAnon of a fleet restored from a snapshot store, in a fresh process (bench/snapshot.ts runs
 * this file as a child, so the figure is not the parent's heap history): open the store, take
 * RssAnon after a full GC, restore snapshot "fleet" eagerly or lazily, and take it again right
 * after restore() resolves (lazy: before any page is read) and, lazily, once the fill is done.
 *
 *   node --expose-gc --import tsx bench/snapshot-rss.ts DIR eager|lazy
 *
 * Prints one JSON line: { restoredBytes, filledBytes?, framesInUseBytes, missingPages? }.
 */
import { execFile } from "node:child_process"
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { Engine } from "../src/index.ts"
import { SnapshotStore } from "../src/snapshot/index.ts"
import { rssAnon } from "./memory-cycles.ts"

/** What the child reports, in bytes. */
export interface RestoreRss {
  /** RssAnon growth right after restore() resolved. */
  readonly restoredBytes: number
  /** Lazy only: RssAnon growth once `done` resolved (every page in, merged). */
  readonly filledBytes?: number
  /** The engine's frames in use right after restore() resolved. */
  readonly framesInUseBytes: number
  /** Lazy only: pages missing right after restore() resolved. */
  readonly missingPages?: number
}

function settled(): number {
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  gc?.()
  return rssAnon() ?? Number.NaN
}

async function main(dir: string, mode: string): Promise<RestoreRss> {
  const store = await SnapshotStore.open(dir)
  const engine = new Engine()
  const before = settled()
  if (mode === "eager") {
    const spaces = await store.restore("fleet", engine)
    const restoredBytes = settled() - before
    const framesInUseBytes = engine.memory().bytesInUse
    for (const s of spaces) s.dispose()
    await store.close()
    return { restoredBytes, framesInUseBytes }
  }
  const r = await store.restore("fleet", engine, { lazy: true })
  // Synchronously after restore() resolved: the filler has not installed a page yet.
  const missingPages = r.missingPages
  const framesInUseBytes = engine.memory().bytesInUse
  const restoredBytes = settled() - before
  await r.done
  const filledBytes = settled() - before
  for (const s of r.spaces) s.dispose()
  await store.close()
  return { restoredBytes, filledBytes, framesInUseBytes, missingPages }
}

/** Run this file as a child on store `dir` (closed by the caller: one process at a time). */
export function spawnRestoreRss(dir: string, mode: "eager" | "lazy"): Promise<RestoreRss> {
  const args = ["--expose-gc", "--import", "tsx", fileURLToPath(import.meta.url), dir, mode]
  return new Promise((done, fail) => {
    execFile(process.execPath, args, { cwd: fileURLToPath(new URL("..", import.meta.url)), maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      if (error !== null) return fail(new Error(`snapshot-rss child failed: ${error.message}\n${stderr}`))
      done(JSON.parse(stdout.trim().split("\n").at(-1)!) as RestoreRss)
    })
  })
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv[2]!, process.argv[3]!).then(
    (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
      process.exit(1)
    },
  )
}
