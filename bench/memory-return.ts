/**
 * Issue 12's memory bench: does memory go back to the OS in every cycle of a long-lived
 * process (bench/memory-cycles.ts), and issue 2's memory-model figures measured next to
 * their plain-buffer counterparts: fork on fresh and on reused page-table memory, one
 * copy-on-write fault, bulk read/write next to a plain Uint8Array.set, metadata bytes per page.
 *
 * The cycles run first, in this process (bench/run.ts starts its children with --expose-gc)
 * with one engine for every cycle, then in a fresh child process with a new engine per
 * cycle. RssAnon needs Linux: elsewhere those rows are skipped with a note.
 */
import { randomFillSync } from "node:crypto"
import { Bench } from "tinybench"
import type { AddressSpace } from "../test/helpers/internals.ts"
import { Engine } from "../test/helpers/internals.ts"
import { type BenchModule, type BenchOptions, type BenchResult, type BenchRow, GB, fmt, median, measure, MiB, p50, PAGE } from "./lib.ts"
import { type CyclesResult, cyclesUnavailable, rssAnon, runCycles, spawnCycles } from "./memory-cycles.ts"

function populated(engine: Engine, size: number): AddressSpace {
  const s = engine.createSpace({ size, name: "bench" })
  const chunk = randomFillSync(new Uint8Array(MiB))
  for (let off = 0; off < size; off += MiB) s.write(off, chunk)
  return s
}

/**
 * readInto / write in 1 MiB chunks, sequential over the space, next to the same copies on a
 * plain buffer of the same size (fully written, so no read comes from untouched zero pages):
 * Uint8Array.set out of it and into it, in the same Bench.
 */
async function bulk(opts: BenchOptions, size: number): Promise<BenchRow[]> {
  const engine = new Engine()
  const space = populated(engine, size)
  const chunks = size / MiB
  const target = new Uint8Array(MiB)
  const source = randomFillSync(new Uint8Array(MiB))
  const plain = new Uint8Array(size)
  for (let off = 0; off < size; off += 64 * MiB) randomFillSync(plain, off, Math.min(64 * MiB, size - off))
  const time = opts.quick ? 200 : 600
  const bench = new Bench({ name: "bulk", time, warmupTime: 50, iterations: 8 })
  bench
    .add("read", () => {
      for (let c = 0; c < chunks; c++) space.readInto(c * MiB, target)
    })
    .add("plain read", () => {
      for (let c = 0; c < chunks; c++) target.set(plain.subarray(c * MiB, (c + 1) * MiB))
    })
    .add("write", () => {
      for (let c = 0; c < chunks; c++) space.write(c * MiB, source)
    })
    .add("plain write", () => {
      for (let c = 0; c < chunks; c++) plain.set(source, c * MiB)
    })
  await bench.run()
  const gbps = (name: string): number => size / GB / (p50(bench.getTask(name)!) / 1e3)
  space.dispose()
  const side = (op: string, plainOp: string): string => `${size / MiB} MiB, 1 MiB chunks; a plain Uint8Array.set ${plainOp} a ${size / MiB} MiB buffer: ${fmt(gbps(`plain ${op}`))} GB/s in the same run (sksm ${fmt(gbps(op) / gbps(`plain ${op}`))}x of it)`
  return [
    { name: "bulk readInto, 1 MiB chunks", value: gbps("read"), unit: "GB/s", goal: { op: ">=", target: 5 }, detail: side("read", "out of") },
    { name: "bulk write, 1 MiB chunks", value: gbps("write"), unit: "GB/s", goal: { op: ">=", target: 5 }, detail: side("write", "into") },
    { name: "plain Uint8Array.set out of a buffer, 1 MiB chunks", value: gbps("plain read"), unit: "GB/s", detail: "the baseline of bulk readInto, same Bench" },
    { name: "plain Uint8Array.set into a buffer, 1 MiB chunks", value: gbps("plain write"), unit: "GB/s", detail: "the baseline of bulk write, same Bench" },
  ]
}

/**
 * fork() of a populated space, the child disposed outside the timed part: the next fork's
 * page table reuses the memory the last one freed (the allocator hands it straight back).
 */
async function forkReused(opts: BenchOptions, size: number): Promise<BenchRow[]> {
  const engine = new Engine()
  const space = populated(engine, size)
  let child: AddressSpace | null = null
  const t = await measure("fork", () => { child = space.fork() }, {
    time: opts.quick ? 300 : 1500,
    iterations: opts.quick ? 5 : 15,
    afterEach: () => {
      child?.dispose()
      child = null
    },
  })
  const nsPerPage = (t.median * 1e6) / space.pages
  space.dispose()
  return [{ name: "fork of a populated space, page-table memory reused (fork + dispose loop)", value: nsPerPage, unit: "ns/page", goal: { op: "<=", target: 10 }, detail: `${size / MiB} MiB (${size / PAGE} pages): ${fmt(t.median)} ms per fork (median of ${t.samples}; best ${fmt((t.min * 1e6) / (size / PAGE))} ns/page)` }]
}

/**
 * fork() on fresh memory: every child stays alive until the end, so no fork reuses page-table
 * memory an earlier one freed; each new table is memory the process has not touched (or not
 * since the allocator took it back), as when a host forks to keep a snapshot. Each fork is
 * timed alone with process.hrtime.bigint (a fork takes a fraction of a millisecond or more).
 */
function forkFresh(opts: BenchOptions, size: number): BenchRow[] {
  const engine = new Engine()
  const space = populated(engine, size)
  space.fork().dispose() // JIT warm-up (its freed table is reused by the first fork at most)
  const count = opts.quick ? 8 : 32
  const children: AddressSpace[] = []
  const ns: number[] = []
  for (let k = 0; k < count; k++) {
    const t0 = process.hrtime.bigint()
    children.push(space.fork())
    ns.push(Number(process.hrtime.bigint() - t0) / space.pages)
  }
  for (const c of children) c.dispose()
  space.dispose()
  return [{ name: "fork of a populated space, fresh page-table memory (children kept alive)", value: median(ns), unit: "ns/page", goal: { op: "<=", target: 10 }, detail: `${size / MiB} MiB (${size / PAGE} pages): median of ${count} forks, ${fmt(Math.min(...ns))}..${fmt(Math.max(...ns))} ns/page` }]
}

/** One copy-on-write fault: fork once (untimed), then write one word to each shared page of the child. */
async function cowFault(opts: BenchOptions, size: number): Promise<BenchRow[]> {
  const engine = new Engine()
  const space = populated(engine, size)
  const pages = space.pages
  let child: AddressSpace | null = null
  const t = await measure(
    "cow",
    () => {
      const c = child!
      for (let pi = 0; pi < pages; pi++) c.writeU32(pi * PAGE, pi)
    },
    {
      time: opts.quick ? 300 : 1500,
      iterations: opts.quick ? 5 : 15,
      beforeEach: () => {
        child = space.fork()
      },
      afterEach: () => {
        if (child!.cowFaults !== pages) throw new Error(`expected ${pages} copy-on-write faults, saw ${child!.cowFaults}`)
        child!.dispose()
        child = null
      },
    },
  )
  const us = (t.median * 1e3) / pages
  space.dispose()
  return [{ name: "copy-on-write fault of a 4 KiB page", value: us, unit: "µs", goal: { op: "<=", target: 1 }, detail: `${pages} faults per sample (writeU32 to each shared page of a fresh fork), median of ${t.samples}; best ${fmt((t.min * 1e3) / pages)} µs` }]
}

/** engine.memory().metadataBytes per page of a populated space, written 1 MiB at a time. */
function metadata(size: number): BenchRow[] {
  const engine = new Engine()
  const space = populated(engine, size)
  const mem = engine.memory()
  const pool = engine.pool
  const perPage = mem.metadataBytes / space.pages
  const detail =
    `${size / MiB} MiB populated: page table ${fmt(space.metadataBytes / space.pages)} B/page; ` +
    `frame pool ${fmt(pool.metadataBytes / space.pages)} B/page (${fmt(pool.metadataBytes / pool.capacity)} B per frame slot, ` +
    `${pool.capacity} slots for ${mem.framesInUse} frames in use); merge machinery ${engine.core.metadataBytes} B`
  space.dispose()
  return [{ name: "metadata per page", value: perPage, unit: "B/page", goal: { op: "<=", target: 16 }, detail }]
}

const mib = (b: number): string => `${fmt(b / MiB)} MiB`

/** Per cycle: RssAnon drop / claimed saving (goal >= 90%) and RssAnon after dispose - start (goal <= 32 MiB). */
function cycleRows(r: CyclesResult, label: string): BenchRow[] {
  const out: BenchRow[] = []
  r.cycles.forEach((c, k) => {
    const name = `memory return, ${label}, cycle ${k + 1} of ${r.cycles.length}`
    out.push({
      name: `${name}: RssAnon drop / claimed saving`,
      value: 100 * c.dropRatio,
      unit: "%",
      goal: { op: ">=", target: 90 },
      detail: `claimed (pagesSharing + ksmZeroPages) x pageSize ${mib(c.claimed)}; RssAnon ${mib(c.populated)} populated -> ${mib(c.afterCompact)} after merge + compact (drop ${mib(c.drop)}); merge ${fmt(c.mergeMs)} ms, compact ${fmt(c.compactMs)} ms, ${c.slabsReleased} slabs released`,
    })
    out.push({ name: `${name}: RssAnon after dispose - start`, value: c.residual / MiB, unit: "MiB", goal: { op: "<=", target: 32 }, detail: `RssAnon ${mib(c.afterDispose)} after dispose (of which glibc's heap ${mib(c.heapAfterDispose)}), ${mib(r.start)} before cycle 1` })
  })
  return out
}

/** The memory-return cycles: a long-lived engine in this process, then a new engine per cycle in a fresh child. */
async function memoryReturn(opts: BenchOptions, notes: string[]): Promise<BenchRow[]> {
  const size = 256 * MiB
  const cycles = 5
  if (rssAnon() === null) {
    const note = `Memory return skipped: ${cyclesUnavailable()}.`
    opts.log(`memory-return: ${note}`)
    notes.push(note)
    return []
  }
  // In this process when gc() is exposed (bench/run.ts children), else in a child of its own.
  const log = (line: string): void => opts.log(`memory-return: ${line}`)
  opts.log("memory-return: 5 cycles, one engine for all (this process)")
  const shared = cyclesUnavailable() === null ? await runCycles({ size, cycles, sharedEngine: true, log }) : await spawnCycles({ size, cycles, sharedEngine: true })
  opts.log("memory-return: 5 cycles, a new engine per cycle (a fresh child process)")
  const perCycle = await spawnCycles({ size, cycles })
  if ("unavailable" in shared || "unavailable" in perCycle) throw new Error("RssAnon vanished between two readings")
  notes.push(
    `Memory return: ${cycles} cycles in one long-lived process of {populate a ${size / MiB} MiB space (first half 16 distinct page contents repeated, second half random), ` +
      "merge(), engine.compact() until done, read RssAnon, dispose, read RssAnon}, every RssAnon (/proc/self/status) after forced full GCs. " +
      '"one engine": one Engine (autoCompact off) serves every cycle and compacts again after dispose (a long-lived host); ' +
      '"engine per cycle": each cycle makes its own Engine and drops it with the space, in a fresh child process. ' +
      "Claimed saving = (pagesSharing + ksmZeroPages) x pageSize after merge().",
  )
  return [...cycleRows(shared, "one engine"), ...cycleRows(perCycle, "engine per cycle")]
}

export const memoryReturnBench: BenchModule = {
  name: "memory-return",
  description: "issues 12 and 2: memory returned to the OS in every cycle of a long-lived process; fork (fresh and reused memory), copy-on-write fault, bulk copy vs Uint8Array.set, metadata",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const small = 64 * MiB
    const big = opts.quick ? 64 * MiB : 256 * MiB
    const rows: BenchRow[] = []
    const notes: string[] = []
    // First, while the process is new: the cycles measure from its starting RssAnon.
    rows.push(...(await memoryReturn(opts, notes)))
    opts.log("memory-return: fork on fresh memory")
    rows.push(...forkFresh(opts, big))
    opts.log("memory-return: fork with reused memory")
    rows.push(...(await forkReused(opts, big)))
    opts.log("memory-return: copy-on-write fault")
    rows.push(...(await cowFault(opts, small)))
    opts.log("memory-return: bulk read/write")
    rows.push(...(await bulk(opts, small)))
    rows.push(...metadata(big))
    if (opts.quick) notes.push("Quick mode: fork and metadata on 64 MiB instead of 256 MiB; 8 fresh forks.")
    return { rows, notes }
  },
}
