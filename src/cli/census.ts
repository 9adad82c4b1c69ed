/**
 * The estimator's counting core: a census of page contents that answers "what would KSM save
 * on these pages?" without keeping the pages.
 *
 * Each non-zero page is reduced to a 128-bit digest (SHA-256 truncated, node:crypto); distinct
 * digests live in an open-addressing table over typed arrays with a count and a 32-byte preview
 * each. The all-zero content has the reserved id 0 and is recognised with a memcmp, not hashed.
 * Every page also leaves its content id and its page number (8 bytes) in its region's record so
 * the savings can be attributed to processes and mappings exactly, and duplicates at the same
 * offset told from duplicates elsewhere. Memory is therefore ~8 bytes per page read plus ~75 bytes
 * per distinct content plus ~40 bytes per page mapped by several processes (fork/COW): about 0.2%
 * of the input plus 1.8% of its unique part, whatever the input size.
 *
 * Physical pages: a page the caller marks as possibly shared (pagemap without the
 * exclusively-mapped bit) comes with its page frame number. A content is merged only when it sits
 * on two or more physical pages: N virtual pages on one physical page (fork/COW) are already one
 * page, and the kernel's unstable tree refuses to "substitute a ksm page for a forked page". When
 * a content does sit on several physical pages, every virtual page of it ends on KSM pages (the
 * forked mappings follow as "ksm page forked"), so the kernel's pages_sharing counts all of them,
 * while the memory freed is the physical pages minus the KSM pages kept. Keeping representatives in an sksm Engine instead would hold one 4 KiB frame per
 * distinct content, i.e. all of the unique data, which is what an estimator must not do.
 *
 * A 128-bit digest makes an accidental collision (two different pages counted as one) negligible
 * (~2^-64 at 2^32 distinct pages); the estimator is a measurement, not a merge, so it needs no
 * byte-for-byte confirmation.
 */
import { hash } from "node:crypto"

/** Bytes of content kept per distinct content for the "most duplicated" preview. */
export const PREVIEW_BYTES = 32
/** sizeof(struct ksm_rmap_item) on 64-bit: what general_profit charges per scanned page. */
export const KERNEL_RMAP_ITEM_BYTES = 64
/** Content id of the all-zero page. */
export const ZERO_ID = 0

/** How KSM would be configured: the two tunables that change the counts. */
export interface CensusOptions {
  readonly pageSize: number
  /** /sys/kernel/mm/ksm/max_page_sharing (>= 2). */
  readonly maxPageSharing: number
  /** /sys/kernel/mm/ksm/use_zero_pages. */
  readonly useZeroPages: boolean
}

/** Counts for a set of pages, KSM's way. */
export interface Counts {
  pages: number
  zeroPages: number
  /** Non-zero pages whose content occurs at least twice in the whole census. */
  duplicatePages: number
  /** Pages that would map a shared frame without owning it (KSM pages_sharing). */
  pagesSharing: number
  /** Shared frames that would remain (KSM pages_shared). */
  pagesShared: number
  /** Zero pages mapped to the zero page (use_zero_pages=1). */
  ksmZeroPages: number
  /**
   * Pages that would map a KSM page after merging, the owner of the frame included: the kernel's
   * per-process ksm_merging_pages (/proc/PID/ksm_stat). Independent of the order of the sources.
   */
  ksmMergingPages: number
  /** Pages whose content has two or more copies but all on one physical page (fork/COW): nothing to save. */
  cowSharedPages: number
}

/** One region (a mapping of a process, or a file) with its counts. */
export interface RegionCounts extends Counts {
  readonly source: number
  readonly label: string
  readonly start: number
  readonly end: number
  /** Pages present but unreadable (EIO), not counted. */
  unreadable: number
  /** Pages mapped by several processes whose physical page is unknown (no PFN access): not counted. */
  sharedExcluded: number
  /** Pages already on a KSM page when read. */
  alreadyKsm: number
  /** The region is opted in to KSM (VM_MERGEABLE); files and unknown: true. */
  readonly mergeable: boolean
  /** Duplicate non-zero pages with a copy at the same offset in another source. */
  dupSameOffset: number
}

/** A content and how often it occurs. */
export interface TopContent {
  readonly id: number
  readonly count: number
  /** Hex of the first 16 digest bytes; "zero" for the zero page. */
  readonly digest: string
  /** The first PREVIEW_BYTES bytes. */
  readonly preview: Uint8Array
  /** The one byte the page repeats, or -1. */
  readonly uniformByte: number
}

/** Counts of a whole census. */
export interface CensusTotals extends Counts {
  distinctContents: number
  /** Distinct non-zero contents occurring at least twice. */
  duplicatedContents: number
  /** KSM pages_unshared: pages left alone (unique contents, or the odd one past a full chain). */
  pagesUnshared: number
  /** Pages KSM would hold an rmap item for: every page scanned. */
  rmapItems: number
  /** The kernel's general_profit: (pagesSharing + ksmZeroPages) * pageSize - rmapItems * 64. */
  profitBytes: number
  /**
   * Physical pages merging would free: for each merged content its physical pages minus the KSM
   * pages kept, plus the zero pages with use_zero_pages. Equals pagesSharing + ksmZeroPages
   * when no page is mapped by several processes; smaller when some are (fork/COW).
   */
  freedPages: number
  /** freedPages * pageSize: the memory KSM would give back. */
  savedBytes: number
}

/** A counting region's running record. */
interface Region {
  readonly source: number
  readonly label: string
  readonly start: number
  readonly end: number
  readonly mergeable: boolean
  ids: Uint32Array
  /** Page number of each page (start / pageSize + index in the region). */
  at: Float64Array
  n: number
  unreadable: number
  sharedExcluded: number
  alreadyKsm: number
}

/**
 * KSM's rule for `n` identical pages and max_page_sharing `m` (ksm-semantics B.10): stable frames
 * take m mappers each; a last group of one page stays unshared.
 */
export function ksmCounts(n: number, m: number): { shared: number; sharing: number } {
  if (n < 2) return { shared: 0, sharing: 0 }
  const q = Math.floor(n / m)
  const r = n % m
  const shared = r <= 1 ? q : q + 1
  const sharing = r <= 1 ? q * (m - 1) : n - shared
  return { shared, sharing }
}

/**
 * Counts pages by content. Feed pages with {@link addPage}; read {@link totals}, {@link regions}
 * and {@link top} at the end. Not thread-safe, not incremental after reading results (they are
 * computed on demand from the counts).
 */
export class PageCensus {
  readonly pageSize: number
  readonly maxPageSharing: number
  readonly useZeroPages: boolean

  // Open addressing over the digest: slot -> id + 1 (0 = empty).
  #slots: Int32Array
  #mask: number
  // Per id (id 0 = zero page): 4 digest words, a count, a preview.
  #digest: Uint32Array
  #count: Uint32Array
  #preview: Uint8Array
  #uniform: Int16Array
  /** Physical pages each content sits on (exclusive pages count one each, shared ones once per PFN). */
  #frames: Uint32Array
  /** Contents seen on a page that was already a KSM page. */
  #ksm: Uint8Array
  /** PFNs of the possibly shared pages seen so far. */
  readonly #pfns = new Set<number>()
  #ids = 1
  readonly #zero: Buffer
  readonly #regions: Region[] = []

  constructor(options: CensusOptions) {
    this.pageSize = options.pageSize
    this.maxPageSharing = options.maxPageSharing
    this.useZeroPages = options.useZeroPages
    this.#zero = Buffer.alloc(options.pageSize)
    this.#slots = new Int32Array(1 << 12)
    this.#mask = (1 << 12) - 1
    const cap = 1 << 11
    this.#digest = new Uint32Array(cap * 4)
    this.#count = new Uint32Array(cap)
    this.#preview = new Uint8Array(cap * PREVIEW_BYTES)
    this.#uniform = new Int16Array(cap)
    this.#uniform[ZERO_ID] = 0
    this.#frames = new Uint32Array(cap)
    this.#ksm = new Uint8Array(cap)
  }

  /** Number of distinct contents seen so far (the zero page included once it is seen). */
  get distinct(): number {
    return this.#ids - 1 + (this.#count[ZERO_ID]! > 0 ? 1 : 0)
  }

  /** Bytes of bookkeeping held: what "bounded memory" means here. */
  get bytesHeld(): number {
    let r = 0
    for (const g of this.#regions) r += g.ids.byteLength + g.at.byteLength
    return this.#slots.byteLength + this.#digest.byteLength + this.#count.byteLength + this.#preview.byteLength + this.#uniform.byteLength + this.#frames.byteLength + this.#ksm.byteLength + r + this.#pfns.size * 40
  }

  /**
   * Open a region (a mapping or a file) of `source`; pages added to it are attributed to it.
   * `mergeable`: whether KSM would scan it as it is (VM_MERGEABLE); only reported.
   */
  region(source: number, label: string, start: number, end: number, mergeable = true): number {
    this.#regions.push({ source, label, start, end, mergeable, ids: new Uint32Array(64), at: new Float64Array(64), n: 0, unreadable: 0, sharedExcluded: 0, alreadyKsm: 0 })
    return this.#regions.length - 1
  }

  /** Record pages mapped by several processes that were left out (their physical page is unknown). */
  excludeShared(region: number, pages: number): void {
    this.#regions[region]!.sharedExcluded += pages
  }

  /** Record pages a region could not read. */
  unreadable(region: number, pages: number): void {
    this.#regions[region]!.unreadable += pages
  }

  /**
   * Count the page at `bytes[off, off + pageSize)` in `region`; returns its content id.
   * `page`: its page number (address / pageSize, or file offset / pageSize); `pfn`: -1 for a page
   * mapped only here (its own physical page), else the physical page it maps, which other pages
   * may map too (fork/COW); `ksm`: it is already a KSM page.
   */
  addPage(region: number, bytes: Buffer, off: number, page = -1, pfn = -1, ksm = false): number {
    const ps = this.pageSize
    let id: number
    if (this.#zero.compare(bytes, off, off + ps) === 0) {
      id = ZERO_ID
      this.#count[ZERO_ID]!++
    } else {
      id = this.#lookup(bytes, off)
    }
    if (pfn < 0) this.#frames[id]!++
    else if (!this.#pfns.has(pfn)) {
      this.#pfns.add(pfn)
      this.#frames[id]!++
    }
    const g = this.#regions[region]!
    if (ksm) {
      this.#ksm[id] = 1
      g.alreadyKsm++
    }
    if (g.n === g.ids.length) {
      const grown = new Uint32Array(g.ids.length * 2)
      grown.set(g.ids)
      g.ids = grown
      const at = new Float64Array(g.ids.length)
      at.set(g.at)
      g.at = at
    }
    g.at[g.n] = page
    g.ids[g.n++] = id
    return id
  }

  /** Whether content `id` would be merged: on two or more physical pages (or already a KSM page). */
  #merges(id: number): boolean {
    return this.#frames[id]! >= 2 || this.#ksm[id] === 1
  }

  #lookup(bytes: Buffer, off: number): number {
    const ps = this.pageSize
    const page = bytes.subarray(off, off + ps)
    const d = hash("sha256", page, "buffer") as unknown as Buffer
    const w0 = d.readUInt32LE(0)
    const w1 = d.readUInt32LE(4)
    const w2 = d.readUInt32LE(8)
    const w3 = d.readUInt32LE(12)
    const slots = this.#slots
    const dig = this.#digest
    let s = w0 & this.#mask
    for (;;) {
      const v = slots[s]!
      if (v === 0) break
      const id = v - 1
      const o = id * 4
      if (dig[o] === w0 && dig[o + 1] === w1 && dig[o + 2] === w2 && dig[o + 3] === w3) {
        this.#count[id]!++
        return id
      }
      s = (s + 1) & this.#mask
    }
    // A new content.
    const id = this.#ids++
    if (id >= this.#count.length) this.#growIds()
    const o = id * 4
    this.#digest[o] = w0
    this.#digest[o + 1] = w1
    this.#digest[o + 2] = w2
    this.#digest[o + 3] = w3
    this.#count[id] = 1
    this.#preview.set(page.subarray(0, PREVIEW_BYTES), id * PREVIEW_BYTES)
    this.#uniform[id] = uniformByte(page)
    this.#slots[s] = id + 1
    // Keep the load factor under 1/2 so probes stay short.
    if (this.#ids * 2 > this.#slots.length) this.#rehash()
    return id
  }

  #growIds(): void {
    const cap = this.#count.length * 2
    const d = new Uint32Array(cap * 4)
    d.set(this.#digest)
    this.#digest = d
    const c = new Uint32Array(cap)
    c.set(this.#count)
    this.#count = c
    const p = new Uint8Array(cap * PREVIEW_BYTES)
    p.set(this.#preview)
    this.#preview = p
    const u = new Int16Array(cap)
    u.set(this.#uniform)
    this.#uniform = u
    const f = new Uint32Array(cap)
    f.set(this.#frames)
    this.#frames = f
    const k = new Uint8Array(cap)
    k.set(this.#ksm)
    this.#ksm = k
  }

  #rehash(): void {
    const size = this.#slots.length * 2
    const slots = new Int32Array(size)
    const mask = size - 1
    const dig = this.#digest
    for (let id = 1; id < this.#ids; id++) {
      let s = dig[id * 4]! & mask
      while (slots[s] !== 0) s = (s + 1) & mask
      slots[s] = id + 1
    }
    this.#slots = slots
    this.#mask = mask
  }

  /** How often content `id` occurs. */
  countOf(id: number): number {
    return this.#count[id] ?? 0
  }

  /** Totals over every page, KSM's way. */
  totals(): CensusTotals {
    const m = this.maxPageSharing
    const count = this.#count
    const t: CensusTotals = {
      pages: 0, zeroPages: 0, duplicatePages: 0, pagesSharing: 0, pagesShared: 0, ksmZeroPages: 0, ksmMergingPages: 0, cowSharedPages: 0,
      distinctContents: this.distinct, duplicatedContents: 0, pagesUnshared: 0, rmapItems: 0, profitBytes: 0, freedPages: 0, savedBytes: 0,
    }
    for (let id = 0; id < this.#ids; id++) {
      const n = count[id]!
      t.pages += n
      if (id === ZERO_ID) {
        t.zeroPages = n
        if (this.useZeroPages) {
          // Every zero page is replaced by the zero page, forked or not.
          t.ksmZeroPages = n
          t.freedPages += this.#frames[id]!
          continue
        }
      } else if (n >= 2) {
        t.duplicatePages += n
        t.duplicatedContents++
      }
      if (n >= 2 && !this.#merges(id)) {
        t.cowSharedPages += n
        t.pagesUnshared += n
        continue
      }
      const { shared, sharing } = ksmCounts(n, m)
      t.pagesShared += shared
      t.pagesSharing += sharing
      t.pagesUnshared += n - shared - sharing
      // The kept KSM pages and a lone leftover page keep a frame each; the other frames go.
      if (shared > 0) t.freedPages += Math.max(0, Math.min(sharing, this.#frames[id]! - shared - (n - shared - sharing)))
    }
    t.ksmMergingPages = t.pagesShared + t.pagesSharing
    t.rmapItems = t.pages
    t.savedBytes = t.freedPages * this.pageSize
    t.profitBytes = (t.pagesSharing + t.ksmZeroPages) * this.pageSize - t.rmapItems * KERNEL_RMAP_ITEM_BYTES
    return t
  }

  /**
   * Counts per region. ksmMergingPages, cowSharedPages and ksmZeroPages do not depend on the order
   * the regions were read in (the kernel's per-process view). pagesShared / pagesSharing split
   * each merged content in scan order (the first page of each group of max_page_sharing keeps the
   * frame), so the regions add up to the totals; read the sources in a fixed order to make that
   * split reproducible.
   */
  regions(): RegionCounts[] {
    const m = this.maxPageSharing
    const count = this.#count
    const seen = new Uint32Array(this.#ids)
    // Duplicates at the same offset: content -> page -> the one source holding it there, or -1
    // once two sources do.
    const where = new Map<number, Map<number, number>>()
    for (const g of this.#regions) {
      for (let i = 0; i < g.n; i++) {
        const id = g.ids[i]!
        if (id === ZERO_ID || count[id]! < 2 || g.at[i]! < 0) continue
        let pages = where.get(id)
        if (pages === undefined) where.set(id, (pages = new Map()))
        const v = pages.get(g.at[i]!)
        if (v === undefined) pages.set(g.at[i]!, g.source)
        else if (v !== g.source) pages.set(g.at[i]!, -1)
      }
    }
    const out: RegionCounts[] = []
    for (const g of this.#regions) {
      const r: RegionCounts = {
        source: g.source, label: g.label, start: g.start, end: g.end, unreadable: g.unreadable, mergeable: g.mergeable,
        sharedExcluded: g.sharedExcluded, alreadyKsm: g.alreadyKsm, dupSameOffset: 0,
        pages: g.n, zeroPages: 0, duplicatePages: 0, pagesSharing: 0, pagesShared: 0, ksmZeroPages: 0, ksmMergingPages: 0, cowSharedPages: 0,
      }
      const ids = g.ids
      for (let i = 0; i < g.n; i++) {
        const id = ids[i]!
        const n = count[id]!
        if (id === ZERO_ID) {
          r.zeroPages++
          if (this.useZeroPages) {
            r.ksmZeroPages++
            continue
          }
        } else if (n >= 2) {
          r.duplicatePages++
          if (where.get(id)?.get(g.at[i]!) === -1) r.dupSameOffset++
        }
        if (n < 2) continue
        if (!this.#merges(id)) {
          r.cowSharedPages++
          continue
        }
        const k = seen[id]!++
        // Occurrence k falls in group floor(k/m) of size min(m, n - group*m).
        const group = Math.floor(k / m)
        const size = Math.min(m, n - group * m)
        if (size < 2) continue
        r.ksmMergingPages++
        if (k % m === 0) r.pagesShared++
        else r.pagesSharing++
      }
      out.push(r)
    }
    return out
  }

  /** The `limit` contents occurring most often (at least twice), most frequent first. */
  top(limit: number): TopContent[] {
    const count = this.#count
    const pick: number[] = []
    for (let id = 0; id < this.#ids; id++) if (count[id]! >= 2) pick.push(id)
    pick.sort((a, b) => count[b]! - count[a]! || a - b)
    return pick.slice(0, limit).map((id) => this.#content(id))
  }

  #content(id: number): TopContent {
    if (id === ZERO_ID) return { id, count: this.#count[id]!, digest: "zero", preview: new Uint8Array(PREVIEW_BYTES), uniformByte: 0 }
    const o = id * 4
    const words = this.#digest.subarray(o, o + 4)
    const digest = Buffer.from(words.buffer, words.byteOffset, 16).toString("hex")
    const preview = this.#preview.slice(id * PREVIEW_BYTES, (id + 1) * PREVIEW_BYTES)
    return { id, count: this.#count[id]!, digest, preview, uniformByte: this.#uniform[id]! }
  }
}

/** The byte a page consists of, or -1 if it holds two different bytes. */
function uniformByte(page: Uint8Array): number {
  const b = page[0]!
  for (let i = 1; i < page.length; i++) if (page[i] !== b) return -1
  return b
}
