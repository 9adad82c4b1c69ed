/**
 * `sksm estimate`: how much would KSM-style merging save on these processes or memory images?
 * Streams every mergeable page through a {@link PageCensus} and prints KSM's counters as the
 * kernel would report them after merging, with a per-process and per-mapping breakdown and the
 * most duplicated contents. See census.ts for the method and its memory bound.
 */
import { intFlag, parse } from "./args.ts"
import { type CensusTotals, PageCensus, type RegionCounts, type TopContent } from "./census.ts"
import { usageError } from "./errors.ts"
import { ascii, bytes, hex, int, pct, Progress, table } from "./format.ts"
import { hexAddr, type Mapping, openFile, openProcess, readFile, readProcess, type SourceSummary, systemPageSize } from "./sources.ts"

const COMMAND = "estimate"

/** The JSON document `sksm estimate --json` prints. */
export interface EstimateReport {
  readonly pageSize: number
  readonly maxPageSharing: number
  readonly useZeroPages: boolean
  readonly totals: CensusTotals & { readonly scannedBytes: number; readonly savedPercent: number; readonly profitPercent: number; readonly unreadablePages: number }
  readonly sources: readonly (SourceSummary & { readonly counts: Omit<RegionCounts, "label" | "start" | "end" | "source">; readonly regions: readonly RegionCounts[] })[]
  readonly top: readonly { count: number; digest: string; uniformByte: number | null; previewHex: string; previewAscii: string }[]
  readonly seconds: number
  /** Bytes of bookkeeping the census held at the end (the memory bound in practice). */
  readonly censusBytes: number
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
  const pids = (values.pid ?? []).map((p) => {
    if (!/^\d+$/.test(p) || Number(p) < 1) throw usageError(`--pid must be a process id (a positive integer), got "${p}"`, COMMAND)
    return Number(p)
  })
  if (pids.length === 0 && positionals.length === 0) throw usageError("nothing to estimate: give --pid PID or memory-image FILEs", COMMAND)
  const maxPageSharing = intFlag(COMMAND, "max-page-sharing", values["max-page-sharing"], 256, 2)
  const topN = intFlag(COMMAND, "top", values.top, 10, 0, 1000)
  const mappingsN = intFlag(COMMAND, "mappings", values.mappings, 10, 0)
  const pageSize = values["page-size"] !== undefined ? intFlag(COMMAND, "page-size", values["page-size"], 4096, 512, 1 << 21) : pids.length > 0 ? systemPageSize() : 4096
  if ((pageSize & (pageSize - 1)) !== 0) throw usageError(`--page-size must be a power of two, got ${pageSize}`, COMMAND)
  if (pids.length > 0 && pageSize !== systemPageSize()) throw usageError(`--page-size ${pageSize} differs from this machine's ${systemPageSize()}; it applies to image files only`, COMMAND)
  const useZeroPages = values["use-zero-pages"] === true

  // Open everything first, so a bad pid or file fails before minutes of reading.
  const procs: { pid: number; summary: SourceSummary; mappings: Mapping[] }[] = []
  for (const pid of pids) procs.push({ pid, ...openProcess(pid) })
  const files = positionals.map((path) => ({ path, summary: openFile(path) }))
  const summaries = [...procs.map((p) => p.summary), ...files.map((f) => f.summary)]

  const census = new PageCensus({ pageSize, maxPageSharing, useZeroPages })
  const expected = summaries.reduce((s, x) => s + x.expectedBytes, 0)
  const progress = new Progress("reading", expected, values.progress ?? process.stderr.isTTY === true)
  const t0 = performance.now()
  try {
    let source = 0
    for (const p of procs) readProcess(p.pid, source++, p.mappings, census, progress)
    for (const f of files) readFile(f.path, source++, census, progress)
  } finally {
    progress.done()
  }
  const report = buildReport(census, summaries, topN, (performance.now() - t0) / 1000)
  process.stdout.write(values.json === true ? `${JSON.stringify(report, null, 2)}\n` : render(report, mappingsN))
}

function sum(regions: readonly RegionCounts[]) {
  const c = { pages: 0, zeroPages: 0, duplicatePages: 0, pagesSharing: 0, pagesShared: 0, ksmZeroPages: 0, unreadable: 0 }
  for (const r of regions) {
    c.pages += r.pages
    c.zeroPages += r.zeroPages
    c.duplicatePages += r.duplicatePages
    c.pagesSharing += r.pagesSharing
    c.pagesShared += r.pagesShared
    c.ksmZeroPages += r.ksmZeroPages
    c.unreadable += r.unreadable
  }
  return c
}

/** Assemble the report from a finished census. */
export function buildReport(census: PageCensus, summaries: readonly SourceSummary[], topN: number, seconds: number): EstimateReport {
  const t = census.totals()
  const regions = census.regions()
  const ps = census.pageSize
  const scannedBytes = t.pages * ps
  const sources = summaries.map((s, i) => {
    const mine = regions.filter((r) => r.source === i)
    return { ...s, counts: sum(mine), regions: mine }
  })
  const unreadablePages = sources.reduce((a, s) => a + s.counts.unreadable, 0)
  const top = census.top(topN).map((c: TopContent) => ({
    count: c.count,
    digest: c.digest,
    uniformByte: c.uniformByte >= 0 ? c.uniformByte : null,
    previewHex: hex(c.preview, 32),
    previewAscii: ascii(c.preview, 32),
  }))
  return {
    pageSize: ps,
    maxPageSharing: census.maxPageSharing,
    useZeroPages: census.useZeroPages,
    totals: {
      ...t,
      scannedBytes,
      savedPercent: scannedBytes === 0 ? 0 : (100 * t.savedBytes) / scannedBytes,
      profitPercent: scannedBytes === 0 ? 0 : (100 * t.profitBytes) / scannedBytes,
      unreadablePages,
    },
    sources,
    top,
    seconds,
    censusBytes: census.bytesHeld,
  }
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
  out.push(`page size ${bytes(ps)}, max_page_sharing ${r.maxPageSharing}, use_zero_pages ${r.useZeroPages ? "on" : "off"}`)
  out.push("")
  const row = (name: string, pages: number, note = "", size = true): string[] => [name, int(pages), size ? bytes(pages * ps) : "", note]
  out.push(
    table(
      [{ header: "what" }, { header: "pages", right: true }, { header: "size", right: true }, { header: "" }],
      [
        row("scanned", t.pages, nP > 0 ? "present private anonymous pages (processes), every page (files)" : "every page of the files"),
        row("zero pages", t.zeroPages, pct(t.zeroPages, t.pages)),
        row("duplicate pages", t.duplicatePages, `${pct(t.duplicatePages, t.pages)} (non-zero, in ${int(t.duplicatedContents)} contents seen twice or more)`),
        row("distinct contents", t.distinctContents, "", false),
        row("pages_shared", t.pagesShared, "frames KSM would keep for merged contents"),
        row("pages_sharing", t.pagesSharing, "pages merged away onto them"),
        row("pages_unshared", t.pagesUnshared, "unique pages KSM would keep scanning"),
        row("ksm_zero_pages", t.ksmZeroPages, r.useZeroPages ? "zero pages mapped to the zero page" : "(use_zero_pages off: zero pages merge like any content)"),
      ],
    ),
  )
  out.push("")
  out.push(`  saved           ${bytes(t.savedBytes).padStart(10)}  ${pct(t.savedBytes, t.scannedBytes).padStart(6)} of scanned   (pages_sharing + ksm_zero_pages) x page size`)
  out.push(`  general_profit  ${bytes(t.profitBytes).padStart(10)}  ${pct(t.profitBytes, t.scannedBytes).padStart(6)} of scanned   minus 64 B of rmap item per scanned page`)
  if (t.unreadablePages > 0) out.push(`  (${int(t.unreadablePages)} present pages could not be read and are not counted)`)

  out.push("", "per source")
  out.push(
    table(
      [{ header: "source" }, { header: "name" }, { header: "pages", right: true }, { header: "zero", right: true }, { header: "dup", right: true }, { header: "sharing", right: true }, { header: "saved", right: true }, { header: "%", right: true }],
      r.sources.map((s) => {
        const c = s.counts
        const saved = (c.pagesSharing + c.ksmZeroPages) * ps
        return [s.kind === "pid" ? `pid ${s.id}` : s.id, s.name, int(c.pages), int(c.zeroPages), int(c.duplicatePages), int(c.pagesSharing), bytes(saved), pct(c.pagesSharing + c.ksmZeroPages, c.pages)]
      }),
    ),
  )

  if (mappingsN > 0 && nP > 0) {
    const all = r.sources.flatMap((s) => (s.kind === "pid" ? s.regions.map((g) => ({ s, g })) : []))
    all.sort((a, b) => b.g.pagesSharing + b.g.ksmZeroPages - (a.g.pagesSharing + a.g.ksmZeroPages) || b.g.pages - a.g.pages)
    const shown = all.slice(0, mappingsN)
    out.push("", `per mapping (top ${shown.length} of ${all.length} by saving)`)
    out.push(
      table(
        [{ header: "pid", right: true }, { header: "mapping" }, { header: "pages", right: true }, { header: "zero", right: true }, { header: "dup", right: true }, { header: "saved", right: true }],
        shown.map(({ s, g }) => [s.id, `${hexAddr(g.start)} ${shorten(g.label.split(" ").slice(1).join(" "), 48)}`, int(g.pages), int(g.zeroPages), int(g.duplicatePages), bytes((g.pagesSharing + g.ksmZeroPages) * ps)]),
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
