/**
 * The soak run (issue 7), shared by the short CI test (test/security/soak.test.ts) and the long
 * release run (`npm run soak`, scripts/soak.ts): a randomised, time-bounded run of one engine
 * with many spaces in several domains (one of them secure), the background scanner's own loop
 * running (setTimeout; the run yields to the event loop between bursts), and a stream of writes,
 * fills, forks, merges, unmerges, discards, pins, disposals, compactions, scanner retunes and
 * scanner replacements, under a memory cap so that allocation failures happen too (a refused
 * call must throw OutOfMemory and the run carries on).
 *
 * Every space has a plain reference copy. Periodically every invariant is checked from
 * scratch: contents equal the references, every counter equals the recount, no frame crosses a
 * domain, secure pages that are armed are not writable. The run ends by stopping the loop,
 * disposing everything and checking that no frame and no table entry is left.
 */
import type { AddressSpace } from "../test/helpers/internals.ts"
import { Engine } from "../test/helpers/internals.ts"
import { SksmError } from "../src/errors.ts"
import type { Scanner } from "../test/helpers/internals.ts"
import { checkCounters } from "../test/helpers/recount.ts"
import { xorshift32 } from "../bench/xorshift.ts"
import { checkDomainIsolation, checkSecureInvariants } from "../test/helpers/security.ts"

/** Options of {@link soak}. */
export interface SoakOptions {
  /** Wall-clock budget in milliseconds. */
  readonly durationMs: number
  /** PRNG seed (the run is random but reproducible up to the scanner loop's timing). */
  readonly seed?: number
  /** Most live spaces. @default 48 */
  readonly maxSpaces?: number
  /** Operations between two full invariant checks. @default 400 */
  readonly checkEvery?: number
  /** Page size. @default 512 */
  readonly pageSize?: number
  /** Progress lines (long runs). */
  readonly log?: (line: string) => void
}

/** What a soak run did. */
export interface SoakReport {
  readonly operations: number
  readonly byKind: Record<string, number>
  readonly invariantChecks: number
  readonly refusedForMemory: number
  /** tick() calls made by the run itself (the background loop runs its own on top). */
  readonly explicitTicks: number
  /** Pages the scanners examined, loop and explicit ticks, all scanners of the run. */
  readonly pagesScanned: number
  /** Full scanner passes, all scanners of the run. */
  readonly fullScans: number
  readonly compactions: number
  readonly maxLiveSpaces: number
  readonly peakFramesInUse: number
  readonly peakPagesSharing: number
  readonly seconds: number
}

/** Uniform in [0, 1), seeded (seed 0 becomes a fixed odd constant). */
function rng(seed: number): () => number {
  const next = xorshift32(seed >>> 0 || 0x9e3779b9)
  return () => next() / 0x100000000
}

interface Live {
  space: AddressSpace
  ref: Uint8Array
  pins: Int32Array
}

/** Run the soak; throws on the first invariant violation (with the operation count). */
export async function soak(options: SoakOptions): Promise<SoakReport> {
  const PS = options.pageSize ?? 512
  const maxSpaces = options.maxSpaces ?? 48
  const checkEvery = options.checkEvery ?? 400
  const rand = rng(options.seed ?? 1)
  const int = (n: number): number => Math.floor(rand() * n)
  const log = options.log ?? (() => {})
  // A cap near the run's working set: allocations are refused now and then, so refused calls
  // (which must change nothing) are part of the soak.
  const engine = new Engine({ pageSize: PS, slabBytes: 32 * PS, maxMemoryBytes: 6 * maxSpaces * PS, secureDomains: ["secure"], idlePasses: 1, maxPageSharing: 16 })
  const domains = ["a", "b", "secure"]
  // A few page templates, so identical pages (and merging) are common.
  const templates: Uint8Array[] = []
  for (let t = 0; t < 12; t++) {
    const p = new Uint8Array(PS)
    if (t > 0) for (let i = 0; i < PS; i += 4) p[i] = (t * 31 + i) & 0xff
    templates.push(p)
  }
  const live: Live[] = []
  const byKind: Record<string, number> = {}
  let scanner: Scanner = engine.scanner({ policy: "ksm", pagesToScan: 64, sleepMillis: 0 })
  scanner.start()
  let explicitTicks = 0
  // Scanner counters restart with a new scanner (and full_scans with unmergeAll): bank them.
  let scannedBefore = 0
  let passesBefore = 0
  const bank = (): void => {
    const st = engine.stats()
    scannedBefore += st.pagesScanned
    passesBefore += st.fullScans
  }
  let ops = 0
  let checks = 0
  let refused = 0
  let maxLive = 0
  let peakFrames = 0
  let peakSharing = 0
  const t0 = performance.now()

  const create = (): void => {
    const pages = 1 + int(16)
    const space = engine.createSpace({ size: pages * PS, domain: domains[int(domains.length)]! })
    if (rand() < 0.7) space.setMergeAny(true)
    live.push({ space, ref: new Uint8Array(space.size), pins: new Int32Array(pages) })
  }

  const check = (): void => {
    for (const l of live) {
      const got = l.space.read(0, l.space.size)
      if (Buffer.compare(got, l.ref) !== 0) throw new Error(`soak: ${l.space.name} differs from its reference after ${ops} operations`)
    }
    checkCounters(engine)
    checkDomainIsolation(engine)
    checkSecureInvariants(engine)
    checks++
  }

  const step = (): void => {
    if (live.length === 0) create()
    const l = live[int(live.length)]!
    const s = l.space
    const r = int(100)
    let kind: string
    if (r < 22) {
      kind = "write-page"
      const p = int(s.pages)
      const t = templates[int(templates.length)]!
      s.write(p * PS, t)
      l.ref.set(t, p * PS)
    } else if (r < 32) {
      kind = "writeU32"
      const a = int(s.size - 3)
      const v = int(0x100000000)
      s.writeU32(a, v)
      new DataView(l.ref.buffer).setUint32(a, v, true)
    } else if (r < 38) {
      kind = "fill"
      const a = int(s.size)
      const n = int(Math.min(3 * PS, s.size - a) + 1)
      const b = int(3)
      s.fill(a, n, b)
      l.ref.fill(b, a, a + n)
    } else if (r < 48) {
      kind = "merge"
      s.merge()
    } else if (r < 52) {
      kind = "unmerge"
      s.unmerge()
    } else if (r < 56) {
      kind = "discard"
      const p = int(s.pages)
      if (l.pins[p] !== 0) return
      s.discard(p * PS, PS)
      l.ref.fill(0, p * PS, (p + 1) * PS)
    } else if (r < 62) {
      kind = "fork"
      if (live.length >= maxSpaces) return
      const c = s.fork()
      live.push({ space: c, ref: l.ref.slice(), pins: new Int32Array(c.pages) })
    } else if (r < 68) {
      kind = "create"
      if (live.length >= maxSpaces) return
      create()
    } else if (r < 75) {
      kind = "dispose"
      s.dispose()
      live.splice(live.indexOf(l), 1)
    } else if (r < 78) {
      kind = "pin"
      const p = int(s.pages)
      if (l.pins[p]! > 0) {
        s.unpin(p * PS, 1)
        l.pins[p]!--
      } else {
        s.pin(p * PS, 1)
        l.pins[p]!++
      }
    } else if (r < 81) {
      kind = "compact"
      engine.compact({ budgetPages: 1 + int(64) })
    } else if (r < 84) {
      kind = "advise"
      const p = int(s.pages)
      s.advise(p * PS, PS, rand() < 0.7 ? "mergeable" : "unmergeable")
    } else if (r < 86) {
      kind = "scanner-set"
      scanner.set({ pagesToScan: 1 + int(200), sleepMillis: int(3) })
    } else if (r < 87) {
      kind = "scanner-replace"
      bank()
      void scanner.stop()
      scanner = engine.scanner(rand() < 0.5 ? { policy: "tracked", pagesToScan: 64, sleepMillis: 0, stablePasses: 1, rangePages: 8 } : { policy: "ksm", pagesToScan: 64, sleepMillis: 0 })
      scanner.start()
    } else if (r < 88 && rand() < 0.2) {
      kind = "unmergeAll"
      const passes = engine.stats().fullScans
      engine.unmergeAll()
      passesBefore += passes
    } else if (r < 94) {
      kind = "tick"
      scanner.tick()
      explicitTicks++
    } else {
      kind = "read"
      const a = int(s.size)
      const n = int(s.size - a + 1)
      const got = s.read(a, n)
      if (Buffer.compare(got, l.ref.subarray(a, a + n)) !== 0) throw new Error(`soak: read of ${s.name} differs after ${ops} operations`)
    }
    byKind[kind] = (byKind[kind] ?? 0) + 1
  }

  let lastLog = t0
  while (performance.now() - t0 < options.durationMs) {
    // A burst of operations, then a turn of the event loop so the scanner's own loop runs.
    for (let i = 0; i < 50; i++) {
      try {
        step()
      } catch (e) {
        if (e instanceof SksmError && e._tag === "OutOfMemory") {
          refused++
          // Nothing changed: the reference stays as it was. Free some memory now and then.
          if (live.length > 4 && rand() < 0.3) {
            const victim = live.splice(int(live.length), 1)[0]!
            victim.space.dispose()
          }
        } else {
          throw e
        }
      }
      ops++
      if (ops % checkEvery === 0) check()
      maxLive = Math.max(maxLive, live.length)
      peakFrames = Math.max(peakFrames, engine.memory().framesInUse)
      peakSharing = Math.max(peakSharing, engine.stats().pagesSharing)
    }
    await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setTimeout(resolve, 0))
    const now = performance.now()
    if (now - lastLog > 5000) {
      lastLog = now
      log(`  ${((now - t0) / 1000).toFixed(0)} s: ${ops} operations, ${checks} invariant checks, ${live.length} spaces, ${engine.memory().framesInUse} frames, pages_sharing ${engine.stats().pagesSharing}`)
    }
  }
  check()
  await scanner.stop()
  const stats = engine.stats()
  const compactions = engine.memory().compaction.runs
  for (const l of live) l.space.dispose()
  if (engine.memory().framesInUse !== 0) throw new Error(`soak: ${engine.memory().framesInUse} frames leaked`)
  if (engine.core.table.size !== 0) throw new Error(`soak: ${engine.core.table.size} table entries leaked`)
  checks++
  return {
    operations: ops,
    byKind,
    invariantChecks: checks,
    refusedForMemory: refused,
    explicitTicks,
    pagesScanned: scannedBefore + stats.pagesScanned,
    fullScans: passesBefore + stats.fullScans,
    compactions,
    maxLiveSpaces: maxLive,
    peakFramesInUse: peakFrames,
    peakPagesSharing: peakSharing,
    seconds: (performance.now() - t0) / 1000,
  }
}
