/**
 * The content oracle: a census of memory images page by page, independent of sksm (a page is
 * zero if it equals a zero page, otherwise it is named by the SHA-256 of its bytes), and the
 * counters a correct merge must reach from it.
 *
 * After a full merge with max_page_sharing M, a content with n copies takes ceil(n / M)
 * frames; the kernel's counters follow its chain rule (bench/workload.ts identicalCounts):
 * a frame with two or more mappers is shared, the others map it as "sharing", and a content
 * left with one page over (n mod M == 1) keeps that page private.
 */
import { createHash } from "node:crypto"
import { identicalCounts } from "../../bench/workload.ts"
import { PAGE, type WorkloadStats } from "./cache.ts"

/** Bytes of a page that may be non-zero for the page to count as "nearly zero". */
const NEARLY_ZERO_BYTES = 16

/** What the oracle knows about a set of images. */
export interface Census extends WorkloadStats {
  /** Copies of each distinct non-zero content (SHA-256, base64) across all images. */
  readonly copies: ReadonlyMap<string, number>
}

/** The counters and frames a full merge must reach. */
export interface Expected {
  /** engine.memory().framesInUse (the zero frame excluded). */
  readonly framesInUse: number
  readonly pagesShared: number
  readonly pagesSharing: number
  readonly ksmZeroPages: number
}

const ZERO = new Uint8Array(PAGE)

function countNonZeroBytes(page: Uint8Array, limit: number): number {
  let n = 0
  for (let i = 0; i < page.length && n <= limit; i++) if (page[i] !== 0) n++
  return n
}

/** Census of `images` (each a multiple of {@link PAGE} bytes). */
export function census(images: readonly Uint8Array[]): Census {
  const copies = new Map<string, number>()
  const owner = new Map<string, number>() // first image a content was seen in; -1 once seen in two
  let pages = 0
  let zeroPages = 0
  let nearlyZeroPages = 0
  const zero = Buffer.from(ZERO)
  images.forEach((img, inst) => {
    const buf = Buffer.from(img.buffer, img.byteOffset, img.byteLength)
    for (let off = 0; off < buf.length; off += PAGE) {
      pages++
      const page = buf.subarray(off, off + PAGE)
      if (page.equals(zero)) {
        zeroPages++
        continue
      }
      if (countNonZeroBytes(page, NEARLY_ZERO_BYTES) <= NEARLY_ZERO_BYTES) nearlyZeroPages++
      const h = createHash("sha256").update(page).digest("base64")
      copies.set(h, (copies.get(h) ?? 0) + 1)
      const o = owner.get(h)
      if (o === undefined) owner.set(h, inst)
      else if (o !== inst) owner.set(h, -1)
    }
  })
  let sharedPages = 0
  let crossInstancePages = 0
  let uniquePages = 0
  for (const [h, n] of copies) {
    if (n === 1) uniquePages++
    else sharedPages += n
    if (owner.get(h) === -1) crossInstancePages += n
  }
  return { pages, zeroPages, distinctNonZero: copies.size, sharedPages, crossInstancePages, uniquePages, nearlyZeroPages, copies }
}

/** The plain statistics of a census (what a manifest stores). */
export function statsOf(c: Census): WorkloadStats {
  const { copies: _, ...stats } = c
  return stats
}

/** What a full merge of the census's pages must give under `maxPageSharing` and `useZeroPages`. */
export function expected(c: Census, maxPageSharing: number, useZeroPages: boolean): Expected {
  let framesInUse = 0
  let pagesShared = 0
  let pagesSharing = 0
  const add = (n: number): void => {
    framesInUse += Math.ceil(n / maxPageSharing)
    const k = identicalCounts(n, maxPageSharing)
    pagesShared += k.shared
    pagesSharing += k.sharing
  }
  for (const n of c.copies.values()) add(n)
  if (!useZeroPages && c.zeroPages > 0) add(c.zeroPages)
  return { framesInUse, pagesShared, pagesSharing, ksmZeroPages: useZeroPages ? c.zeroPages : 0 }
}

/** Percent with one decimal. */
export function pct(part: number, whole: number): string {
  return whole === 0 ? "0%" : `${((100 * part) / whole).toFixed(1)}%`
}

/** One line describing a census. */
export function describeStats(s: WorkloadStats): string {
  return (
    `${s.pages} pages: zero ${s.zeroPages} (${pct(s.zeroPages, s.pages)}), shared ${s.sharedPages} (${pct(s.sharedPages, s.pages)}; across instances ${pct(s.crossInstancePages, s.pages)}), ` +
    `unique ${s.uniquePages} (${pct(s.uniquePages, s.pages)}); ${s.distinctNonZero} distinct non-zero contents; nearly-zero pages ${s.nearlyZeroPages}`
  )
}
