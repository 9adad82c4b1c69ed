/**
 * Does memory go back to the OS every time, not just once? Issue 12 measured that in one
 * long-lived process the first {populate, merge, compact, dispose} cycle returned what
 * merging claimed, and later cycles did not (glibc raises its mmap threshold after the first
 * free, so later 1 MiB slabs come from the never-trimmed heap). bench/rss.ts cannot see it:
 * it runs each scenario in a fresh process.
 *
 * This runs `cycles` cycles in THIS process; per cycle, with a new Engine (autoCompact off,
 * so compaction is the explicit step):
 *   populate a half-duplicate space (first half 16 distinct page contents repeated, second
 *   half random) -> RssAnon -> merge() -> compact() until done -> RssAnon -> dispose the
 *   space and drop every reference to it and its engine -> RssAnon.
 * With `sharedEngine` one engine serves every cycle (a long-lived host's), and the cycle
 * compacts again after dispose so the engine releases the slabs the dispose emptied.
 * Every reading is RssAnon from /proc/self/status (the process's resident anonymous memory)
 * after forced full GCs (needs node --expose-gc), once it has stopped changing (V8 may free
 * ArrayBuffer backing stores on a background thread after the GC).
 *
 * Used by the memory-return bench (bench/memory-return.ts) and by
 * test/memory/memory-return.test.ts, which runs it as a script:
 *   node --expose-gc --import tsx bench/memory-cycles.ts [--size MiB] [--cycles N]
 * prints the result as one JSON line. Linux only (RssAnon); elsewhere it reports why not.
 */
import { execFile } from "node:child_process"
import { randomFillSync } from "node:crypto"
import { readFileSync } from "node:fs"
import { resolve } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { Engine } from "../src/index.ts"

const PAGE = 4096
const MiB = 1 << 20

/** RssAnon of this process in bytes, or null where /proc/self/status has none (not Linux). */
export function rssAnon(): number | null {
  try {
    const m = /^RssAnon:\s+(\d+)\s+kB$/m.exec(readFileSync("/proc/self/status", "utf8"))
    return m === null ? null : Number(m[1]) * 1024
  } catch {
    return null
  }
}

/**
 * Anonymous bytes of glibc's main heap (the `[heap]` mapping of /proc/self/smaps), or null where
 * there is none. Memory freed into the heap and not trimmed stays there: a residue after dispose
 * that sits in `[heap]` is the C allocator's, not a store still referenced.
 */
export function heapAnon(): number | null {
  try {
    const m = /^[0-9a-f]+-[0-9a-f]+ [^\n]*\[heap\]\n(?:[A-Za-z_]+:[^\n]*\n)*?Anonymous:\s+(\d+) kB/m.exec(readFileSync("/proc/self/smaps", "utf8"))
    return m === null ? null : Number(m[1]) * 1024
  } catch {
    return null
  }
}

/** Why the cycles cannot run here (not Linux, or no gc()), or null. */
export function cyclesUnavailable(): string | null {
  if (rssAnon() === null) return `RssAnon is not available on ${process.platform} (/proc/self/status): the memory-return cycles are Linux-only`
  if (typeof (globalThis as { gc?: unknown }).gc !== "function") return "gc() is not exposed: run node with --expose-gc"
  return null
}

/**
 * RssAnon once it has settled: full GCs, then readings 40 ms apart (each after another GC)
 * until two in a row differ by less than 1 MiB, at most 25 of them (half a second). V8 frees
 * ArrayBuffer backing stores on a background thread after the GC, late on a loaded machine.
 */
async function settledRssAnon(): Promise<number> {
  const gc = (globalThis as unknown as { gc: () => void }).gc
  gc()
  gc()
  // V8 releases freed backing stores on a background thread: on a loaded machine one quiet
  // interval proves little, so wait for three readings in a row within 1 MiB, 40 ms apart.
  let last = rssAnon()!
  let quiet = 0
  for (let k = 0; k < 60 && quiet < 3; k++) {
    await sleep(40)
    gc()
    const now = rssAnon()!
    quiet = Math.abs(now - last) < MiB ? quiet + 1 : 0
    last = now
  }
  return last
}

/** One cycle's figures (bytes and ms). */
export interface Cycle {
  /** (pagesSharing + ksmZeroPages) * pageSize after merge(): what merging says it saved. */
  readonly claimed: number
  readonly populated: number
  readonly afterCompact: number
  readonly afterDispose: number
  /** populated - afterCompact. */
  readonly drop: number
  /** drop / claimed. */
  readonly dropRatio: number
  /** afterDispose - the start of the run. */
  readonly residual: number
  /** Of afterDispose, the anonymous bytes of glibc's main heap ({@link heapAnon}; 0 where unknown). */
  readonly heapAfterDispose: number
  readonly mergeMs: number
  readonly compactMs: number
  readonly slabsReleased: number
}

export interface CyclesResult {
  readonly size: number
  readonly sharedEngine: boolean
  /** RssAnon before the first cycle. */
  readonly start: number
  readonly cycles: Cycle[]
}

/** Write the half-duplicate workload into `space` (`chunk` is a reusable 1 MiB scratch buffer). */
function populate(space: { write(addr: number, data: Uint8Array): void }, size: number, contents: readonly Uint8Array[], chunk: Uint8Array): void {
  const half = size / 2
  for (let off = 0; off < half; off += PAGE) space.write(off, contents[(off / PAGE) % contents.length]!)
  for (let off = half; off < size; off += MiB) space.write(off, randomFillSync(chunk))
}

/** Options of {@link runCycles}. */
export interface CyclesOptions {
  /** Bytes of each cycle's space (a multiple of 2 MiB). */
  readonly size: number
  readonly cycles: number
  /**
   * One engine for every cycle (a long-lived host's) instead of a new one per cycle; after
   * dispose the cycle then compacts until done, releasing the slabs the dispose emptied.
   * @default false
   */
  readonly sharedEngine?: boolean
  readonly log?: (line: string) => void
}

/** What a cycle measures before its space is gone; the caller reads RssAnon after dispose. */
type CyclePart = Omit<Cycle, "afterDispose" | "residual" | "heapAfterDispose">

/**
 * Populate, merge, compact and dispose one space on `engine` (on a shared engine, compact
 * again after dispose). The space is a local: once this returns, nothing references it.
 */
async function cycle(sharedEngine: Engine | null, size: number, contents: readonly Uint8Array[], chunk: Uint8Array, k: number): Promise<CyclePart> {
  // The engine of this cycle lives in this frame only: a value the caller computed for the call
  // could stay in its suspended async frame across its next await and keep the engine alive.
  const shared = sharedEngine !== null
  const engine = sharedEngine ?? new Engine({ autoCompact: false })
  const space = engine.createSpace({ size, name: `cycle ${k + 1}` })
  populate(space, size, contents, chunk)
  const populated = await settledRssAnon()
  const t0 = performance.now()
  space.merge()
  const mergeMs = performance.now() - t0
  const st = engine.stats()
  const claimed = (st.pagesSharing + st.ksmZeroPages) * engine.pageSize
  const compacted = compactFully(engine)
  const afterCompact = await settledRssAnon()
  space.dispose()
  if (shared) compactFully(engine)
  const drop = populated - afterCompact
  return { claimed, populated, afterCompact, drop, dropRatio: drop / claimed, mergeMs, compactMs: compacted.ms, slabsReleased: compacted.slabsReleased }
}

/** engine.compact() until done: total ms and slabs released. */
function compactFully(engine: Engine): { ms: number; slabsReleased: number } {
  let ms = 0
  let slabsReleased = 0
  for (;;) {
    const r = engine.compact()
    ms += r.ms
    slabsReleased += r.slabsReleased
    if (r.done) return { ms, slabsReleased }
  }
}

/** Run the cycles in this process (needs Linux and --expose-gc: see {@link cyclesUnavailable}). */
export async function runCycles(options: CyclesOptions): Promise<CyclesResult> {
  const why = cyclesUnavailable()
  if (why !== null) throw new Error(why)
  const { size, cycles } = options
  const contents = Array.from({ length: 16 }, () => randomFillSync(new Uint8Array(PAGE)))
  const chunk = new Uint8Array(MiB)
  const start = await settledRssAnon()
  const out: Cycle[] = []
  const shared = options.sharedEngine === true ? new Engine({ autoCompact: false }) : null
  for (let k = 0; k < cycles; k++) {
    const part = await cycle(shared, size, contents, chunk, k)
    const afterDispose = await settledRssAnon()
    const c: Cycle = { ...part, afterDispose, residual: afterDispose - start, heapAfterDispose: heapAnon() ?? 0 }
    out.push(c)
    options.log?.(
      `cycle ${k + 1}: claimed ${mib(c.claimed)}, RssAnon ${mib(c.populated)} -> ${mib(c.afterCompact)} (drop ${(100 * c.dropRatio).toFixed(0)}% of claimed) -> ${mib(c.afterDispose)} after dispose (start ${mib(start)}; glibc heap ${mib(c.heapAfterDispose)})`,
    )
  }
  return { size, sharedEngine: shared !== null, start, cycles: out }
}

const mib = (b: number): string => `${(b / MiB).toFixed(1)} MiB`

/** Script mode: `--size MiB` (default 256), `--cycles N` (default 5), `--shared-engine`; one JSON line on stdout. */
async function main(argv: readonly string[]): Promise<void> {
  const arg = (name: string, dflt: number): number => {
    const i = argv.indexOf(name)
    return i < 0 ? dflt : Number(argv[i + 1])
  }
  const why = cyclesUnavailable()
  if (why !== null) {
    process.stdout.write(`${JSON.stringify({ unavailable: why })}\n`)
    return
  }
  const r = await runCycles({ size: arg("--size", 256) * MiB, cycles: arg("--cycles", 5), sharedEngine: argv.includes("--shared-engine"), log: (l) => process.stderr.write(`${l}\n`) })
  process.stdout.write(`${JSON.stringify(r)}\n`)
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
    process.exit(1)
  })
}

/**
 * Run the cycles in a fresh child process (`node --expose-gc --import tsx` this file), so
 * the figures are a new long-lived process's whatever the caller's heap holds. Resolves
 * with the result, or `{ unavailable }` where the cycles cannot run (not Linux).
 */
export function spawnCycles(options: Omit<CyclesOptions, "log">): Promise<CyclesResult | { readonly unavailable: string }> {
  const args = ["--expose-gc", "--import", "tsx", fileURLToPath(import.meta.url), "--size", String(options.size / MiB), "--cycles", String(options.cycles)]
  if (options.sharedEngine === true) args.push("--shared-engine")
  return new Promise((done, fail) => {
    execFile(process.execPath, args, { cwd: fileURLToPath(new URL("..", import.meta.url)), maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      if (error !== null) return fail(new Error(`memory-cycles child failed: ${error.message}\n${stderr}`))
      done(JSON.parse(stdout.trim().split("\n").at(-1)!) as CyclesResult | { unavailable: string })
    })
  })
}
