/**
 * `sksm estimate`: how much would KSM-style merging save on these processes or memory images?
 * Streams every mergeable page through a {@link PageCensus} and prints KSM's counters as the
 * kernel would report them after merging: the fleet's pages_shared / pages_sharing /
 * general_profit, each process's ksm_merging_pages / ksm_zero_pages / ksm_process_profit (as
 * /proc/PID/ksm_stat would show them), the memory actually freed, why it is not more, per mapping,
 * and the most duplicated contents. See census.ts for the method and its memory bound.
 *
 * Sources are read in a fixed order (pids ascending, then files by path) whatever the order of
 * the arguments, and a source given twice is read once, so the figures depend only on the set.
 */
import { statSync } from "node:fs"
import { resolve } from "node:path"
import { intFlag, parse } from "./args.ts"
import { type CensusTotals, KERNEL_RMAP_ITEM_BYTES, PageCensus, type RegionCounts, type TopContent } from "./census.ts"
import { fsError, usageError } from "./errors.ts"
import { ascii, bytes, hex, int, pct, Progress, table } from "./format.ts"
import { hexAddr, type Mapping, openFile, openProcess, readFile, readProcess, type SourceSummary, systemPageSize } from "./sources.ts"

const COMMAND = "estimate"

/** One source's counts: the census's, plus what the reader found. */
export interface SourceCounts extends Omit<RegionCounts, "label" | "start" | "end" | "source" | "mergeable"> {
  /** Pages on the kernel's zero page (never written): ksmd skips them, not counted. */
  zeroPageMapped: number
  /** Anonymous pages counted here that sit in mappings not opted in to KSM (no VM_MERGEABLE). */
  notOptedInPages: number
}

/** A source in the report. */
export interface SourceReport extends SourceSummary {
  /** Position among the sources as given (after merging repeats). */
  readonly index: number
  /** The process id, for a process. */
  readonly pid: number | null
  /** The path as given, for a file. */
  readonly path: string | null
  readonly counts: SourceCounts
  /** /proc/PID/ksm_stat's ksm_process_profit after merging: (merging + zero pages) x page size - 64 B per page. */
  readonly ksmProcessProfit: number
  readonly regions: readonly RegionCounts[]
}

/** Why the saving is not larger: each reason with its figure (pages). */
export interface WhyNotMore {
  /** Resident pages that are file-backed or shared (page cache, shmem, shared mappings): never merged. */
  readonly fileOrSharedPages: number
  /** Swapped-out pages: not read. */
  readonly swappedPages: number
  /** Pages whose copies are all one physical page already (fork/COW): nothing to save. */
  readonly cowSharedPages: number
  /** Pages mapped by several processes left out because their physical page was not visible (not root). */
  readonly sharedExcludedPages: number
  /** Pages on the kernel's zero page (read, never written): ksmd skips them. */
  readonly zeroPageMappedPages: number
  /** Counted pages in mappings not opted in (no VM_MERGEABLE): ksmd would not scan them as things are. */
  readonly notOptedInPages: number
  /** Pages with a content no other page has. */
  readonly uniquePages: number
  /** Duplicate non-zero pages with a copy at the same offset (address or file offset) in another source. */
  readonly duplicatesSameOffset: number
  /** Duplicate non-zero pages whose copies are only elsewhere. */
  readonly duplicatesElsewhere: number
  /** Plain-language hints, each with its figure. */
  readonly hints: readonly string[]
}

/** The JSON document `sksm estimate --json` prints. */
export interface EstimateReport {
  readonly pageSize: number
  readonly maxPageSharing: number
  readonly useZeroPages: boolean
  /**
   * Whether physical page numbers were visible (root): pages mapped by several processes were
   * then counted once; otherwise they were left out (see whyNotMore.sharedExcludedPages). Null
   * when no process was read.
   */
  readonly pfns: boolean | null
  readonly totals: CensusTotals & { readonly scannedBytes: number; readonly savedPercent: number; readonly profitPercent: number; readonly unreadablePages: number }
  readonly sources: readonly SourceReport[]
  readonly whyNotMore: WhyNotMore
  readonly top: readonly { count: number; digest: string; uniformByte: number | null; previewHex: string; previewAscii: string }[]
  /** Things to know about the run (sources given twice, ...). */
  readonly notes: readonly string[]
  readonly seconds: number
  /** Bytes of bookkeeping the census held at the end (the memory bound in practice). */
  readonly censusBytes: number
}

/** A source to read, in canonical order. */
interface Planned {
  readonly summary: SourceSummary
  readonly pid: number | null
  readonly path: string | null
  /** Position among the arguments (first occurrence). */
  readonly order: number
  readonly mappings?: Mapping[]
}

/** Run `sksm estimate` with the arguments after the command name. */
export async function estimate(args: readonly string[]): Promise<void> {
  const { values, positionals } = parse(
    COMMAND,
    args,
    {
      pid: { type: "string", multiple: true },
      json: { type: "boolean" },
      "max-page-sharing": { type: "string" },
      "use-zero-pages": { type: "boolean" },
      "page-size": { type: "string" },
      top: { type: "string" },
      mappings: { type: "string" },
      progress: { type: "boolean" },
    },
    true,
  )
  const pidArgs = (values.pid ?? []).map((p) => {
    if (!/^\d+$/.test(p) || Number(p) < 1) throw usageError(`--pid must be a process id (a positive integer), got "${p}"`, COMMAND)
    return Number(p)
  })
  if (pidArgs.length === 0 && positionals.length === 0) throw usageError("nothing to estimate: give --pid PID or memory-image FILEs", COMMAND)
  const maxPageSharing = intFlag(COMMAND, "max-page-sharing", values["max-page-sharing"], 256, 2)
  const topN = intFlag(COMMAND, "top", values.top, 10, 0, 1000)
  const mappingsN = intFlag(COMMAND, "mappings", values.mappings, 10, 0)
  const pageSize = values["page-size"] !== undefined ? intFlag(COMMAND, "page-size", values["page-size"], 4096, 512, 1 << 21) : pidArgs.length > 0 ? systemPageSize() : 4096
  if ((pageSize & (pageSize - 1)) !== 0) throw usageError(`--page-size must be a power of two, got ${pageSize}`, COMMAND)
  if (pidArgs.length > 0 && pageSize !== systemPageSize()) throw usageError(`--page-size ${pageSize} differs from this machine's ${systemPageSize()}; it applies to image files only`, COMMAND)
  const useZeroPages = values["use-zero-pages"] === true

  // A source given twice is read once (with a note); the order of reading is canonical.
  const notes: string[] = []
  const pids: number[] = []
  for (const pid of pidArgs) {
    if (pids.includes(pid)) {
      if (!notes.some((n) => n.startsWith(`pid ${pid} `))) notes.push(`pid ${pid} was given more than once: counted once`)
    } else pids.push(pid)
  }
  // Open everything first, so a bad pid or file fails before minutes of reading.
  const planned: Planned[] = []
  for (const pid of pids) {
    const { summary, mappings } = openProcess(pid)
    planned.push({ summary, pid, path: null, order: planned.length, mappings })
  }
  const fileKeys = new Map<string, string>()
  for (const path of positionals) {
    const summary = openFile(path)
    let key: string
    try {
      const st = statSync(path)
      key = `${st.dev}:${st.ino}`
    } catch (e) {
      throw fsError(e, path)
    }
    const first = fileKeys.get(key)
    if (first !== undefined) {
      notes.push(first === path ? `${path} was given more than once: counted once` : `${path} is the same file as ${first}: counted once`)
      continue
    }
    fileKeys.set(key, path)
    planned.push({ summary, pid: null, path, order: planned.length })
  }
  const canonical = [...planned].sort((a, b) => {
    if (a.pid !== null && b.pid !== null) return a.pid - b.pid
    if (a.pid !== null) return -1
    if (b.pid !== null) return 1
    const ra = resolve(a.path!)
    const rb = resolve(b.path!)
    return ra < rb ? -1 : ra > rb ? 1 : 0
  })

  const census = new PageCensus({ pageSize, maxPageSharing, useZeroPages })
  const expected = planned.reduce((s, x) => s + x.summary.expectedBytes, 0)
  const progress = new Progress("reading", expected, values.progress ?? process.stderr.isTTY === true)
  const t0 = performance.now()
  const read: { zeroPageMapped: number }[] = canonical.map(() => ({ zeroPageMapped: 0 }))
  let pfns: boolean | null = null
  try {
    canonical.forEach((p, source) => {
      if (p.pid !== null) {
        const st = readProcess(p.pid, source, p.mappings!, census, progress)
        read[source]!.zeroPageMapped = st.zeroPageMapped
        // Visible if any process showed one; invisible if pages needed them and none showed.
        if (st.pfns) pfns = true
        else if (pfns === null) pfns = st.sharedExcluded > 0 ? false : null
      } else readFile(p.path!, source, census, progress)
    })
  } finally {
    progress.done()
  }
  if (pfns === null && pids.length > 0) pfns = process.getuid?.() === 0
  const inputs = canonical.map((p, source) => ({ ...p, source, zeroPageMapped: read[source]!.zeroPageMapped }))
  const report = buildReport(census, inputs, topN, (performance.now() - t0) / 1000, pfns, notes)
  process.stdout.write(values.json === true ? `${JSON.stringify(report, null, 2)}\n` : render(report, mappingsN))
}

/** A source as read: its census index and what the reader found. */
export interface ReadSource {
  readonly summary: SourceSummary
  readonly pid: number | null
  readonly path: string | null
  /** Position among the arguments. */
  readonly order: number
  /** Its source index in the census. */
  readonly source: number
  readonly zeroPageMapped: number
}

function sum(regions: readonly RegionCounts[], zeroPageMapped: number): SourceCounts {
  const c: SourceCounts = {
    pages: 0, zeroPages: 0, duplicatePages: 0, pagesSharing: 0, pagesShared: 0, ksmZeroPages: 0, ksmMergingPages: 0, cowSharedPages: 0,
    unreadable: 0, sharedExcluded: 0, alreadyKsm: 0, dupSameOffset: 0, zeroPageMapped, notOptedInPages: 0,
  }
  for (const r of regions) {
    c.pages += r.pages
    c.zeroPages += r.zeroPages
    c.duplicatePages += r.duplicatePages
    c.pagesSharing += r.pagesSharing
    c.pagesShared += r.pagesShared
    c.ksmZeroPages += r.ksmZeroPages
    c.ksmMergingPages += r.ksmMergingPages
    c.cowSharedPages += r.cowSharedPages
    c.unreadable += r.unreadable
    c.sharedExcluded += r.sharedExcluded
    c.alreadyKsm += r.alreadyKsm
    c.dupSameOffset += r.dupSameOffset
    if (!r.mergeable) c.notOptedInPages += r.pages
  }
  return c
}

/** Interpreters whose heaps differ between processes unless their hash seeds are fixed. */
const INTERPRETERS: readonly { re: RegExp; name: string; fix: string }[] = [
  { re: /^python/, name: "Python", fix: "PYTHONHASHSEED=0 (same string/dict layout in every process); forking workers from one parent (a prefork pool) shares the rest" },
  { re: /^(node|deno|bun)$/, name: "JavaScript", fix: "V8 flags --hash-seed=1 --random-seed=1 (fixed hash and heap seeds), or a snapshot/zygote the workers fork from" },
  { re: /^(ruby|perl|php|php-fpm)/, name: "interpreter", fix: "a fixed hash seed where the interpreter has one, or workers forked from a preloaded parent" },
  { re: /^java$/, name: "JVM", fix: "Class Data Sharing archives (-XX:SharedArchiveFile) for class metadata" },
]

/** Assemble the report from a finished census. `inputs` are in census (canonical) order. */
export function buildReport(census: PageCensus, inputs: readonly ReadSource[], topN: number, seconds: number, pfns: boolean | null = null, notes: readonly string[] = []): EstimateReport {
  const t = census.totals()
  const regions = census.regions()
  const ps = census.pageSize
  const scannedBytes = t.pages * ps
  const sources: SourceReport[] = inputs
    .map((s) => {
      const mine = regions.filter((r) => r.source === s.source)
      const counts = sum(mine, s.zeroPageMapped)
      return {
        ...s.summary,
        index: s.order,
        pid: s.pid,
        path: s.path,
        counts,
        ksmProcessProfit: (counts.ksmMergingPages + counts.ksmZeroPages) * ps - counts.pages * KERNEL_RMAP_ITEM_BYTES,
        regions: mine,
      }
    })
    .sort((a, b) => a.index - b.index)
  const unreadablePages = sources.reduce((a, s) => a + s.counts.unreadable, 0)
  const top = census.top(topN).map((c: TopContent) => ({
    count: c.count,
    digest: c.digest,
    uniformByte: c.uniformByte >= 0 ? c.uniformByte : null,
    previewHex: hex(c.preview, 32),
    previewAscii: ascii(c.preview, 32),
  }))
  const whyNotMore = why(t, sources, ps, pfns)
  return {
    pageSize: ps,
    maxPageSharing: census.maxPageSharing,
    useZeroPages: census.useZeroPages,
    pfns,
    totals: {
      ...t,
      scannedBytes,
      savedPercent: scannedBytes === 0 ? 0 : (100 * t.savedBytes) / scannedBytes,
      profitPercent: scannedBytes === 0 ? 0 : (100 * t.profitBytes) / scannedBytes,
      unreadablePages,
    },
    sources,
    whyNotMore,
    top,
    notes,
    seconds,
    censusBytes: census.bytesHeld,
  }
}

function why(t: CensusTotals, sources: readonly SourceReport[], ps: number, pfns: boolean | null): WhyNotMore {
  const add = (f: (s: SourceReport) => number) => sources.reduce((a, s) => a + f(s), 0)
  const fileOrSharedPages = Math.round(add((s) => s.memory?.fileOrSharedBytes ?? 0) / ps)
  const swappedPages = Math.round(add((s) => s.memory?.swapBytes ?? 0) / ps)
  const sharedExcludedPages = add((s) => s.counts.sharedExcluded)
  const zeroPageMappedPages = add((s) => s.counts.zeroPageMapped)
  const notOptedInPages = add((s) => s.counts.notOptedInPages)
  const duplicatesSameOffset = add((s) => s.counts.dupSameOffset)
  const duplicatesElsewhere = t.duplicatePages - duplicatesSameOffset
  const uniquePages = t.distinctContents - t.duplicatedContents - (t.zeroPages >= 2 ? 1 : 0)
  const hints: string[] = []
  const procs = sources.filter((s) => s.kind === "pid")
  if (sharedExcludedPages > 0 && pfns !== true) {
    hints.push(
      `${int(sharedExcludedPages)} pages (${bytes(sharedExcludedPages * ps)}) mapped by several processes (fork/COW) were left out: telling which of them are one physical page needs page frame numbers (root / CAP_SYS_ADMIN). Run as root to count them as the kernel would.`,
    )
  }
  if (t.cowSharedPages > 0) {
    hints.push(`${int(t.cowSharedPages)} pages (${bytes(t.cowSharedPages * ps)}) have copies that are all one physical page already (fork/COW): KSM saves nothing on them (its unstable tree never substitutes a KSM page for a forked page).`)
  }
  if (notOptedInPages > 0) {
    hints.push(
      `${int(notOptedInPages)} of the ${int(add((s) => (s.kind === "pid" ? s.counts.pages : 0)))} pages read from processes (${pct(notOptedInPages, add((s) => (s.kind === "pid" ? s.counts.pages : 0)))}) are in mappings not opted in (no VM_MERGEABLE): ksmd skips them until the process calls madvise(MADV_MERGEABLE) or prctl(PR_SET_MEMORY_MERGE); the estimate assumes they opt in.`,
    )
  }
  const multi = new Set(sources.map((s) => s.index)).size >= 2
  if (multi && t.duplicatePages > 0) {
    const share = duplicatesSameOffset / t.duplicatePages
    if (share < 0.5 && duplicatesElsewhere > 0) {
      hints.push(
        `${pct(duplicatesElsewhere, t.duplicatePages)} of the duplicate pages have their copies only at other offsets: the sources' layouts differ (ASLR, KASLR in guests). KSM merges by content, so these count; but pages that hold addresses differ between such layouts and never merge: fixed layouts (nokaslr, setarch -R) usually merge more.`,
      )
    }
  }
  // Interpreters of the same kind whose heaps share little.
  for (const it of INTERPRETERS) {
    const group = procs.filter((s) => it.re.test(s.name))
    if (group.length < 2) continue
    const nonZero = group.reduce((a, s) => a + s.counts.pages - s.counts.zeroPages, 0)
    const dup = group.reduce((a, s) => a + s.counts.duplicatePages, 0)
    const cow = group.reduce((a, s) => a + s.counts.cowSharedPages + s.counts.sharedExcluded, 0)
    if (nonZero > 0 && dup / nonZero < 0.25 && cow / nonZero < 0.25) {
      hints.push(
        `${group.length} ${it.name} processes (${group.map((s) => s.name).filter((n, i, a) => a.indexOf(n) === i).join(", ")}) share only ${pct(dup, nonZero)} of their non-zero pages: their heaps look randomised (per-process hash seeds, allocation order, ASLR). Try ${it.fix}.`,
      )
    }
  }
  return { fileOrSharedPages, swappedPages, cowSharedPages: t.cowSharedPages, sharedExcludedPages, zeroPageMappedPages, notOptedInPages, uniquePages: Math.max(0, uniquePages), duplicatesSameOffset, duplicatesElsewhere, hints }
}

/** The human-readable report. */
export function render(r: EstimateReport, mappingsN: number): string {
  const t = r.totals
  const ps = r.pageSize
  const out: string[] = []
  const nP = r.sources.filter((s) => s.kind === "pid").length
  const nF = r.sources.length - nP
  const what = [nP > 0 ? `${nP} process${nP === 1 ? "" : "es"}` : "", nF > 0 ? `${nF} file${nF === 1 ? "" : "s"}` : ""].filter(Boolean).join(" + ")
  out.push(`sksm estimate: ${what}, ${bytes(t.scannedBytes)} read in ${r.seconds.toFixed(2)} s`)
  const pfnNote = r.pfns === null ? "" : r.pfns ? ", physical pages visible (forked pages counted once)" : ", physical pages NOT visible (not root): pages mapped by several processes left out"
  out.push(`page size ${bytes(ps)}, max_page_sharing ${r.maxPageSharing}, use_zero_pages ${r.useZeroPages ? "on" : "off"}${pfnNote}`)
  for (const n of r.notes) out.push(`note: ${n}`)
  out.push("")
  const row = (name: string, pages: number, note = "", size = true): string[] => [name, int(pages), size ? bytes(pages * ps) : "", note]
  const rows = [
    row("scanned", t.pages, nP > 0 ? "present private anonymous pages (processes), every page (files)" : "every page of the files"),
    row("zero pages", t.zeroPages, pct(t.zeroPages, t.pages)),
    row("duplicate pages", t.duplicatePages, `${pct(t.duplicatePages, t.pages)} (non-zero, in ${int(t.duplicatedContents)} contents seen twice or more)`),
    row("distinct contents", t.distinctContents, "", false),
  ]
  if (t.cowSharedPages > 0) rows.push(row("one page already", t.cowSharedPages, "copies all on one physical page (fork/COW): nothing to merge"))
  rows.push(
    row("pages_shared", t.pagesShared, "KSM pages the kernel would keep"),
    row("pages_sharing", t.pagesSharing, "mappings merged onto them (the kernel's counter)"),
    row("pages_unshared", t.pagesUnshared, "pages KSM would keep scanning"),
    row("ksm_zero_pages", t.ksmZeroPages, r.useZeroPages ? "zero pages mapped to the zero page" : "(use_zero_pages off: zero pages merge like any content)"),
  )
  out.push(table([{ header: "what" }, { header: "pages", right: true }, { header: "size", right: true }, { header: "" }], rows))
  out.push("")
  out.push(`  saved           ${bytes(t.savedBytes).padStart(10)}  ${pct(t.savedBytes, t.scannedBytes).padStart(6)} of scanned   physical pages merging frees`)
  out.push(`  general_profit  ${bytes(t.profitBytes).padStart(10)}  ${pct(t.profitBytes, t.scannedBytes).padStart(6)} of scanned   (pages_sharing + ksm_zero_pages) x page size - 64 B per scanned page`)
  if (t.freedPages < t.pagesSharing + t.ksmZeroPages) {
    out.push(`  (pages_sharing counts ${int(t.pagesSharing + t.ksmZeroPages - t.freedPages)} forked mappings of pages freed once: the kernel's counter and general_profit read higher than the memory freed)`)
  }
  if (t.unreadablePages > 0) out.push(`  (${int(t.unreadablePages)} present pages could not be read and are not counted)`)

  out.push("", "per source (the kernel's /proc/PID/ksm_stat after merging; independent of the order of the sources)")
  const srcRows = r.sources.map((s) => {
    const c = s.counts
    return [s.kind === "pid" ? `pid ${s.id}` : s.id, s.name, int(c.pages), int(c.zeroPages), int(c.duplicatePages), int(c.cowSharedPages), int(c.ksmMergingPages), int(c.ksmZeroPages), bytes(s.ksmProcessProfit)]
  })
  if (r.sources.length > 1) {
    srcRows.push(["all", "", int(t.pages), int(t.zeroPages), int(t.duplicatePages), int(t.cowSharedPages), int(t.ksmMergingPages), int(t.ksmZeroPages), bytes(r.sources.reduce((a, s) => a + s.ksmProcessProfit, 0))])
  }
  out.push(
    table(
      [
        { header: "source" },
        { header: "name" },
        { header: "pages", right: true },
        { header: "zero", right: true },
        { header: "dup", right: true },
        { header: "fork-shared", right: true },
        { header: "ksm_merging_pages", right: true },
        { header: "ksm_zero_pages", right: true },
        { header: "ksm_process_profit", right: true },
      ],
      srcRows,
    ),
  )

  const w = r.whyNotMore
  out.push("", "why not more")
  const wrow = (name: string, pages: number, note: string): string[] => [name, int(pages), bytes(pages * ps), note]
  const wrows: string[][] = []
  if (nP > 0) {
    wrows.push(wrow("file-backed or shared", w.fileOrSharedPages, "resident page cache, shmem, shared mappings: KSM merges private anonymous pages only"))
    wrows.push(wrow("forked, one page", w.cowSharedPages, "copies already one physical page (fork/COW): nothing to save"))
    if (w.sharedExcludedPages > 0) wrows.push(wrow("forked, left out", w.sharedExcludedPages, "mapped by several processes, physical page not visible without root"))
    wrows.push(wrow("not opted in", w.notOptedInPages, "in mappings without VM_MERGEABLE (madvise / prctl PR_SET_MEMORY_MERGE)"))
    wrows.push(wrow("on the zero page", w.zeroPageMappedPages, "read but never written: already free, ksmd skips them"))
    wrows.push(wrow("swapped out", w.swappedPages, "not read"))
  }
  wrows.push(wrow("unique content", w.uniquePages, "no other page has it"))
  wrows.push(wrow("dups, same offset", w.duplicatesSameOffset, "a copy at the same address / file offset in another source"))
  wrows.push(wrow("dups, elsewhere", w.duplicatesElsewhere, "copies only at other offsets (other layout, or within one source)"))
  out.push(table([{ header: "reason" }, { header: "pages", right: true }, { header: "size", right: true }, { header: "" }], wrows))
  for (const h of w.hints) out.push(`  - ${h}`)

  if (mappingsN > 0 && nP > 0) {
    const all = r.sources.flatMap((s) => (s.kind === "pid" ? s.regions.map((g) => ({ s, g })) : []))
    all.sort((a, b) => b.g.ksmMergingPages + b.g.ksmZeroPages - (a.g.ksmMergingPages + a.g.ksmZeroPages) || b.g.pages - a.g.pages || a.g.start - b.g.start)
    const shown = all.slice(0, mappingsN)
    out.push("", `per mapping (top ${shown.length} of ${all.length} by pages merging)`)
    out.push(
      table(
        [{ header: "pid", right: true }, { header: "mapping" }, { header: "mg" }, { header: "pages", right: true }, { header: "zero", right: true }, { header: "dup", right: true }, { header: "merging", right: true }],
        shown.map(({ s, g }) => [s.id, `${hexAddr(g.start)} ${shorten(g.label.split(" ").slice(1).join(" "), 48)}`, g.mergeable ? "yes" : "no", int(g.pages), int(g.zeroPages), int(g.duplicatePages), int(g.ksmMergingPages + g.ksmZeroPages)]),
      ),
    )
  }

  if (r.top.length > 0) {
    out.push("", "most duplicated contents")
    out.push(
      table(
        [{ header: "copies", right: true }, { header: "content" }],
        r.top.map((c) => {
          const what = c.digest === "zero" ? "all zero" : c.uniformByte !== null ? `every byte 0x${c.uniformByte.toString(16).padStart(2, "0")}` : `${c.previewHex.slice(0, 47)}  |${c.previewAscii.slice(0, 16)}|`
          return [int(c.count), what]
        }),
      ),
    )
  }
  out.push("")
  return out.join("\n")
}

function shorten(s: string, n: number): string {
  return s.length <= n ? s : `...${s.slice(s.length - n + 3)}`
}
