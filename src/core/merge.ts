/**
 * The merge core: the single place where pages are merged, unmerged and counted.
 * merge() (MADV_MERGE) and both scanner policies drive it; they share one table and one
 * set of counters, so a page merged by one is a stable hit for the other.
 *
 * Per page, in the kernel's order: write-protect (clear PAGE_WRITABLE), compare the bytes
 * in full against the candidate, then remap. The key only finds candidates.
 */
import { Busy, InvalidArgument } from "../errors.ts"
import { FRAME_KSM, FRAME_SHARED, type FramePool, type SharingObserver, ZERO_FRAME } from "../memory/frames.ts"
import { PAGE_KSM_ZERO, PAGE_MERGED, PAGE_PINNED, PAGE_UFFD_WP, PAGE_WRITABLE } from "../memory/flags.ts"
import type { PagedSpace } from "../memory/space.ts"
import { checkBool } from "../memory/validate.ts"
import { type ChecksumFunction, domainSalt, fromBytesChecksum, fullChecksum, makeSampledKey, type PageHash } from "./checksum.ts"
import { MergeTable } from "./table.ts"

/** What merge() did, page by page. */
export interface MergeReport {
  /** Pages examined. */
  scanned: number
  /** Pages that now share a frame with another page. */
  merged: number
  /** Pages mapped to the zero frame (useZeroPages). */
  zeroMapped: number
  /** Pages that entered the table write-protected with no partner yet. */
  inserted: number
  /** Pages that were already merged or merge-placed zero pages. */
  alreadyMerged: number
  skipped: {
    /** Never-touched pages: nothing to merge. */
    unpopulated: number
    /** Pinned pages: never merged. */
    pinned: number
    /** Pages whose key already had `maxCandidates` entries: not inserted, to bound lookups. */
    crowded: number
  }
}

/** Outcome of one page, returned by {@link MergeCore.mergePage}. */
export const Outcome = {
  Merged: 0,
  ZeroMapped: 1,
  Inserted: 2,
  AlreadyMerged: 3,
  Unpopulated: 4,
  Pinned: 5,
  Crowded: 6,
} as const
export type Outcome = (typeof Outcome)[keyof typeof Outcome]

/** Options of the merge core, given through `new Engine(...)`. */
export interface MergeCoreOptions {
  /** Map all-zero pages to the zero frame instead of merging them as content. @default true */
  readonly useZeroPages?: boolean
  /** Most pages one frame may be merged with; more start a chain of dups. @default 256 */
  readonly maxPageSharing?: number
  /** Let pages of different domains merge (zero pages always may). @default false */
  readonly mergeAcrossDomains?: boolean
  /** Replace the table key (tests inject colliding ones). It only finds candidates. @default keyed sample hash */
  readonly checksum?: ChecksumFunction
  /** Seed of the keyed table hash. @default random per engine */
  readonly seed?: number
  /** Most equal-key entries a lookup compares; past it a page is not inserted. @default 32 */
  readonly maxCandidates?: number
}

/** Counters the scanning policy keeps, read by engine.stats(). */
export interface ScanCounters {
  pagesScanned: number
  pagesSkipped: number
  fullScans: number
  pagesUnshared: number
  pagesVolatile: number
  /** rmap items the policy holds for pages that are not PAGE_MERGED. */
  rmapItems: number
  /** Bytes of per-page state the policy holds. */
  metadataBytes: number
}

/** Something that can report scanner counters (the policy layer registers one). */
export interface ScanSource {
  scanCounters(): ScanCounters
  /** Drop every rmap item and reset full_scans (run=2). */
  resetForUnmergeAll(): void
}

const NO_SCAN: ScanCounters = { pagesScanned: 0, pagesSkipped: 0, fullScans: 0, pagesUnshared: 0, pagesVolatile: 0, rmapItems: 0, metadataBytes: 0 }

/** The merge core of one engine. */
export class MergeCore implements SharingObserver {
  readonly pool: FramePool
  readonly table = new MergeTable()
  useZeroPages: boolean
  maxPageSharing: number
  readonly mergeAcrossDomains: boolean
  readonly maxCandidates: number
  /** Table key of a page: keyed sample hash (or the injected checksum). */
  readonly key: PageHash
  /** Full-page checksum, for the scanner's stability test. */
  readonly checksum: PageHash = fullChecksum
  /** Key of the all-zero page in domain-free form, to test for zero pages cheaply. */
  readonly zeroKey: number

  // Counters kept incrementally, so stats() is O(1) for them.
  pagesShared = 0
  pagesSharing = 0
  pagesUnique = 0
  mergeCalls = 0
  scan: ScanSource | null = null

  #wordsPerPage: number
  #domainIds = new Map<string, number>()
  #chainCache = { version: -1, chains: 0, dups: 0 }

  constructor(pool: FramePool, options: MergeCoreOptions = {}) {
    this.pool = pool
    this.useZeroPages = checkBool("useZeroPages", options.useZeroPages ?? true)
    const mps = options.maxPageSharing ?? 256
    if (typeof mps !== "number" || !Number.isSafeInteger(mps) || mps < 2) throw new InvalidArgument(`maxPageSharing must be an integer >= 2, got ${String(mps)}`)
    this.maxPageSharing = mps
    this.mergeAcrossDomains = checkBool("mergeAcrossDomains", options.mergeAcrossDomains ?? false)
    const mc = options.maxCandidates ?? 32
    if (typeof mc !== "number" || !Number.isSafeInteger(mc) || mc < 1) throw new InvalidArgument(`maxCandidates must be an integer >= 1, got ${String(mc)}`)
    this.maxCandidates = mc
    if (options.checksum !== undefined && typeof options.checksum !== "function") throw new InvalidArgument("checksum must be a function")
    const seed = options.seed ?? (Math.random() * 0x100000000) >>> 0
    if (typeof seed !== "number" || !Number.isFinite(seed)) throw new InvalidArgument("seed must be a finite number")
    this.#wordsPerPage = pool.pageSize >>> 2
    this.key = options.checksum !== undefined ? fromBytesChecksum(options.checksum) : makeSampledKey(this.#wordsPerPage, seed)
    this.zeroKey = this.key(pool.words[0]!, 0, this.#wordsPerPage)
    pool.observer = this
  }

  /** Salt of a domain's table keys (0 when domains may merge). */
  saltOf(domain: string): number {
    if (this.mergeAcrossDomains) return 0
    let id = this.#domainIds.get(domain)
    if (id === undefined) {
      id = this.#domainIds.size + 1
      this.#domainIds.set(domain, id)
    }
    return domainSalt(id)
  }

  /** Unsalted key of frame `f`. */
  keyOf(f: number): number {
    const pool = this.pool
    return this.key(pool.words[f >>> pool.slabShift]!, (f & pool.slabMask) * this.#wordsPerPage, this.#wordsPerPage)
  }

  /** Full checksum of frame `f`. */
  checksumOf(f: number): number {
    const pool = this.pool
    return this.checksum(pool.words[f >>> pool.slabShift]!, (f & pool.slabMask) * this.#wordsPerPage, this.#wordsPerPage)
  }

  // ---------------------------------------------------------------- merge (MADV_MERGE)

  /**
   * Merge pages [p0, p1) of `space` now. The table is reserved for the whole range first,
   * so the call either completes or throws having changed nothing.
   */
  merge(space: PagedSpace, p0: number, p1: number): MergeReport {
    const report: MergeReport = { scanned: 0, merged: 0, zeroMapped: 0, inserted: 0, alreadyMerged: 0, skipped: { unpopulated: 0, pinned: 0, crowded: 0 } }
    this.table.reserve(p1 - p0)
    this.mergeCalls++
    const salt = this.saltOf(space.domain)
    for (let pi = p0; pi < p1; pi++) {
      switch (this.mergePage(space, pi, salt)) {
        case Outcome.Merged: report.merged++; break
        case Outcome.ZeroMapped: report.zeroMapped++; break
        case Outcome.Inserted: report.inserted++; break
        case Outcome.AlreadyMerged: report.alreadyMerged++; break
        case Outcome.Unpopulated: report.skipped.unpopulated++; break
        case Outcome.Pinned: report.skipped.pinned++; break
        case Outcome.Crowded: report.skipped.crowded++; break
      }
    }
    report.scanned = p1 - p0
    return report
  }

  /**
   * Merge one page the SKSM way: zero page, else an identical table frame, else insert the
   * page itself as a new table frame. The caller reserved one table entry.
   */
  mergePage(space: PagedSpace, pi: number, salt: number): Outcome {
    const fl = space.pflags[pi]!
    const f = space.pte[pi]!
    if (f === ZERO_FRAME) return (fl & PAGE_KSM_ZERO) !== 0 ? Outcome.AlreadyMerged : Outcome.Unpopulated
    if ((fl & PAGE_PINNED) !== 0) return Outcome.Pinned
    if ((fl & PAGE_MERGED) !== 0) return Outcome.AlreadyMerged
    const pool = this.pool
    // 1. write-protect: from here on a host write would fault and copy.
    space.pflags[pi] = fl & ~PAGE_WRITABLE
    if ((pool.flags[f]! & FRAME_KSM) !== 0) {
      // A table frame this page maps without being one of its rmap entries (inherited by
      // fork): join it, even past maxPageSharing (the kernel's max_page_sharing_bypass).
      this.#join(space, pi, pool.entry[f]!)
      return Outcome.Merged
    }
    const raw = this.keyOf(f)
    if (this.useZeroPages && raw === this.zeroKey && pool.isZero(f)) {
      this.mapZero(space, pi)
      return Outcome.ZeroMapped
    }
    const key = (raw ^ salt) >>> 0
    // 2. compare in full against every candidate with this key; keep the fullest one with room.
    const e = this.findCandidate(f, key)
    if (e >= 0) {
      // 3. remap.
      this.mergeInto(space, pi, e)
      return Outcome.Merged
    }
    if (e === CROWDED) {
      space.pflags[pi] = fl
      return Outcome.Crowded
    }
    this.insertUnique(space, pi, key)
    return Outcome.Inserted
  }

  /**
   * The table entry holding content identical to frame `f` under `key` that can take one
   * more mapper (the first such dup, as stable_node_dup without pruning), or NO_CANDIDATE, or
   * CROWDED when `maxCandidates` equal-key entries were compared without a usable match.
   */
  findCandidate(f: number, key: number): number {
    const table = this.table
    const pool = this.pool
    const max = this.maxPageSharing
    let compared = 0
    let identicalFull = false
    // New entries go to the bucket head, so the newest dup (the one with room) is met first.
    for (let e = table.head(key); e !== -1; e = table.next[e]!) {
      if (table.key[e] !== key) continue
      if (++compared > this.maxCandidates) return identicalFull ? NO_CANDIDATE : CROWDED
      if (pool.compare(table.frame[e]!, f) !== 0) continue
      if (table.mappers(e) < max) return e
      identicalFull = true
    }
    return NO_CANDIDATE
  }

  /** Map page `pi` to the zero frame as a merge-placed zero page (ksm_map_zero_page). */
  mapZero(space: PagedSpace, pi: number): void {
    const f = space.pte[pi]!
    space.pte[pi] = ZERO_FRAME
    space.pflags[pi] = (space.pflags[pi]! | PAGE_KSM_ZERO) & ~PAGE_WRITABLE
    space.ksmZeroPages++
    this.pool.ksmZeroPages++
    this.pool.decref(f)
  }

  /** Remap page `pi` onto entry `e`'s frame (replace_page + stable_tree_append). */
  mergeInto(space: PagedSpace, pi: number, e: number): void {
    const pool = this.pool
    const old = space.pte[pi]!
    const kf = this.table.frame[e]!
    space.pte[pi] = kf
    pool.refcount[kf]!++
    pool.decref(old)
    this.#join(space, pi, e)
  }

  /** Insert page `pi`'s own frame as a new table frame with no partner (SKSM's hash_add). */
  insertUnique(space: PagedSpace, pi: number, key: number): number {
    const pool = this.pool
    const f = space.pte[pi]!
    const e = this.table.insert(f, key, 1)
    pool.flags[f]! |= FRAME_KSM
    pool.entry[f] = e
    space.pflags[pi] = (space.pflags[pi]! | PAGE_MERGED) & ~PAGE_WRITABLE
    this.pagesUnique++
    return e
  }

  /** Page `pi` (already mapping entry `e`'s frame) becomes one of its rmap entries. */
  #join(space: PagedSpace, pi: number, e: number): void {
    space.pflags[pi] = (space.pflags[pi]! | PAGE_MERGED) & ~PAGE_WRITABLE
    const f = this.table.frame[e]!
    const m = this.table.mappers(e)
    this.#count(f, m, -1)
    // A second mapper turns a unique insert into a stable node (pages_shared++).
    this.pool.flags[f]! |= FRAME_SHARED
    this.table.setMappers(e, m + 1)
    this.#count(f, m + 1, 1)
  }

  /** Add (`sign` 1) or remove (-1) the contribution of a table frame with `m` mappers. */
  #count(f: number, m: number, sign: number): void {
    if (m === 0) return
    if ((this.pool.flags[f]! & FRAME_SHARED) !== 0) {
      this.pagesShared += sign
      this.pagesSharing += sign * (m - 1)
    } else {
      this.pagesUnique += sign
    }
  }

  /** SharingObserver: a PAGE_MERGED page stopped mapping `f` (write, discard, dispose, unmerge). */
  mergedPageLeft(f: number): void {
    const pool = this.pool
    const e = pool.entry[f]!
    const m = this.table.mappers(e)
    this.#count(f, m, -1)
    if (m > 1) {
      this.table.setMappers(e, m - 1)
      this.#count(f, m - 1, 1)
      return
    }
    // Last rmap entry gone: the frame leaves the table at once (no stale entries).
    this.table.remove(e)
    pool.flags[f]! &= ~(FRAME_KSM | FRAME_SHARED)
    pool.entry[f] = -1
  }

  /** SharingObserver: compaction moved frame `from` to `to`. */
  frameMoved(from: number, to: number): void {
    const e = this.pool.entry[from]!
    if (e >= 0) this.table.frame[e] = to
  }

  // ---------------------------------------------------------------- unmerge (MADV_UNMERGEABLE)

  /** Pages in [p0, p1) that unmerge would touch (break_ksm), and how many need a new frame. */
  #unmergeNeed(space: PagedSpace, p0: number, p1: number): number {
    const pool = this.pool
    let need = 0
    for (let pi = p0; pi < p1; pi++) {
      const fl = space.pflags[pi]!
      const f = space.pte[pi]!
      if ((fl & PAGE_KSM_ZERO) !== 0) need++
      else if (f !== ZERO_FRAME && (pool.flags[f]! & FRAME_KSM) !== 0 && (pool.refcount[f]! > 1 || !pool.reuseSoleKsm)) need++
    }
    return need
  }

  /**
   * Give every merged page, merge-placed zero page and page mapping a table frame in
   * [p0, p1) a private frame (break_ksm with FAULT_FLAG_UNSHARE: not a write, so uffd-wp
   * stays). Reserves every frame first. Returns the number of pages unshared.
   */
  unmerge(space: PagedSpace, p0: number, p1: number): number {
    const pool = this.pool
    pool.ensureFree(this.#unmergeNeed(space, p0, p1), "unmerge")
    let n = 0
    for (let pi = p0; pi < p1; pi++) {
      const fl = space.pflags[pi]!
      const f = space.pte[pi]!
      const ksmZero = (fl & PAGE_KSM_ZERO) !== 0
      if (!ksmZero && (f === ZERO_FRAME || (pool.flags[f]! & FRAME_KSM) === 0)) continue
      if ((fl & PAGE_MERGED) !== 0) this.mergedPageLeft(f)
      let nf: number
      if (ksmZero) {
        nf = pool.allocZeroed()
        space.ksmZeroPages--
        pool.ksmZeroPages--
      } else if (pool.refcount[f] === 1 && (pool.flags[f]! & FRAME_KSM) === 0 && pool.reuseSoleKsm) {
        nf = f // it left the table and only this page maps it: it is private already
      } else {
        nf = pool.alloc()
        pool.copy(f, nf)
      }
      if (nf !== f) {
        pool.refcount[nf] = 1
        space.pte[pi] = nf
        pool.decref(f)
      }
      const rest = fl & ~(PAGE_MERGED | PAGE_KSM_ZERO)
      space.pflags[pi] = (rest & PAGE_UFFD_WP) !== 0 ? rest : rest | PAGE_WRITABLE
      n++
    }
    return n
  }

  /** `echo 2 > run`: unmerge every space, drop every table entry and scanner item, reset full_scans. */
  unmergeAll(spaces: readonly PagedSpace[]): void {
    let need = 0
    for (const s of spaces) need += this.#unmergeNeed(s, 0, s.pages)
    this.pool.ensureFree(need, "unmerge")
    for (const s of spaces) this.unmerge(s, 0, s.pages)
    this.scan?.resetForUnmergeAll()
  }

  // ---------------------------------------------------------------- tunables

  /** max_page_sharing: InvalidArgument below 2, Busy while pages are shared (as the kernel). */
  setMaxPageSharing(n: number): void {
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 2) throw new InvalidArgument(`maxPageSharing must be an integer >= 2, got ${String(n)}`)
    if (n === this.maxPageSharing) return
    if (this.pagesShared !== 0) throw new Busy(`maxPageSharing cannot change while ${this.pagesShared} pages are shared; unmergeAll() first`)
    this.maxPageSharing = n
  }

  /** use_zero_pages: affects future merges only. */
  setUseZeroPages(on: boolean): void {
    this.useZeroPages = checkBool("useZeroPages", on)
  }

  // ---------------------------------------------------------------- statistics

  /** stable_node_chains and stable_node_dups: contents with two or more stable frames. Cached per table version. */
  chains(): { chains: number; dups: number } {
    const cache = this.#chainCache
    if (cache.version === this.table.version) return cache
    const table = this.table
    const pool = this.pool
    const byKey = new Map<number, number[]>()
    for (const e of table.entries()) {
      if ((pool.flags[table.frame[e]!]! & FRAME_SHARED) === 0) continue
      const k = table.key[e]!
      const list = byKey.get(k)
      if (list === undefined) byKey.set(k, [e])
      else list.push(e)
    }
    let chains = 0
    let dups = 0
    for (const list of byKey.values()) {
      if (list.length < 2) continue
      // Cluster equal-key entries by identical content (full compare).
      const reps: number[] = []
      const sizes: number[] = []
      for (const e of list) {
        const i = reps.findIndex((r) => pool.compare(table.frame[r]!, table.frame[e]!) === 0)
        if (i >= 0) sizes[i]!++
        else {
          reps.push(e)
          sizes.push(1)
        }
      }
      for (const s of sizes) {
        if (s >= 2) {
          chains++
          dups += s
        }
      }
    }
    this.#chainCache = { version: table.version, chains, dups }
    return this.#chainCache
  }

  /** Counters from the scanning policy, or zeros without one. */
  scanCounters(): ScanCounters {
    return this.scan?.scanCounters() ?? NO_SCAN
  }

  /** Bytes the merge machinery holds: the table and the policy's per-page state. */
  get metadataBytes(): number {
    return this.table.bytes + this.scanCounters().metadataBytes
  }
}

/** findCandidate: nothing identical with room. */
export const NO_CANDIDATE = -1
/** findCandidate: too many equal-key entries to look through. */
export const CROWDED = -2
