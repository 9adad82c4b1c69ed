/**
 * Issue 2's memory-model benchmarks: word access against a plain DataView (as a ratio
 * measured side by side), bulk read/write, fork, one copy-on-write fault, and metadata
 * bytes per page.
 */
import { randomFillSync } from "node:crypto"
import { Bench } from "tinybench"
import type { AddressSpace } from "../test/helpers/internals.ts"
import { Engine } from "../test/helpers/internals.ts"
import { type BenchModule, type BenchOptions, type BenchResult, type BenchRow, consume, GB, fmt, median, measure, MiB, p50, PAGE } from "./lib.ts"

/** Word operations per tinybench iteration: enough to bury the ~50 ns timer floor. */
const BATCH = 16384

function populated(engine: Engine, size: number): AddressSpace {
  const s = engine.createSpace({ size, name: "bench" })
  const chunk = randomFillSync(new Uint8Array(MiB))
  for (let off = 0; off < size; off += MiB) s.write(off, chunk)
  return s
}

/** Random addresses in [0, size-4]; `aligned` keeps them multiples of 4. */
function randomAddresses(size: number, aligned: boolean): Float64Array {
  const out = new Float64Array(BATCH)
  for (let i = 0; i < BATCH; i++) {
    const a = Math.floor(Math.random() * (size - 3))
    out[i] = aligned ? a & ~3 : a
  }
  return out
}

/** readU32/writeU32 through sksm vs a DataView over a plain ArrayBuffer, in one Bench per round. */
async function wordAccess(opts: BenchOptions, size: number): Promise<BenchRow[]> {
  const engine = new Engine()
  const space = populated(engine, size)
  const plain = new ArrayBuffer(size)
  new Uint8Array(plain).set(space.read(0, Math.min(size, MiB)))
  const dv = new DataView(plain)
  const aligned = randomAddresses(size, true)
  const unaligned = randomAddresses(size, false)
  const rounds = opts.quick ? 1 : 3
  const time = opts.quick ? 150 : 400
  const ratios: Record<string, number[]> = { read: [], write: [], readUnaligned: [] }
  const ns: Record<string, number[]> = { sksmRead: [], dvRead: [], sksmWrite: [], dvWrite: [], sksmReadU: [], dvReadU: [] }
  for (let round = 0; round < rounds; round++) {
    const bench = new Bench({ name: "word access", time, warmupTime: 50, iterations: 16 })
    bench
      .add("dv read", () => {
        let x = 0
        for (let i = 0; i < BATCH; i++) x = (x + dv.getUint32(aligned[i]!, true)) | 0
        consume(x)
      })
      .add("sksm read", () => {
        let x = 0
        for (let i = 0; i < BATCH; i++) x = (x + space.readU32(aligned[i]!)) | 0
        consume(x)
      })
      .add("dv write", () => {
        for (let i = 0; i < BATCH; i++) dv.setUint32(aligned[i]!, i, true)
      })
      .add("sksm write", () => {
        for (let i = 0; i < BATCH; i++) space.writeU32(aligned[i]!, i)
      })
      .add("dv read unaligned", () => {
        let x = 0
        for (let i = 0; i < BATCH; i++) x = (x + dv.getUint32(unaligned[i]!, true)) | 0
        consume(x)
      })
      .add("sksm read unaligned", () => {
        let x = 0
        for (let i = 0; i < BATCH; i++) x = (x + space.readU32(unaligned[i]!)) | 0
        consume(x)
      })
    await bench.run()
    const t = (name: string): number => (p50(bench.getTask(name)!) * 1e6) / BATCH
    ns.dvRead!.push(t("dv read"))
    ns.sksmRead!.push(t("sksm read"))
    ns.dvWrite!.push(t("dv write"))
    ns.sksmWrite!.push(t("sksm write"))
    ns.dvReadU!.push(t("dv read unaligned"))
    ns.sksmReadU!.push(t("sksm read unaligned"))
    ratios.read!.push(t("sksm read") / t("dv read"))
    ratios.write!.push(t("sksm write") / t("dv write"))
    ratios.readUnaligned!.push(t("sksm read unaligned") / t("dv read unaligned"))
  }
  const mb = size / MiB
  const side = (a: string, b: string): string => `sksm ${fmt(median(ns[a]!))} ns/op, DataView ${fmt(median(ns[b]!))} ns/op; ${mb} MiB, ${BATCH} random ops per sample, median of ${rounds} round(s)`
  space.dispose()
  return [
    { name: "random readU32: sksm / DataView", value: median(ratios.read!), unit: "x", goal: { op: "<=", target: 2 }, detail: side("sksmRead", "dvRead") },
    { name: "random writeU32: sksm / DataView", value: median(ratios.write!), unit: "x", goal: { op: "<=", target: 2 }, detail: side("sksmWrite", "dvWrite") },
    { name: "random readU32, any alignment: sksm / DataView", value: median(ratios.readUnaligned!), unit: "x", detail: side("sksmReadU", "dvReadU") },
  ]
}

/** readInto / write in 1 MiB chunks, sequential over the space; a native Buffer copy for reference. */
async function bulk(opts: BenchOptions, size: number): Promise<BenchRow[]> {
  const engine = new Engine()
  const space = populated(engine, size)
  const chunks = size / MiB
  const target = new Uint8Array(MiB)
  const source = randomFillSync(new Uint8Array(MiB))
  const plain = Buffer.alloc(size)
  const time = opts.quick ? 200 : 600
  const bench = new Bench({ name: "bulk", time, warmupTime: 50, iterations: 8 })
  bench
    .add("read", () => {
      for (let c = 0; c < chunks; c++) space.readInto(c * MiB, target)
    })
    .add("write", () => {
      for (let c = 0; c < chunks; c++) space.write(c * MiB, source)
    })
    .add("memcpy", () => {
      for (let c = 0; c < chunks; c++) target.set(plain.subarray(c * MiB, (c + 1) * MiB))
    })
  await bench.run()
  const gbps = (name: string): number => size / GB / (p50(bench.getTask(name)!) / 1e3)
  space.dispose()
  const detail = `${size / MiB} MiB space, 1 MiB chunks; a plain 1 MiB Uint8Array.set copies ${fmt(gbps("memcpy"))} GB/s on this machine`
  return [
    { name: "bulk readInto, 1 MiB chunks", value: gbps("read"), unit: "GB/s", goal: { op: ">=", target: 5 }, detail },
    { name: "bulk write, 1 MiB chunks", value: gbps("write"), unit: "GB/s", goal: { op: ">=", target: 5 }, detail },
  ]
}

/** fork() of a populated space; the child is disposed outside the timed part. */
async function fork(opts: BenchOptions, size: number): Promise<BenchRow[]> {
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
  return [{ name: "fork of a populated space", value: nsPerPage, unit: "ns/page", goal: { op: "<=", target: 10 }, detail: `${size / MiB} MiB (${size / PAGE} pages): ${fmt(t.median)} ms per fork (median of ${t.samples}; best ${fmt((t.min * 1e6) / (size / PAGE))} ns/page)` }]
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

export const memoryModel: BenchModule = {
  name: "memory-model",
  description: "issue 2: word access vs DataView, bulk copy, fork, copy-on-write fault, metadata",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const small = 64 * MiB
    const big = opts.quick ? 64 * MiB : 256 * MiB
    const rows: BenchRow[] = []
    opts.log("memory-model: word access")
    rows.push(...(await wordAccess(opts, 64 * MiB)))
    opts.log("memory-model: bulk read/write")
    rows.push(...(await bulk(opts, small)))
    opts.log("memory-model: fork")
    rows.push(...(await fork(opts, big)))
    opts.log("memory-model: copy-on-write fault")
    rows.push(...(await cowFault(opts, small)))
    rows.push(...metadata(big))
    return { rows, notes: opts.quick ? ["Quick mode: fork and metadata on 64 MiB instead of 256 MiB."] : [] }
  },
}
