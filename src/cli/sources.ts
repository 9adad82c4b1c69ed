/**
 * Where the estimator's pages come from: live Linux processes (/proc/PID/smaps to find the
 * mappings, /proc/PID/pagemap to find present anonymous pages, /proc/PID/mem to read them) and
 * raw memory-image files. Both stream fixed-size chunks into a {@link PageCensus}; nothing is
 * kept but the census.
 *
 * Which pages of a process count: those KSM could merge, i.e. present pages of private mappings
 * that are exclusively anonymous (pagemap bit 63 set, bit 61 "file-page or shared-anon" clear).
 * That includes copy-on-write copies of private file mappings (relocated .data, patched code),
 * which KSM merges too, and excludes page-cache pages, shared memory and swapped-out pages.
 */
import { closeSync, openSync, readFileSync, readSync, statSync } from "node:fs"
import type { PageCensus } from "./census.ts"
import { CliError, fsError } from "./errors.ts"
import type { Progress } from "./format.ts"

/** What was read, for the report. */
export interface SourceSummary {
  readonly kind: "pid" | "file"
  /** The pid or the path. */
  readonly id: string
  /** Process name (comm) or file name. */
  readonly name: string
  /** Bytes this source will read (for the progress bar): the smaps Anonymous total, or the file size. */
  readonly expectedBytes: number
}

/** A process mapping, from /proc/PID/smaps. */
export interface Mapping {
  readonly start: number
  readonly end: number
  readonly perms: string
  readonly path: string
  /** smaps "Anonymous:" in bytes. */
  anonymous: number
}

/** Bytes read from /proc/PID/mem or a file per read() call. */
const CHUNK_BYTES = 1 << 20
/** pagemap entries read per call. */
const PAGEMAP_ENTRIES = 8192

/** The page size of this machine (smaps KernelPageSize of our own first mapping), 4096 if unknown. */
export function systemPageSize(): number {
  try {
    const m = /KernelPageSize:\s+(\d+) kB/.exec(readFileSync("/proc/self/smaps_rollup", "utf8")) ?? /KernelPageSize:\s+(\d+) kB/.exec(readFileSync("/proc/self/smaps", "utf8"))
    if (m !== null) return Number(m[1]) * 1024
  } catch {
    // Not Linux, or /proc not mounted: fall through.
  }
  return 4096
}

/** One line explaining how to get the rights /proc/PID/mem needs. */
function noRights(pid: number, what: string): CliError {
  return new CliError(
    `cannot read ${what} of pid ${pid}: permission denied (reading another process's memory needs root, CAP_SYS_PTRACE, or ptrace rights over it: same user and kernel.yama.ptrace_scope=0, or being its parent)`,
  )
}

/** Check a pid and read its name and mappings; throws a one-line CliError. */
export function openProcess(pid: number): { summary: SourceSummary; mappings: Mapping[] } {
  if (process.platform !== "linux") throw new CliError(`--pid needs Linux /proc (this is ${process.platform}); use memory-image files instead`)
  try {
    statSync(`/proc/${pid}`)
  } catch {
    throw new CliError(`no such process: ${pid}`)
  }
  let name = "?"
  try {
    name = readFileSync(`/proc/${pid}/comm`, "utf8").trim()
  } catch {
    // comm is world-readable; a race with exit is reported below.
  }
  let smaps: string
  try {
    smaps = readFileSync(`/proc/${pid}/smaps`, "utf8")
  } catch (e) {
    const code = (e as { code?: string }).code
    if (code === "EACCES" || code === "EPERM") throw noRights(pid, "the mappings")
    if (code === "ENOENT" || code === "ESRCH") throw new CliError(`no such process: ${pid} (it exited)`)
    throw fsError(e, `/proc/${pid}/smaps`)
  }
  const mappings = parseSmaps(smaps)
  let expected = 0
  for (const m of mappings) expected += m.anonymous
  return { summary: { kind: "pid", id: String(pid), name, expectedBytes: expected }, mappings }
}

/** Parse /proc/PID/smaps into the private mappings that hold anonymous pages. */
export function parseSmaps(text: string): Mapping[] {
  const out: Mapping[] = []
  let cur: Mapping | null = null
  for (const line of text.split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line)
    if (head !== null) {
      cur = { start: parseInt(head[1]!, 16), end: parseInt(head[2]!, 16), perms: head[3]!, path: head[4]!, anonymous: 0 }
      // Private mappings only (KSM never merges shared ones); skip the kernel's vsyscall page,
      // whose address does not fit a double anyway.
      if (cur.perms[3] === "p" && cur.path !== "[vsyscall]" && Number.isSafeInteger(cur.end)) out.push(cur)
      continue
    }
    const anon = /^Anonymous:\s+(\d+) kB/.exec(line)
    if (anon !== null && cur !== null) cur.anonymous = Number(anon[1]) * 1024
  }
  return out.filter((m) => m.anonymous > 0)
}

/** Label of a mapping for the report: "[heap]", a file name, or "[anon]". */
export function mappingLabel(m: Mapping): string {
  return m.path === "" ? "[anon]" : m.path
}

/**
 * Stream the mergeable pages of `pid` into the census, one region per mapping. Pages that
 * vanish or fail to read between pagemap and mem (the process keeps running) are counted as
 * unreadable, not fatal.
 */
export function readProcess(pid: number, source: number, mappings: readonly Mapping[], census: PageCensus, progress: Progress): void {
  const ps = census.pageSize
  let mem: number
  let pagemap: number
  try {
    pagemap = openSync(`/proc/${pid}/pagemap`, "r")
  } catch (e) {
    const code = (e as { code?: string }).code
    if (code === "EACCES" || code === "EPERM") throw noRights(pid, "the page map")
    throw new CliError(`no such process: ${pid} (it exited)`)
  }
  try {
    mem = openSync(`/proc/${pid}/mem`, "r")
  } catch (e) {
    closeSync(pagemap)
    const code = (e as { code?: string }).code
    if (code === "EACCES" || code === "EPERM") throw noRights(pid, "the memory")
    throw new CliError(`no such process: ${pid} (it exited)`)
  }
  const pm = Buffer.alloc(PAGEMAP_ENTRIES * 8)
  const pmWords = new Uint32Array(pm.buffer, pm.byteOffset, PAGEMAP_ENTRIES * 2)
  const buf = Buffer.alloc(CHUNK_BYTES)
  const maxRun = CHUNK_BYTES / ps
  try {
    for (const m of mappings) {
      const region = census.region(source, `${hexAddr(m.start)}-${hexAddr(m.end)} ${m.perms} ${mappingLabel(m)}`, m.start, m.end)
      const pages = (m.end - m.start) / ps
      for (let p0 = 0; p0 < pages; p0 += PAGEMAP_ENTRIES) {
        const n = Math.min(PAGEMAP_ENTRIES, pages - p0)
        const base = m.start + p0 * ps
        let got = 0
        try {
          got = readSync(pagemap, pm, 0, n * 8, (base / ps) * 8) / 8
        } catch {
          got = 0 // the mapping went away
        }
        // Walk runs of wanted pages (present, exclusively anonymous) and read each run.
        let i = 0
        while (i < got) {
          if (!wanted(pmWords[i * 2 + 1]!)) {
            i++
            continue
          }
          let j = i + 1
          while (j < got && j - i < maxRun && wanted(pmWords[j * 2 + 1]!)) j++
          readRun(mem, base + i * ps, j - i, buf, ps, census, region)
          progress.advance((j - i) * ps)
          i = j
        }
      }
    }
  } finally {
    closeSync(mem)
    closeSync(pagemap)
  }
}

/** pagemap high word: bit 63 present, bit 61 file-page or shared-anon. */
function wanted(hi: number): boolean {
  return (hi & 0x80000000) !== 0 && (hi & 0x20000000) === 0
}

function readRun(fd: number, addr: number, pages: number, buf: Buffer, ps: number, census: PageCensus, region: number): void {
  let got = 0
  try {
    got = readSync(fd, buf, 0, pages * ps, addr)
  } catch {
    // EIO somewhere in the run: retry page by page to keep the readable ones.
    for (let k = 0; k < pages; k++) {
      try {
        if (readSync(fd, buf, 0, ps, addr + k * ps) === ps) census.addPage(region, buf, 0)
        else census.unreadable(region, 1)
      } catch {
        census.unreadable(region, 1)
      }
    }
    return
  }
  const full = Math.floor(got / ps)
  for (let k = 0; k < full; k++) census.addPage(region, buf, k * ps)
  if (full < pages) census.unreadable(region, pages - full)
}

/** Check a memory-image file; throws a one-line CliError. */
export function openFile(path: string): SourceSummary {
  let size: number
  try {
    const st = statSync(path)
    if (st.isDirectory()) throw Object.assign(new Error("dir"), { code: "EISDIR" })
    size = st.size
  } catch (e) {
    throw fsError(e, path)
  }
  try {
    closeSync(openSync(path, "r"))
  } catch (e) {
    throw fsError(e, path)
  }
  return { kind: "file", id: path, name: path.split("/").pop() ?? path, expectedBytes: size }
}

/** Stream a raw memory image into the census as one region; a partial last page is zero-padded. */
export function readFile(path: string, source: number, census: PageCensus, progress: Progress): void {
  const ps = census.pageSize
  let fd: number
  try {
    fd = openSync(path, "r")
  } catch (e) {
    throw fsError(e, path)
  }
  const buf = Buffer.alloc(CHUNK_BYTES)
  let pos = 0
  try {
    const size = statSync(path).size
    const region = census.region(source, path, 0, size)
    for (;;) {
      let got: number
      try {
        got = readSync(fd, buf, 0, CHUNK_BYTES, pos)
      } catch (e) {
        throw fsError(e, path)
      }
      if (got === 0) break
      const full = Math.floor(got / ps)
      for (let k = 0; k < full; k++) census.addPage(region, buf, k * ps)
      const rest = got - full * ps
      if (rest > 0) {
        buf.fill(0, got, full * ps + ps)
        census.addPage(region, buf, full * ps)
      }
      pos += got
      progress.advance(got)
      if (rest > 0) break
    }
  } finally {
    closeSync(fd)
  }
}

/** An address as lowercase hex without a prefix, like /proc/PID/maps. */
export function hexAddr(a: number): string {
  return a.toString(16).padStart(12, "0")
}
