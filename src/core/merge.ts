/**
 * The merge core: the single place where pages are merged, unmerged and counted.
 * merge() (MADV_MERGE) and both scanner policies drive it; they share one table and one
 * set of counters, so a page merged by one is a stable hit for the other.
 *
 * Per page, in the kernel's order: write-protect (clear PTE_WRITABLE), compare the bytes
 * in full against the candidate, then remap. The key only finds candidates.
 */
import { Busy, InvalidArgument, OutOfMemory } from "../errors.ts"
import { FRAME_KSM, FRAME_SHARED, type FramePool, type SharingObserver, ZERO_FRAME } from "../memory/frames.ts"
import { PAGE_KSM_ZERO, PAGE_MERGED, PAGE_PINNED, PAGE_UFFD_WP } from "../memory/flags.ts"
import { secretWords } from "../memory/random.ts"
import type { PagedSpace } from "../memory/space.ts"
import { checkBool, checkFunction, checkIntIn, readStringArray, show } from "../validate.ts"
import { type ChecksumFunction, domainSalt, expandSeed, fromBytesChecksum, fullChecksumKey, keyedFullChecksum, keyedNh, keyedSampledKey, nhKey, type PageHash, sampledKeyParams, secondKey, thirdKey } from "./checksum.ts"
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
    /**
     * Pages whose key already had `maxCandidates` entries at both key levels: not inserted, to
     * bound lookups (in a secure space they are write-protected as stand-ins and count as inserted).
     */
    crowded: number
    /**
     * Secure spaces: pages not yet seen unwritten by `idlePasses` earlier passes. They are
     * write-protected now (armed); a later pass merges them if no write came in between.
     */
    notIdle: number
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
  /** Secure space: the page is armed (write-protected) or still waiting out `idlePasses`. */
  NotIdle: 7,
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
  /**
   * Replace the table key (tests inject colliding ones). It only finds candidates, so a weak
   * one costs time, never correctness. It runs mid-merge: it must be pure (a call into the
   * engine from it throws Busy) and must not throw. @default keyed sample hash
   */
  readonly checksum?: ChecksumFunction
  /**
   * Seed of the keyed table hash and checksum: a safe non-negative integer, for reproducible
   * tests and benchmarks only. A fixed seed lets page writers predict the table's sample
   * positions and keys. @default 128 secret bits from crypto.getRandomValues, per engine
   */
  readonly seed?: number
  /**
   * Most equal-key entries a lookup compares with a full memcmp at each of its key levels
   * (the sampled key, the full-page key of a crowded sampled key, the NH key of a crowded
   * full-page key); a lookup also visits at
   * most `64 * maxCandidates + 2048` bucket entries per level (integer compares: buckets are
   * keyed, so only legitimate max_page_sharing dups of one content make a bucket long). Past
   * both, a page is not inserted (Outcome.Crowded). Bounds the work a page writer can force per
   * lookup. @default 32
   */
  readonly maxCandidates?: number
  /**
   * Secure mode (VUsion-style) for every domain: see {@link MergeCore.isSecureDomain} and the
   * RFC's "Security considerations". Costs a copy per candidate page. @default false
   */
  readonly secure?: boolean
  /** Domains that run in secure mode (when `secure` is false). @default [] */
  readonly secureDomains?: readonly string[]
  /**
   * Secure mode: earlier passes (merge() calls or scanner visits) that must find a candidate
   * page unwritten since it was armed before it may merge. 0 merges at the first pass (no
   * working-set estimation); VUsion waits 2 scans. Integer 0..254. @default 1
   */
  readonly idlePasses?: number
}

/** The keys of {@link MergeCoreOptions}. */
export const MERGE_CORE_KEYS = ["useZeroPages", "maxPageSharing", "mergeAcrossDomains", "checksum", "seed", "maxCandidates", "secure", "secureDomains", "idlePasses"] as const

/** {@link MergeCoreOptions} validated, every field present (`checksum`/`seed` undefined = default). */
export interface ResolvedMergeCoreOptions {
  readonly useZeroPages: boolean
  readonly maxPageSharing: number
  readonly mergeAcrossDomains: boolean
  readonly checksum: ChecksumFunction | undefined
  readonly seed: number | undefined
  readonly maxCandidates: number
  readonly secure: boolean
  readonly secureDomains: readonly string[]
  readonly idlePasses: number
}

/** Validate the merge core's fields of an options snapshot (read once by the engine). */
export function resolveMergeCoreOptions(o: Readonly<Record<string, unknown>>): ResolvedMergeCoreOptions {
  const seed = o["seed"]
  if (seed !== undefined && (typeof seed !== "number" || !Number.isSafeInteger(seed) || seed < 0)) {
    throw new InvalidArgument(`seed must be a safe non-negative integer, got ${show(seed)}`)
  }
  return Object.freeze({
    useZeroPages: checkBool("useZeroPages", o["useZeroPages"] ?? true),
    maxPageSharing: checkIntIn("maxPageSharing", o["maxPageSharing"] ?? 256, 2, Number.MAX_SAFE_INTEGER),
    mergeAcrossDomains: checkBool("mergeAcrossDomains", o["mergeAcrossDomains"] ?? false),
    checksum: o["checksum"] === undefined ? undefined : (checkFunction("checksum", o["checksum"]) as ChecksumFunction),
    seed,
    maxCandidates: checkIntIn("maxCandidates", o["maxCandidates"] ?? 32, 1, Number.MAX_SAFE_INTEGER),
    secure: checkBool("secure", o["secure"] ?? false),
    secureDomains: o["secureDomains"] === undefined ? [] : readStringArray("secureDomains", o["secureDomains"]),
    idlePasses: checkIntIn("idlePasses", o["idlePasses"] ?? 1, 0, 254),
  })
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
  /** rmap items held for `space`'s pages that are not PAGE_MERGED (engine.scanItemsOf). */
  rmapItemsOf(space: PagedSpace): number
  /** merge() just ran on pages [p0, p1): items of pages that became PAGE_MERGED now belong to the core. */
  rangeMerged(space: PagedSpace, p0: number, p1: number): void
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
  /** Bucket entries one lookup level may visit. */
  readonly maxWalk: number
  /** The sampled key's key words (keyedSampledKey), or the injected checksum that replaces it. */
  readonly #sampleKey: Int32Array
  readonly #injected: PageHash | null
  /** The full checksum's key words (keyedFullChecksum). */
  readonly #fullKey: Int32Array
  /** Every domain is secure. */
  readonly secure: boolean
  /** Secure mode: earlier passes a candidate must stay unwritten before it merges. */
  readonly idlePasses: number
  /** Diagnostic and test counters: full memcmps and bucket entries visited by lookups (work, not time). */
  lookupCompares = 0
  lookupVisits = 0
  /** Key of the all-zero page in domain-free form, to test for zero pages cheaply. */
  readonly zeroKey: number
  /** Full checksum of the all-zero page: in a crowded run, only a page with this sum is zero-tested. */
  readonly #zeroSum: number

  // Counters kept incrementally, so stats() is O(1) for them.
  pagesShared = 0
  pagesSharing = 0
  pagesUnique = 0
  mergeCalls = 0
  scan: ScanSource | null = null

  #wordsPerPage: number
  #domainIds = new Map<string, number>()
  #secureDomains: ReadonlySet<string>
  // Where the last findCandidate would insert its frame (so insertUnique need not walk again).
  #hintFrame = -1
  /** Table renumbering: the frame's back-pointer follows its entry. */
  readonly #entryMoved = (_from: number, to: number): void => {
    this.pool.entry[this.table.frame[to]!] = to
  }
  #hintKey = 0
  #hintPlace = 0
  /** Full checksum of the hint frame, given to or computed by that lookup, or -1 (none yet). */
  #hintSum = -1
  /** Equal-key entries the last #find compared. */
  #lastEqual = 0
  /**
   * Saturating count (0..3) of recent lookups that went to the second level (+1) or not (-1):
   * at 2 or more, mergePage expects a crowded key. Each wrong guess (a first-level lookup or a
   * zero page) costs one full hash and a step down, so wasted guesses never outnumber
   * second-level lookups.
   */
  #crowdTrend = 0
  /** Sampled keys that crowded: their pages live at the second level (see findCandidate). */
  readonly #crowded = new Set<number>()
  /**
   * Second-level keys that crowded (only pages crafted to collide on the full checksum do that):
   * their pages live at the third level, keyed by the NH universal hash (see findCandidate).
   */
  readonly #crowded2 = new Set<number>()
  /** NH key words, derived when a second-level key first crowds. */
  #nhKey: Int32Array | null = null
  /** The engine's key material (kept even with an injected checksum: the third level needs it). */
  readonly #keyMaterial: Uint32Array
  #chainCache = { version: -1, chains: 0, dups: 0 }
  /** The hashes' key material (see hashMaterial); null with an injected checksum. */
  readonly #material: Uint32Array | null

  /** `options` come from {@link resolveMergeCoreOptions}. */
  constructor(pool: FramePool, options: ResolvedMergeCoreOptions) {
    this.pool = pool
    this.useZeroPages = options.useZeroPages
    this.maxPageSharing = options.maxPageSharing
    this.mergeAcrossDomains = options.mergeAcrossDomains
    const mc = options.maxCandidates
    this.maxCandidates = mc
    // Generous: a bucket holding the dups of a heavily shared content (256 dups of the zero page
    // merged as content, say) must not hide another key's entry behind them (a missed merge).
    this.maxWalk = 64 * mc + 2048
    const seed = options.seed
    this.secure = options.secure
    this.#secureDomains = new Set(options.secureDomains)
    this.idlePasses = options.idlePasses
    // Secret key material: 128 bits from the OS CSPRNG unless a test fixed the seed.
    const material = seed === undefined ? secretWords(4) : expandSeed(seed)
    this.#material = options.checksum !== undefined ? null : Uint32Array.from(material)
    this.#keyMaterial = Uint32Array.from(material)
    this.#wordsPerPage = pool.pageSize >>> 2
    this.#injected = options.checksum !== undefined ? guarded(pool, fromBytesChecksum(options.checksum)) : null
    this.#sampleKey = sampledKeyParams(this.#wordsPerPage, material)
    this.#fullKey = fullChecksumKey(material)
    this.zeroKey = this.key(pool.words, 0, this.#wordsPerPage)
    this.#zeroSum = this.checksum(pool.words, ZERO_FRAME * this.#wordsPerPage, this.#wordsPerPage)
    pool.observer = this
  }

  /** Table key of the page at `words[start..]` (`count` words): keyed sample hash, or the injected checksum. */
  key(words: Uint32Array, start: number, count: number): number {
    if (this.#injected !== null) return this.#injected(words, start, count)
    return keyedSampledKey(this.#sampleKey, words, start)
  }

  /** Keyed full-page checksum: the scanner's stability test and the second-level table key. */
  checksum(words: Uint32Array, start: number, count: number): number {
    return keyedFullChecksum(this.#fullKey, words, start, count)
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

  /**
   * Whether spaces of `domain` run in secure mode (the engine's `secure`, or `secureDomains`).
   * Secure mode is VUsion's defence, per domain:
   * - every candidate page is handled the same whether or not it finds a partner: it is
   *   write-protected, moved to a random frame and entered in the table (a crowded one as a
   *   stand-in entry no lookup finds), and its first write always copies (never reused in place);
   * - frames given out by copy-on-write, unmerge and merging come from a random free frame;
   * - a page is a candidate only after `idlePasses` earlier passes found it unwritten;
   * - pages of different domains merge only when constant (one repeated byte) and both secure,
   *   unless `mergeAcrossDomains` allows everything.
   */
  isSecureDomain(domain: unknown): boolean {
    return this.secure || (typeof domain === "string" && this.#secureDomains.has(domain))
  }

  /** Unsalted key of frame `f` (a hashing thread's digest when one is valid for the frame's current bytes). */
  keyOf(f: number): number {
    const d = this.pool.digests
    if (d !== null && Atomics.load(d.gen, f) === this.pool.writeGen![f]) return d.key[f]!
    return this.key(this.pool.words, f * this.#wordsPerPage, this.#wordsPerPage)
  }

  /** Full checksum of frame `f` (a hashing thread's digest when one is valid for the frame's current bytes). */
  checksumOf(f: number): number {
    const d = this.pool.digests
    if (d !== null && Atomics.load(d.gen, f) === this.pool.writeGen![f]) return d.sum[f]!
    return this.checksum(this.pool.words, f * this.#wordsPerPage, this.#wordsPerPage)
  }

  /**
   * Whether frame `f` holds only zero bytes: a valid digest's zero flag (the hashing thread read
   * every byte of the frame as it is now, so no scan here), else a scan (any other page almost
   * always fails on its first word).
   */
  zeroFrame(f: number): boolean {
    const pool = this.pool
    const d = pool.digests
    if (d !== null && Atomics.load(d.gen, f) === pool.writeGen![f]) return d.zero[f] === 1
    return pool.words[f * this.#wordsPerPage] === 0 && pool.isZero(f)
  }

  /**
   * Whether a hashing thread's digest of frame `f` is valid now (see FrameDigests): then
   * {@link checksumOf} and {@link keyOf} cost no hashing on this thread.
   */
  digested(f: number): boolean {
    const d = this.pool.digests
    return d !== null && Atomics.load(d.gen, f) === this.pool.writeGen![f]
  }

  /**
   * The key material of this engine's two page hashes, for a hashing thread that must compute
   * exactly what {@link checksumOf} and {@link keyOf} compute. Null when an injected checksum
   * replaces the key (a function cannot cross threads). Secret: never log it.
   */
  get hashMaterial(): Uint32Array | null {
    return this.#material === null ? null : this.#material.slice()
  }

  // ---------------------------------------------------------------- merge (MADV_MERGE)

  /**
   * Merge pages [p0, p1) of `space` now. The table is reserved for the whole range first,
   * so the call either completes or throws having changed nothing.
   */
  merge(space: PagedSpace, p0: number, p1: number): MergeReport {
    const report: MergeReport = { scanned: 0, merged: 0, zeroMapped: 0, inserted: 0, alreadyMerged: 0, skipped: { unpopulated: 0, pinned: 0, crowded: 0, notIdle: 0 } }
    this.prepareMerge(space, p0, p1)
    // Merging write-protects pages: no write translation handed out may survive it.
    this.pool.revokeWrites()
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
        case Outcome.NotIdle: report.skipped.notIdle++; break
      }
    }
    report.scanned = p1 - p0
    // merge() reserved an entry per page; what the range did not use goes back only once the
    // arrays are twice what the table needs (amortised: a host merging range after range reuses
    // the room instead of paying a pass over the table each time).
    if (this.table.wasteful) this.tidy()
    this.scan?.rangeMerged(space, p0, p1)
    return report
  }

  /**
   * Reserve what merging pages [p0, p1) of `space` may need, so that {@link mergePage} cannot
   * fail midway: one table entry per page and, in a secure space, the frames its moves to
   * random frames need (one, plus one per candidate whose frame a fork shares). Throws
   * OutOfMemory having changed nothing. Policies call it before handing pages to mergePage.
   */
  prepareMerge(space: PagedSpace, p0: number, p1: number): void {
    this.table.reserve(p1 - p0)
    if (!space.secure) return
    const pool = this.pool
    const idle = space.idle!
    const passes = this.idlePasses
    let need = 0
    let any = 0
    for (let pi = p0; pi < p1; pi++) {
      const f = space.frameAt(pi)
      const fl = space.pflags[pi]!
      if (f === ZERO_FRAME || (fl & (PAGE_PINNED | PAGE_MERGED)) !== 0 || (pool.flags[f]! & FRAME_KSM) !== 0) continue
      // Only pages this pass may merge can move (the test #idleEnough will make).
      if (passes !== 0 && (space.isWritable(pi) || idle[pi]! < passes)) continue
      any = 1
      if (pool.refcount[f]! > 1) need++
    }
    pool.ensureFree(need + any, "merge")
  }

  /**
   * Merge one page the SKSM way: zero page, else an identical table frame, else insert the
   * page itself as a new table frame. The caller reserved one table entry (and, for a secure
   * space, frames: {@link prepareMerge}). Each call is one "pass" over the page for secure
   * mode's idle count.
   */
  mergePage(space: PagedSpace, pi: number, salt: number): Outcome {
    const fl = space.pflags[pi]!
    const f = space.frameAt(pi)
    if (f === ZERO_FRAME) return (fl & PAGE_KSM_ZERO) !== 0 ? Outcome.AlreadyMerged : Outcome.Unpopulated
    if ((fl & PAGE_PINNED) !== 0) return Outcome.Pinned
    if ((fl & PAGE_MERGED) !== 0) return Outcome.AlreadyMerged
    const pool = this.pool
    const secure = space.secure
    // Secure mode's working-set estimation: arm the page, merge only once it stayed unwritten.
    if (secure && !this.#idleEnough(space, pi)) return Outcome.NotIdle
    // 1. write-protect: from here on a host write would fault and copy.
    const writable = space.isWritable(pi)
    space.revokeWrite(pi)
    if ((pool.flags[f]! & FRAME_KSM) !== 0) {
      // A table frame this page maps without being one of its rmap entries (inherited by
      // fork): join it, even past maxPageSharing (the kernel's max_page_sharing_bypass).
      this.#join(space, pi, pool.entry[f]!)
      return Outcome.Merged
    }
    // In a run of crowded keys (near-identical pages) the lookup needs the full checksum: take it
    // first, so the sampled key reads cached lines and only the zero page's sum pays the zero
    // test (a wrong guess wastes one full hash; see #crowdTrend).
    const sum = this.#crowdTrend >= 2 ? this.checksumOf(f) : -1
    // Zero test before the key: an all-zero page then costs one streaming memcmp and no key
    // (bench/merge: all-zero merge 2-3x faster); any other page almost always fails on its first word.
    if (this.useZeroPages && (sum === -1 || sum === this.#zeroSum) && this.zeroFrame(f)) {
      // A zero page makes no lookup: a crowded key guessed for it was a wrong guess.
      if (sum !== -1) this.#crowdTrend--
      this.mapZero(space, pi)
      return Outcome.ZeroMapped
    }
    // Constant pages of secure spaces share one salt: they may merge across secure domains.
    const s = secure && salt !== 0 && this.#isConstant(f) ? 0 : salt
    const key = (this.keyOf(f) ^ s) >>> 0
    // 2. compare in full against every candidate with this key; keep the fullest one with room.
    const e = this.findCandidate(f, key, sum)
    if (e >= 0) {
      // 3. remap.
      this.mergeInto(space, pi, e)
      return Outcome.Merged
    }
    if (e === CROWDED) {
      if (!secure) {
        if (writable) space.grantWrite(pi, fl)
        return Outcome.Crowded
      }
      // Secure: a stand-in entry, so the page behaves exactly like an inserted one.
      this.#moveToRandom(space, pi)
      this.#enter(space, pi, key, true)
      return Outcome.Crowded
    }
    this.insertUnique(space, pi, key)
    return Outcome.Inserted
  }

  /**
   * Secure mode's idle test, one pass: a writable or never-armed page is armed (write-protected,
   * count 1) and waits; an armed page still write-protected was not written since (any write
   * faults, and the fault clears the count), so its count grows. Merge when the count shows
   * `idlePasses` passes after arming.
   */
  #idleEnough(space: PagedSpace, pi: number): boolean {
    const idle = space.idle!
    let n = idle[pi]!
    if (space.isWritable(pi) || n === 0) {
      n = 1
      space.revokeWrite(pi)
    } else if (n < 255) {
      n++
    }
    idle[pi] = n
    return n - 1 >= this.idlePasses
  }

  /** Frame `f` holds one byte value repeated (a "constant page", Windows 1903's cross-domain class). */
  #isConstant(f: number): boolean {
    const pool = this.pool
    const w = pool.words
    const o = f * this.#wordsPerPage
    const v = w[o]!
    if (v !== Math.imul(v & 0xff, 0x01010101) >>> 0) return false
    const end = o + this.#wordsPerPage
    for (let i = o + 1; i < end; i++) if (w[i] !== v) return false
    return true
  }

  /**
   * Secure mode: copy page `pi` into a random free frame (VUsion's move_to_another_page), so a
   * table frame's place in memory is not the one its first writer chose. Needs a reserved frame.
   */
  #moveToRandom(space: PagedSpace, pi: number): void {
    const pool = this.pool
    const f = space.frameAt(pi)
    const nf = pool.allocRandom(false)
    pool.copy(f, nf)
    pool.refcount[nf] = 1
    space.setFrame(pi, nf)
    space.invalidate()
    pool.decref(f)
  }

  /**
   * The table entry holding content identical to frame `f` under `key` that can take one
   * more mapper (the first such dup, as stable_node_dup without pruning), or NO_CANDIDATE, or
   * CROWDED. Two key levels: the sampled `key`, and for a key that ever held more than
   * `maxCandidates` entries (a *crowded* key: many distinct pages with one sample) the page's
   * second-level key (keyed full-page checksum, {@link secondKey}). When a key crowds, every
   * entry it holds moves to its second level at once ({@link #crowd}), so an identical page is
   * always found on the level where it sits: a flood of near-identical pages arriving after a
   * page cannot hide it. A lookup level compares at most `maxCandidates` equal-key entries and
   * visits at most `maxWalk` bucket entries; the second level is cut short
   * only by full-checksum collisions. A second-level key that crowds moves the same way to
   * a third level keyed by NH ({@link thirdHash}), which crafted pages cannot make collide; CROWDED
   * then means the third level was cut short too. Work per call: at most 3 * maxCandidates
   * memcmps, 3 * maxWalk entries, one full checksum (none when the caller passes `sum`, the
   * frame's {@link checksumOf} it already holds; -1: not known) and, for crowded full checksums
   * only, one NH.
   */
  findCandidate(f: number, key: number, sum = -1): number {
    this.#hintFrame = f
    this.#hintKey = key
    this.#hintSum = sum
    if (this.#crowded.size === 0 || !this.#crowded.has(key)) {
      const e = this.#find(f, key)
      if (e !== CROWDED && this.#crowdTrend > 0) this.#crowdTrend--
      if (e >= 0) return e
      if (e === NO_CANDIDATE) {
        // Inserting here would crowd the key: the insert crowds it first (see #placeKey).
        this.#hintPlace = this.#lastEqual >= this.maxCandidates ? CROWD_ON_INSERT : key
        return e
      }
      // FULL_CUT: every identical entry seen is full; a new dup joins its siblings here.
      if (e === FULL_CUT) {
        this.#hintPlace = key
        return NO_CANDIDATE
      }
      // Cut short by the bucket walk (other keys share the bucket): look at the second level too.
    }
    if (this.#crowdTrend < 3) this.#crowdTrend++
    if (this.#hintSum < 0) this.#hintSum = this.checksumOf(f)
    const k2 = secondKey(this.#hintSum, key)
    if (this.#crowded2.size === 0 || !this.#crowded2.has(k2)) {
      this.#hintPlace = k2
      const e2 = this.#find(f, k2)
      if (e2 >= 0) return e2
      if (e2 === NO_CANDIDATE) {
        // Full checksums collide (crafted pages): the insert moves this key to its third level.
        if (this.#lastEqual >= this.maxCandidates) this.#hintPlace = CROWD2_ON_INSERT
        return e2
      }
      if (e2 === FULL_CUT) return NO_CANDIDATE
      // Cut short: the third level may hold it.
    }
    const k3 = thirdKey(this.#nhOf(f), k2)
    this.#hintPlace = k3
    const e3 = this.#find(f, k3)
    if (e3 >= 0) return e3
    return e3 === CROWDED ? CROWDED : NO_CANDIDATE
  }

  /** The third level's hash of frame `f`. */
  #nhOf(f: number): number {
    const wpp = this.#wordsPerPage
    return this.thirdHash(this.pool.words, f * wpp, wpp)
  }

  /** The third key level's hash of the page at `words[start..]`: NH, keyed (its key derived on first use). */
  thirdHash(words: Uint32Array, start: number, count: number): number {
    if (this.#nhKey === null) this.#nhKey = nhKey(this.#keyMaterial, this.#wordsPerPage)
    return keyedNh(this.#nhKey, words, start, count)
  }

  /** One bounded lookup level: an entry, NO_CANDIDATE (chain done), CROWDED or FULL_CUT (cut short). */
  #find(f: number, key: number): number {
    const table = this.table
    const pool = this.pool
    const max = this.maxPageSharing
    const maxCandidates = this.maxCandidates
    const maxWalk = this.maxWalk
    let compared = 0
    let visited = 0
    let identicalFull = false
    let r = NO_CANDIDATE
    // New entries go to the bucket head, so the newest dup (the one with room) is met first.
    for (let e = table.head(key); e !== -1; e = table.next[e]!) {
      if (++visited > maxWalk || (table.key[e] === key && ++compared > maxCandidates)) {
        r = identicalFull ? FULL_CUT : CROWDED
        visited--
        break
      }
      if (table.key[e] !== key) continue
      if (!pool.equal(table.frame[e]!, f)) continue
      if (table.mappers(e) < max) {
        r = e
        break
      }
      identicalFull = true
    }
    this.lookupVisits += visited
    this.lookupCompares += compared > maxCandidates ? maxCandidates : compared
    this.#lastEqual = compared
    return r
  }

  /**
   * Key to insert frame `f` under: the sampled `key`, its second level once that key is crowded,
   * or the third level once that one is.
   */
  #placeKey(f: number, key: number): number {
    // Right after findCandidate on this frame and key (the usual case): where that lookup ended.
    const hinted = f === this.#hintFrame && key === this.#hintKey
    let place = hinted ? this.#hintPlace : -2
    const sum = hinted && this.#hintSum >= 0 ? this.#hintSum : -1
    if (place === -2) {
      if (this.#crowded.size === 0 || !this.#crowded.has(key)) place = this.#wouldCrowd(key) ? CROWD_ON_INSERT : key
      else place = this.#secondPlace(f, key, sum)
    }
    if (place === CROWD_ON_INSERT) {
      this.#crowd(key)
      return this.#secondPlace(f, key, sum)
    }
    if (place === CROWD2_ON_INSERT) {
      const k2 = secondKey(sum >= 0 ? sum : this.checksumOf(f), key)
      this.#crowd2(k2)
      return thirdKey(this.#nhOf(f), k2)
    }
    return place
  }

  /** Where frame `f` of crowded sampled key `key` goes: its second-level key, or the third level's (crowding the second first if the insert would). */
  #secondPlace(f: number, key: number, sum: number): number {
    const k2 = secondKey(sum >= 0 ? sum : this.checksumOf(f), key)
    if (this.#crowded2.size === 0 || !this.#crowded2.has(k2)) {
      if (!this.#wouldCrowd(k2)) return k2
      this.#crowd2(k2)
    }
    return thirdKey(this.#nhOf(f), k2)
  }

  /** Whether `key` already has as many entries as a lookup compares (a bounded walk). */
  #wouldCrowd(key: number): boolean {
    const table = this.table
    let equal = 0
    let visited = 0
    let crowded = false
    for (let e = table.head(key); e !== -1; e = table.next[e]!) {
      if (++visited > this.maxWalk) break
      if (table.key[e] === key && ++equal >= this.maxCandidates) {
        crowded = true
        break
      }
    }
    this.lookupVisits += visited
    return crowded
  }

  /**
   * Key `key` has as many entries as a lookup compares: from now on its pages live at their
   * second level. Every entry under it moves there now (one full checksum each, once per entry
   * in its life), so nothing stays behind where lookups no longer look.
   */
  #crowd(key: number): void {
    this.#crowded.add(key)
    this.#rekeyAll(key, (f) => {
      const k2 = secondKey(this.checksumOf(f), key)
      return this.#crowded2.size !== 0 && this.#crowded2.has(k2) ? thirdKey(this.#nhOf(f), k2) : k2
    })
  }

  /**
   * Second-level key `k2` crowded (full checksums that collide: crafted pages): as {@link #crowd},
   * one level down, its entries move to their third-level keys (NH: no key-independent
   * collisions), so an identical page is still found rather than given up on.
   */
  #crowd2(k2: number): void {
    this.#crowded2.add(k2)
    this.#rekeyAll(k2, (f) => thirdKey(this.#nhOf(f), k2))
  }

  /** Move every entry under `key` to the key `to` gives its frame (cold: a key crowding, once). */
  #rekeyAll(key: number, to: (f: number) => number): void {
    const table = this.table
    const move: number[] = []
    for (let e = table.head(key); e !== -1; e = table.next[e]!) if (table.key[e] === key) move.push(e)
    for (const e of move) table.rekey(e, to(table.frame[e]!))
  }

  /**
   * The stable half of cmp_and_merge_page, shared by both scanner policies: page `pi` (frame
   * `f`, unmerged, judged stable by the policy) maps the zero frame if it is all zeros (with
   * useZeroPages; never a pinned page), else merges into an identical table frame with room.
   * Returns Outcome.ZeroMapped, Merged, Pinned (a partner exists but the page is pinned, so it
   * cannot be write-protected), Crowded, or -1: no stable partner; {@link lastKey} then holds the
   * salted table key for a later {@link mergePair}. `sum`: the frame's {@link checksumOf} if the
   * caller holds it (-1: not known), so the lookup never computes it again.
   */
  mergeStable(space: PagedSpace, pi: number, f: number, salt: number, pinned: boolean, sum = -1): number {
    const pool = this.pool
    if (this.useZeroPages && !pinned && this.zeroFrame(f)) {
      this.mapZero(space, pi)
      return Outcome.ZeroMapped
    }
    const key = (this.keyOf(f) ^ salt) >>> 0
    this.lastKey = key
    const e = this.findCandidate(f, key, sum)
    if (e >= 0) {
      if (pinned) return Outcome.Pinned
      this.mergeInto(space, pi, e)
      return Outcome.Merged
    }
    return e === CROWDED ? Outcome.Crowded : -1
  }

  /** The salted table key {@link mergeStable} computed last. */
  lastKey = 0

  /** Full checksum of the frame of the last lookup ({@link findCandidate}), if it was given or computed one; else -1. */
  get lastSum(): number {
    return this.#hintSum
  }

  /**
   * Two identical, unmerged, unpinned pages a policy found (its unstable index): page `kpi` of
   * `keep` becomes a table frame under `key` and page `jpi` of `join` merges into it
   * (try_to_merge_two_pages + stable_tree_insert). Reserves its table entry first: returns
   * false, having changed nothing, when the table cannot grow.
   */
  mergePair(keep: PagedSpace, kpi: number, join: PagedSpace, jpi: number, key: number): boolean {
    try {
      this.table.reserve(1)
    } catch (err) {
      if (err instanceof OutOfMemory) return false
      throw err
    }
    const e = this.insertUnique(keep, kpi, key)
    this.mergeInto(join, jpi, e)
    return true
  }

  /** Map page `pi` to the zero frame as a merge-placed zero page (ksm_map_zero_page). */
  mapZero(space: PagedSpace, pi: number): void {
    const f = space.frameAt(pi)
    space.setFrame(pi, ZERO_FRAME)
    space.invalidate()
    space.pflags[pi] = space.pflags[pi]! | PAGE_KSM_ZERO
    space.ksmZeroPages++
    this.pool.ksmZeroPages++
    this.pool.decref(f)
  }

  /** Remap page `pi` onto entry `e`'s frame (replace_page + stable_tree_append). */
  mergeInto(space: PagedSpace, pi: number, e: number): void {
    const pool = this.pool
    const old = space.frameAt(pi)
    const kf = this.table.frame[e]!
    space.setFrame(pi, kf)
    space.invalidate()
    pool.refcount[kf]!++
    pool.decref(old)
    this.#join(space, pi, e)
  }

  /**
   * Insert page `pi`'s own frame as a new table frame with no partner (SKSM's hash_add), under
   * `key` (the key findCandidate was given) or, if that chain is crowded, its second level.
   * A secure space's page moves to a random frame first: reserve a frame (prepareMerge).
   */
  insertUnique(space: PagedSpace, pi: number, key: number): number {
    const place = this.#placeKey(space.frameAt(pi), key)
    this.#hintFrame = -1
    if (space.secure) this.#moveToRandom(space, pi)
    return this.#enter(space, pi, place, false)
  }

  /** Make page `pi`'s frame a table frame with one mapper (detached: a secure stand-in). */
  #enter(space: PagedSpace, pi: number, key: number, detached: boolean): number {
    const pool = this.pool
    const f = space.frameAt(pi)
    const e = detached ? this.table.insertDetached(f, key, 1) : this.table.insert(f, key, 1)
    pool.flags[f]! |= FRAME_KSM
    pool.entry[f] = e
    space.pflags[pi] = space.pflags[pi]! | PAGE_MERGED
    space.revokeWrite(pi)
    this.pagesUnique++
    return e
  }

  /** Page `pi` (already mapping entry `e`'s frame) becomes one of its rmap entries. */
  #join(space: PagedSpace, pi: number, e: number): void {
    space.pflags[pi] = space.pflags[pi]! | PAGE_MERGED
    space.revokeWrite(pi)
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
    if (from === this.#hintFrame) this.#hintFrame = -1 // the hint names a frame, which just moved
  }

  /**
   * Table maintenance: give back the entry arrays a worst-case reservation left unused (merge()
   * does when they are twice what the table needs; engine.maybeCompact() whenever they are half
   * again). Never while a user callback of the engine runs. O(table) when it acts, O(1) otherwise.
   */
  tidy(): void {
    if (this.pool.busy !== 0) return
    this.table.shrink(this.#entryMoved)
  }

  // ---------------------------------------------------------------- unmerge (MADV_UNMERGEABLE)

  /** Pages in [p0, p1) that unmerge would touch (break_ksm), and how many need a new frame. */
  #unmergeNeed(space: PagedSpace, p0: number, p1: number): number {
    const pool = this.pool
    let need = 0
    for (let pi = p0; pi < p1; pi++) {
      const fl = space.pflags[pi]!
      const f = space.frameAt(pi)
      if ((fl & PAGE_KSM_ZERO) !== 0) need++
      else if (f !== ZERO_FRAME && (pool.flags[f]! & FRAME_KSM) !== 0 && (pool.refcount[f]! > 1 || !pool.reuseSoleKsm || space.secure)) need++
    }
    return need
  }

  /**
   * Give every merged page, merge-placed zero page and page mapping a table frame in
   * [p0, p1) a private frame (break_ksm with FAULT_FLAG_UNSHARE: not a write, so uffd-wp
   * stays). Reserves every frame first. Returns the number of pages unshared.
   */
  unmerge(space: PagedSpace, p0: number, p1: number): number {
    this.pool.ensureFree(this.#unmergeNeed(space, p0, p1), "unmerge")
    return this.#unmergeReserved(space, p0, p1)
  }

  /** unmerge() once its frames are reserved: cannot fail. */
  #unmergeReserved(space: PagedSpace, p0: number, p1: number): number {
    const pool = this.pool
    const secure = space.secure
    let n = 0
    for (let pi = p0; pi < p1; pi++) {
      const fl = space.pflags[pi]!
      const f = space.frameAt(pi)
      const ksmZero = (fl & PAGE_KSM_ZERO) !== 0
      if (!ksmZero && (f === ZERO_FRAME || (pool.flags[f]! & FRAME_KSM) === 0)) continue
      if ((fl & PAGE_MERGED) !== 0) this.mergedPageLeft(f)
      let nf: number
      if (ksmZero) {
        nf = secure ? pool.allocRandom(true) : pool.allocZeroed()
        space.ksmZeroPages--
        pool.ksmZeroPages--
      } else if (pool.refcount[f] === 1 && (pool.flags[f]! & FRAME_KSM) === 0 && pool.reuseSoleKsm && !secure) {
        nf = f // it left the table and only this page maps it: it is private already
      } else {
        // Secure: merged or not, every table page pays the same copy into a random frame.
        nf = secure ? pool.allocRandom(false) : pool.alloc()
        pool.copy(f, nf)
      }
      if (nf !== f) {
        pool.refcount[nf] = 1
        space.setFrame(pi, nf)
        space.invalidate()
        pool.decref(f)
      }
      const rest = fl & ~(PAGE_MERGED | PAGE_KSM_ZERO)
      if ((rest & PAGE_UFFD_WP) !== 0) space.pflags[pi] = rest
      else space.grantWrite(pi, rest)
      // Writable without a fault: the idle count must restart (a write would not clear it now).
      if (space.idle !== null) space.idle[pi] = 0
      n++
    }
    return n
  }

  /** `echo 2 > run`: unmerge every space, drop every table entry and scanner item, reset full_scans. */
  unmergeAll(spaces: readonly PagedSpace[]): void {
    let need = 0
    for (const s of spaces) need += this.#unmergeNeed(s, 0, s.pages)
    this.pool.ensureFree(need, "unmerge")
    // One reservation for every space: a per-space one could fail after earlier spaces changed.
    for (const s of spaces) this.#unmergeReserved(s, 0, s.pages)
    if (this.table.size === 0) {
      this.#crowded.clear()
      this.#crowded2.clear()
    }
    this.scan?.resetForUnmergeAll()
  }

  // ---------------------------------------------------------------- tunables

  /** max_page_sharing: InvalidArgument below 2, Busy while pages are shared (as the kernel). */
  setMaxPageSharing(n: number): void {
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 2) throw new InvalidArgument(`maxPageSharing must be an integer >= 2, got ${show(n)}`)
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
    // A Set entry costs V8 about 16 bytes (hash table of key + chain).
    return this.table.bytes + (this.#crowded.size + this.#crowded2.size) * 16 + (this.#nhKey?.byteLength ?? 0) + this.scanCounters().metadataBytes
  }
}

/** Run user code (an injected checksum) with the engine marked busy: reentrant calls throw Busy. */
function guarded(pool: FramePool, hash: PageHash): PageHash {
  return (words, start, count) => {
    pool.busy++
    try {
      return hash(words, start, count)
    } finally {
      pool.busy--
    }
  }
}

/** findCandidate: nothing identical with room. */
export const NO_CANDIDATE = -1
/** findCandidate: too many equal-key entries to look through. */
export const CROWDED = -2
/** #find: cut short, but an identical entry (full) was seen: a new dup may be made. */
const FULL_CUT = -3
/** #hintPlace: the insert must crowd the key first (table keys are u32, so never -1). */
const CROWD_ON_INSERT = -1
/** #hintPlace: the insert must crowd the second-level key first. */
const CROWD2_ON_INSERT = -3
