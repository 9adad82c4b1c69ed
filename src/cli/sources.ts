/**
 * Where the estimator's pages come from: live Linux processes (/proc/PID/smaps to find the
 * mappings, /proc/PID/pagemap to find present anonymous pages, /proc/PID/mem to read them) and
 * raw memory-image files. Both stream fixed-size chunks into a {@link PageCensus}; nothing is
 * kept but the census.
 *
 * Which pages of a process count: those KSM could merge, i.e. present anonymous pages of private
 * mappings (pagemap bit 63 "present" set, bit 61 "file-page or shared-anon" clear). That includes
 * copy-on-write copies of private file mappings (relocated .data, patched code), which KSM merges
 * too, and excludes page-cache pages, shared memory and swapped-out pages.
 *
 * Pages mapped by several processes (fork/COW: bit 56 "exclusively mapped" clear) are one
 * physical page. With PFN access (root: CAP_SYS_ADMIN shows bits 0-54) each is passed to the
 * census with its page frame number, so that it is counted once, as the kernel would; pages on
 * the kernel's zero page (a read of untouched memory) are skipped, as ksmd skips them, and pages
 * already on a KSM page are marked (both from /proc/kpageflags). Without PFN access they are left
 * out and counted as excluded.
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
  /** For a process: what smaps and ksm_stat say about memory KSM cannot or may not merge. */
  readonly memory?: ProcessMemory
}

/** A process's memory from smaps (bytes) and its KSM state from /proc/PID/ksm_stat. */
export interface ProcessMemory {
  /** Resident set (smaps Rss, every mapping). */
  readonly rssBytes: number
  /** Resident anonymous memory of private mappings (what the census reads). */
  readonly anonymousBytes: number
  /** Resident memory that is file-backed or shared (page cache, shmem, shared mappings): never merged. */
  readonly fileOrSharedBytes: number
  /** Swapped out: not read, not counted. */
  readonly swapBytes: number
  /** Anonymous memory in mappings without VM_MERGEABLE (no "mg" in smaps VmFlags). */
  readonly notOptedInBytes: number
  /** PR_SET_MEMORY_MERGE is set (ksm_stat ksm_merge_any), or null where unreadable. */
  readonly mergeAny: boolean | null
  /** The kernel's current ksm_stat counters, or null where unreadable. */
  readonly ksmStat: Readonly<Record<string, number>> | null
}

/** A process mapping, from /proc/PID/smaps. */
export interface Mapping {
  readonly start: number
  readonly end: number
  readonly perms: string
  readonly path: string
  /** smaps "Anonymous:" in bytes. */
  anonymous: number
  /** smaps "Rss:" in bytes. */
  rss: number
  /** smaps "Swap:" in bytes. */
  swap: number
  /** VM_MERGEABLE ("mg" in smaps VmFlags). */
  mergeable: boolean
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

/** One line explaining how to get the rights /proc/PID/mem needs, or what is missing when we are root. */
function noRights(pid: number, what: string): CliError {
  const head = `cannot read ${what} of pid ${pid}: permission denied`
  if (process.getuid?.() === 0) return new CliError(`${head} although running as root: ${rootMissing()}`)
  return new CliError(`${head} (reading another process's memory needs root, CAP_SYS_PTRACE, or ptrace rights over it: same user and kernel.yama.ptrace_scope=0, or being its parent)`)
}

/** Capability bits of /proc/self/status CapEff. */
const CAP_SYS_PTRACE = 19

/** What a root process lacks when ptrace access is still denied (a container, a sandbox, an LSM). */
export function rootMissing(status: string = readOr("/proc/self/status"), ptraceScope: string = readOr("/proc/sys/kernel/yama/ptrace_scope"), uidMap: string = readOr("/proc/self/uid_map")): string {
  const capEff = /^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1]
  if (capEff !== undefined && (BigInt(`0x${capEff}`) & (1n << BigInt(CAP_SYS_PTRACE))) === 0n) return "this process lacks CAP_SYS_PTRACE (capabilities dropped, as in many containers); run with --cap-add SYS_PTRACE or on the host"
  if (ptraceScope.trim() === "3") return "kernel.yama.ptrace_scope=3 forbids ptrace access for everyone, root included (until reboot)"
  const map = uidMap.trim().split(/\s+/)
  if (map.length >= 3 && !(map[0] === "0" && map[1] === "0" && map[2] === "4294967295")) return `root only inside a user namespace (uid_map "${uidMap.trim().replace(/\s+/g, " ")}"): the process belongs to a namespace above it; run from the host's namespace`
  return "a security policy (AppArmor, SELinux or seccomp) denies ptrace access; check the sandbox's profile"
}

function readOr(path: string): string {
  try {
    return readFileSync(path, "utf8")
  } catch {
    return ""
  }
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
  const all = parseSmaps(smaps)
  const mappings = all.filter((m) => m.perms[3] === "p" && m.path !== "[vsyscall]" && Number.isSafeInteger(m.end) && m.anonymous > 0)
  let expected = 0
  let rss = 0
  let anon = 0
  let swap = 0
  let notOptedIn = 0
  for (const m of all) {
    rss += m.rss
    swap += m.swap
  }
  for (const m of mappings) {
    expected += m.anonymous
    anon += m.anonymous
    if (!m.mergeable) notOptedIn += m.anonymous
  }
  const ksmStat = parseKsmStat(readOr(`/proc/${pid}/ksm_stat`))
  const memory: ProcessMemory = {
    rssBytes: rss,
    anonymousBytes: anon,
    fileOrSharedBytes: Math.max(0, rss - anon),
    swapBytes: swap,
    notOptedInBytes: notOptedIn,
    mergeAny: ksmStat === null || ksmStat["ksm_merge_any"] === undefined ? null : ksmStat["ksm_merge_any"] === 1,
    ksmStat,
  }
  return { summary: { kind: "pid", id: String(pid), name, expectedBytes: expected, memory }, mappings }
}

/** /proc/PID/ksm_stat as numbers ("yes"/"no" as 1/0); null when empty or unreadable. */
export function parseKsmStat(text: string): Record<string, number> | null {
  const out: Record<string, number> = {}
  for (const line of text.split("\n")) {
    const m = /^(\w+)\s+(\S+)$/.exec(line.trim())
    if (m === null) continue
    out[m[1]!] = m[2] === "yes" ? 1 : m[2] === "no" ? 0 : Number(m[2])
  }
  return Object.keys(out).length === 0 ? null : out
}

/** Parse /proc/PID/smaps into its mappings (all of them: the caller picks). */
export function parseSmaps(text: string): Mapping[] {
  const out: Mapping[] = []
  let cur: Mapping | null = null
  for (const line of text.split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line)
    if (head !== null) {
      cur = { start: parseInt(head[1]!, 16), end: parseInt(head[2]!, 16), perms: head[3]!, path: head[4]!, anonymous: 0, rss: 0, swap: 0, mergeable: false }
      out.push(cur)
      continue
    }
    if (cur === null) continue
    const field = /^(Anonymous|Rss|Swap):\s+(\d+) kB/.exec(line)
    if (field !== null) {
      const v = Number(field[2]) * 1024
      if (field[1] === "Anonymous") cur.anonymous = v
      else if (field[1] === "Rss") cur.rss = v
      else cur.swap = v
      continue
    }
    if (line.startsWith("VmFlags:")) cur.mergeable = line.slice(8).trim().split(/\s+/).includes("mg")
  }
  return out
}

/** Label of a mapping for the report: "[heap]", a file name, or "[anon]". */
export function mappingLabel(m: Mapping): string {
  return m.path === "" ? "[anon]" : m.path
}

/** /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h). */
const KPF_KSM = 21
const KPF_ZERO_PAGE = 24

/** Page flags by PFN from /proc/kpageflags (root), cached; null where unreadable. */
class PageFlags {
  #fd: number | null | undefined
  readonly #buf = Buffer.alloc(8)
  readonly #cache = new Map<number, number>()

  /** The low 32 flag bits of `pfn`, or -1 if unknown. */
  get(pfn: number): number {
    const hit = this.#cache.get(pfn)
    if (hit !== undefined) return hit
    if (this.#fd === undefined) {
      try {
        this.#fd = openSync("/proc/kpageflags", "r")
      } catch {
        this.#fd = null
      }
    }
    let v = -1
    if (this.#fd !== null) {
      try {
        if (readSync(this.#fd, this.#buf, 0, 8, pfn * 8) === 8) v = this.#buf.readUInt32LE(0)
      } catch {
        // beyond the last PFN, or not allowed: unknown
      }
    }
    // Only the zero page and KSM pages matter, and they are few: cache those.
    if (v >= 0 && (v & ((1 << KPF_ZERO_PAGE) | (1 << KPF_KSM))) !== 0) this.#cache.set(pfn, v)
    return v
  }

  close(): void {
    if (typeof this.#fd === "number") closeSync(this.#fd)
    this.#fd = null
  }
}

/** What the reader found about a process's pages besides the census. */
export interface ReadStats {
  /** Pages mapped by several processes whose physical page could not be seen (no PFN access). */
  sharedExcluded: number
  /** Pages mapped to the kernel's zero page (read but never written): ksmd skips them. */
  zeroPageMapped: number
  /** Whether page frame numbers were visible (root / CAP_SYS_ADMIN). */
  pfns: boolean
}

/**
 * Stream the mergeable pages of `pid` into the census, one region per mapping. Pages that
 * vanish or fail to read between pagemap and mem (the process keeps running) are counted as
 * unreadable, not fatal.
 */
export function readProcess(pid: number, source: number, mappings: readonly Mapping[], census: PageCensus, progress: Progress): ReadStats {
  const ps = census.pageSize
  const stats: ReadStats = { sharedExcluded: 0, zeroPageMapped: 0, pfns: false }
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
  const flags = new PageFlags()
  const pm = Buffer.alloc(PAGEMAP_ENTRIES * 8)
  const pmWords = new Uint32Array(pm.buffer, pm.byteOffset, PAGEMAP_ENTRIES * 2)
  // Per entry: -2 skip, -1 read (mapped only here), >= 0 read (possibly shared: its PFN).
  const pfnOf = new Float64Array(PAGEMAP_ENTRIES)
  const ksmOf = new Uint8Array(PAGEMAP_ENTRIES)
  const buf = Buffer.alloc(CHUNK_BYTES)
  const maxRun = CHUNK_BYTES / ps
  try {
    for (const m of mappings) {
      const region = census.region(source, `${hexAddr(m.start)}-${hexAddr(m.end)} ${m.perms} ${mappingLabel(m)}`, m.start, m.end, m.mergeable)
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
        for (let i = 0; i < got; i++) {
          const hi = pmWords[i * 2 + 1]!
          ksmOf[i] = 0
          // bit 63 present, bit 61 file-page or shared-anon, bit 56 exclusively mapped.
          if ((hi & 0x80000000) === 0 || (hi & 0x20000000) !== 0) {
            pfnOf[i] = -2
            continue
          }
          if ((hi & 0x01000000) !== 0) {
            pfnOf[i] = -1
            continue
          }
          const pfn = (hi & 0x7fffff) * 0x100000000 + pmWords[i * 2]!
          if (pfn === 0) {
            // No PFN access: the physical page is unknown, leave it out.
            pfnOf[i] = -2
            stats.sharedExcluded++
            census.excludeShared(region, 1)
            continue
          }
          stats.pfns = true
          const f = flags.get(pfn)
          if (f >= 0 && (f & (1 << KPF_ZERO_PAGE)) !== 0) {
            pfnOf[i] = -2
            stats.zeroPageMapped++
            continue
          }
          if (f >= 0 && (f & (1 << KPF_KSM)) !== 0) ksmOf[i] = 1
          pfnOf[i] = pfn
        }
        if (!stats.pfns) for (let i = 0; i < got; i++) if (pfnOf[i] === -1 && pmWords[i * 2]! !== 0) stats.pfns = true
        // Walk runs of pages to read and read each run.
        let i = 0
        while (i < got) {
          if (pfnOf[i] === -2) {
            i++
            continue
          }
          let j = i + 1
          while (j < got && j - i < maxRun && pfnOf[j] !== -2) j++
          const first = i
          readRun(mem, base + i * ps, j - i, buf, ps, census, region, (k) => [base / ps + first + k, pfnOf[first + k]!, ksmOf[first + k] === 1])
          progress.advance((j - i) * ps)
          i = j
        }
      }
    }
  } finally {
    flags.close()
    closeSync(mem)
    closeSync(pagemap)
  }
  return stats
}

function readRun(fd: number, addr: number, pages: number, buf: Buffer, ps: number, census: PageCensus, region: number, info: (k: number) => [number, number, boolean]): void {
  let got = 0
  const add = (off: number, k: number) => {
    const [page, pfn, ksm] = info(k)
    census.addPage(region, buf, off, page, pfn, ksm)
  }
  try {
    got = readSync(fd, buf, 0, pages * ps, addr)
  } catch {
    // EIO somewhere in the run: retry page by page to keep the readable ones.
    for (let k = 0; k < pages; k++) {
      try {
        if (readSync(fd, buf, 0, ps, addr + k * ps) === ps) add(0, k)
        else census.unreadable(region, 1)
      } catch {
        census.unreadable(region, 1)
      }
    }
    return
  }
  const full = Math.floor(got / ps)
  for (let k = 0; k < full; k++) add(k * ps, k)
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
  // Whole pages per read, even for pages larger than a chunk.
  const chunk = Math.max(CHUNK_BYTES, ps)
  const buf = Buffer.alloc(chunk)
  let pos = 0
  try {
    const size = statSync(path).size
    const region = census.region(source, path, 0, size)
    for (;;) {
      let got: number
      try {
        got = readSync(fd, buf, 0, chunk, pos)
      } catch (e) {
        throw fsError(e, path)
      }
      if (got === 0) break
      const full = Math.floor(got / ps)
      const page0 = pos / ps
      for (let k = 0; k < full; k++) census.addPage(region, buf, k * ps, page0 + k)
      const rest = got - full * ps
      if (rest > 0) {
        buf.fill(0, got, full * ps + ps)
        census.addPage(region, buf, full * ps, page0 + full)
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
