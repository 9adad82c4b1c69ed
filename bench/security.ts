/**
 * Issue 7's security benchmarks:
 *
 * 1. The cost of secure mode against the default on workload W (half the pages duplicates of
 *    16 contents, half unique): merge() per page, the first write after merging (where secure
 *    mode pays a copy for every candidate), a ksm-scanner pass, and metadata per page.
 * 2. The timing signal secure mode removes: an attacker's first write to a page that merged
 *    with a victim's page versus one that found no partner, timed one write at a time, in
 *    both modes. Reported as distributions (median, p90, p99) side by side, with the
 *    Kolmogorov-Smirnov distance D between the two (0: the same distribution, 1: a threshold
 *    tells them apart every time) and the accuracy of the best single-threshold guess.
 *
 * Run alone: npx tsx bench/security.ts [--quick]   (also part of `npm run bench`, if listed there)
 */
import { pathToFileURL } from "node:url"
import { Engine, type EngineOptions } from "../test/helpers/internals.ts"
import { type BenchModule, type BenchOptions, type BenchResult, type BenchRow, consume, fmt, median, PAGE } from "./lib.ts"
import { makeWorkload, populate, type Workload } from "./workload.ts"

interface Mode {
  readonly name: string
  readonly options: EngineOptions
  /** merge() calls a page needs before it merges (idlePasses + 1). */
  readonly passes: number
}

const MODES: Mode[] = [
  { name: "default", options: {}, passes: 1 },
  { name: "secure (idlePasses 0)", options: { secure: true, idlePasses: 0 }, passes: 1 },
  { name: "secure (idlePasses 1)", options: { secure: true, idlePasses: 1 }, passes: 2 },
]

function quantile(sorted: Float64Array, q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))
  return sorted[i]!
}

/** Kolmogorov-Smirnov distance between two sorted samples, and the best threshold's accuracy. */
function separation(a: Float64Array, b: Float64Array): { d: number; accuracy: number } {
  let i = 0
  let j = 0
  let d = 0
  while (i < a.length && j < b.length) {
    const x = Math.min(a[i]!, b[j]!)
    while (i < a.length && a[i]! <= x) i++
    while (j < b.length && b[j]! <= x) j++
    d = Math.max(d, Math.abs(i / a.length - j / b.length))
  }
  // With equal priors, the best threshold classifier is right (1 + D) / 2 of the time.
  return { d, accuracy: (1 + d) / 2 }
}

// ---------------------------------------------------------------- 1. cost on workload W

interface Cost {
  mergeNsPerPage: number
  firstWriteNsPerPage: number
  scanNsPerPage: number
  /** Best (lowest) of the runs: steadier than the median on a shared machine. */
  mergeBest: number
  firstWriteBest: number
  scanBest: number
  cowFaults: number
  metadataPerPage: number
  pagesSharing: number
}

function costOf(mode: Mode, w: Workload, rounds: number): Cost {
  const merges: number[] = []
  const writes: number[] = []
  const scans: number[] = []
  let cow = 0
  let meta = 0
  let sharing = 0
  for (let r = 0; r < rounds + 1; r++) {
    const engine = new Engine({ pageSize: PAGE, autoCompact: false, ...mode.options })
    const s = engine.createSpace({ size: w.pages * PAGE })
    populate(s, w)
    const t0 = performance.now()
    for (let p = 0; p < mode.passes; p++) s.merge()
    const t1 = performance.now()
    sharing = engine.stats().pagesSharing
    meta = engine.memory().metadataBytes / s.pages
    const c0 = engine.stats().cowFaults
    const t2 = performance.now()
    for (let pi = 0; pi < s.pages; pi++) s.writeU32(pi * PAGE + 64, pi)
    const t3 = performance.now()
    cow = engine.stats().cowFaults - c0
    // A ksm-scanner pass over a fresh copy (two full scans: checksum, then merge).
    const e2 = new Engine({ pageSize: PAGE, autoCompact: false, ...mode.options })
    const s2 = e2.createSpace({ size: w.pages * PAGE })
    populate(s2, w)
    s2.setMergeAny(true)
    const k = e2.scanner({ policy: "ksm", pagesToScan: w.pages })
    const t4 = performance.now()
    for (let i = 0; i < 2 + mode.passes; i++) k.tick()
    const t5 = performance.now()
    if (r > 0) {
      merges.push(((t1 - t0) * 1e6) / s.pages)
      writes.push(((t3 - t2) * 1e6) / s.pages)
      scans.push(((t5 - t4) * 1e6) / s.pages)
    }
    s.dispose()
    s2.dispose()
  }
  return {
    mergeNsPerPage: median(merges),
    firstWriteNsPerPage: median(writes),
    scanNsPerPage: median(scans),
    mergeBest: Math.min(...merges),
    firstWriteBest: Math.min(...writes),
    scanBest: Math.min(...scans),
    cowFaults: cow,
    metadataPerPage: meta,
    pagesSharing: sharing,
  }
}

// ---------------------------------------------------------------- 2. the write-timing signal

interface Signal {
  merged: Float64Array
  unique: Float64Array
}

/**
 * `rounds` rounds of `pairs` attacker pages: even pages equal a victim page (they merge), odd
 * pages are unique. After merging, time the first writeU32 to each page, in a shuffled order.
 */
function signalOf(mode: Mode, pairs: number, rounds: number): Signal {
  const merged = new Float64Array(pairs * rounds)
  const unique = new Float64Array(pairs * rounds)
  let mi = 0
  let ui = 0
  const order = new Int32Array(2 * pairs)
  let seed = 12345
  const rand = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return seed / 0x100000000
  }
  for (let r = 0; r < rounds + 1; r++) {
    const engine = new Engine({ pageSize: PAGE, autoCompact: false, ...mode.options })
    const victim = engine.createSpace({ size: pairs * PAGE, domain: "guests" })
    const attacker = engine.createSpace({ size: 2 * pairs * PAGE, domain: "guests" })
    const page = new Uint8Array(PAGE)
    const dv = new DataView(page.buffer)
    for (let i = 0; i < pairs; i++) {
      for (let o = 0; o < PAGE; o += 4) dv.setUint32(o, Math.imul(i + 1, 2654435761) ^ o ^ (r << 20), true)
      victim.write(i * PAGE, page) // the secret the attacker probes for
      attacker.write(2 * i * PAGE, page) // a guess that is right: it will merge
      dv.setUint32(128, 0xdeadbeef ^ i, true)
      attacker.write((2 * i + 1) * PAGE, page) // a guess that is wrong: no partner
    }
    for (let p = 0; p < mode.passes; p++) {
      victim.merge()
      attacker.merge()
    }
    for (let i = 0; i < order.length; i++) order[i] = i
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1))
      const t = order[i]!
      order[i] = order[j]!
      order[j] = t
    }
    const warm = r === 0
    for (let k = 0; k < order.length; k++) {
      const pi = order[k]!
      const a = pi * PAGE + 8
      const t0 = performance.now()
      attacker.writeU32(a, k)
      const dt = (performance.now() - t0) * 1e6
      if (warm) continue
      if ((pi & 1) === 0) merged[mi++] = dt
      else unique[ui++] = dt
    }
    consume(attacker.readU32(8))
    victim.dispose()
    attacker.dispose()
  }
  return { merged: merged.subarray(0, mi).sort(), unique: unique.subarray(0, ui).sort() }
}

function checkStates(mode: Mode): string {
  // Sanity: after merging, both kinds of attacker page are write-protected in secure mode.
  const engine = new Engine({ pageSize: PAGE, ...mode.options })
  const v = engine.createSpace({ size: PAGE, domain: "g" })
  const a = engine.createSpace({ size: 2 * PAGE, domain: "g" })
  v.fill(0, PAGE, 1)
  a.fill(0, PAGE, 1)
  a.fill(PAGE, PAGE, 2)
  for (let p = 0; p < mode.passes; p++) {
    v.merge()
    a.merge()
  }
  const c0 = engine.stats().cowFaults
  a.writeU8(0, 9)
  const c1 = engine.stats().cowFaults
  a.writeU8(PAGE, 9)
  const c2 = engine.stats().cowFaults
  return `copies on first write: merged ${c1 - c0}, unique ${c2 - c1}`
}

// ---------------------------------------------------------------- module

async function run(opts: BenchOptions): Promise<BenchResult> {
  const rows: BenchRow[] = []
  const notes: string[] = []
  const size = opts.quick ? 16 << 20 : 64 << 20
  const w = makeWorkload({ kind: "W", sizeBytes: size, dup: 0.5, contents: 16 })
  const rounds = opts.quick ? 3 : 8
  const costs = MODES.map((m) => {
    opts.log(`security: cost, ${m.name}`)
    return costOf(m, w, rounds)
  })
  const base = costs[0]!
  const costTable = [
    `Cost of secure mode on workload W (${size >> 20} MiB of 4 KiB pages, half duplicates of 16 contents), median / best of ${rounds} runs, ratio of the best to the default's best. merge() covers every pass a page needs (idlePasses 1: two calls); the scanner column is the ksm policy until merged:`,
    "",
    "| mode | merge() ns/page | first write after merge ns/page | copies on first write | ksm scanner ns/page | metadata B/page | pages_sharing |",
    "|---|---|---|---|---|---|---|",
    ...MODES.map((m, i) => {
      const c = costs[i]!
      const cell = (med: number, best: number, b: number): string => `${fmt(med)} / ${fmt(best)} (${fmt(best / b)}x)`
      return `| ${m.name} | ${cell(c.mergeNsPerPage, c.mergeBest, base.mergeBest)} | ${cell(c.firstWriteNsPerPage, c.firstWriteBest, base.firstWriteBest)} | ${c.cowFaults} | ${cell(c.scanNsPerPage, c.scanBest, base.scanBest)} | ${fmt(c.metadataPerPage)} | ${c.pagesSharing} |`
    }),
  ]
  notes.push(costTable.join("\n"))
  for (const [i, m] of MODES.entries()) {
    const c = costs[i]!
    rows.push({ name: `${m.name}: merge() on W`, value: c.mergeBest, unit: "ns/page", detail: `best of ${rounds}; median ${fmt(c.mergeNsPerPage)}` })
    rows.push({ name: `${m.name}: first write after merge on W`, value: c.firstWriteBest, unit: "ns/page", detail: `${c.cowFaults} copies; median ${fmt(c.firstWriteNsPerPage)}` })
  }

  const pairs = opts.quick ? 1000 : 2000
  const srounds = opts.quick ? 3 : 6
  const signalModes = [MODES[0]!, MODES[1]!]
  const table = [
    `Timing signal: an attacker's first write to a page that merged with a victim's page vs one that found no partner (${pairs * srounds} writes of each kind, one writeU32 timed at a time with performance.now(), ns; timer overhead included):`,
    "",
    "| mode | page | median | p90 | p99 | KS distance D | best-threshold accuracy | state check |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for (const m of signalModes) {
    opts.log(`security: signal, ${m.name}`)
    const s = signalOf(m, pairs, srounds)
    const sep = separation(s.merged, s.unique)
    const states = checkStates(m)
    for (const [label, xs] of [
      ["merged (partner existed)", s.merged],
      ["unique (no partner)", s.unique],
    ] as const) {
      table.push(`| ${m.name} | ${label} | ${fmt(quantile(xs, 0.5))} | ${fmt(quantile(xs, 0.9))} | ${fmt(quantile(xs, 0.99))} | ${label.startsWith("merged") ? fmt(sep.d) : ""} | ${label.startsWith("merged") ? `${(sep.accuracy * 100).toFixed(1)}%` : ""} | ${label.startsWith("merged") ? states : ""} |`)
    }
    rows.push({ name: `${m.name}: write timing, merged vs unique, KS distance`, value: sep.d, unit: "D", detail: `merged median ${fmt(quantile(s.merged, 0.5))} ns, unique median ${fmt(quantile(s.unique, 0.5))} ns` })
  }
  notes.push(table.join("\n"))
  return { rows, notes }
}

/** The security bench module. */
export const security: BenchModule = {
  name: "security",
  description: "Secure mode's cost against the default, and the write-timing signal it removes (merged vs partnerless pages).",
  run,
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const quick = process.argv.includes("--quick")
  const r = await run({ quick, log: (l) => process.stderr.write(`${l}\n`) })
  for (const n of r.notes) console.log(`${n}\n`)
  console.log("| figure | value | unit | detail |\n|---|---|---|---|")
  for (const row of r.rows) console.log(`| ${row.name} | ${fmt(row.value)} | ${row.unit} | ${row.detail ?? ""} |`)
}


