/**
 * PAGEMAP_SCAN (Linux 6.7+, `ioctl(pagemap_fd, PAGEMAP_SCAN, &pm_scan_arg)`): walk a range of a
 * space, classify every page into categories, report the runs of pages that match a category
 * expression, and optionally write-protect the matched written pages in the same pass.
 *
 * Together with {@link PagedSpace.writeProtect} (UFFDIO_WRITEPROTECT in async mode) this is
 * the write tracking a userspace scanner reads: protect a range, let the host run, then
 * `pagemapScan({ ..., categoryMask: WRITTEN, returnMask: WRITTEN, wpMatching: true })` returns
 * exactly the pages written since, and re-arms them.
 *
 * The rules are the kernel's (fs/proc/task_mmu.c: pagemap_scan_get_args, _is_interesting_page,
 * _output, _push_range, do_pagemap_scan), applied page by page over the flat page table:
 * - match: `cats ^= inverted; (cats & mask) == mask && (!anyof || cats & anyof)`;
 * - output: `cats & returnMask`, appended to the last region when contiguous and equal;
 * - maxPages truncates the last region; a full output stops the walk; walkEnd is where the
 *   walk stopped, or `end` when it ran to the end;
 * - wpMatching protects the matched pages that are WRITTEN, and only those that were output.
 *
 * Differences from the kernel are listed in {@link pagemapScan}'s doc comment.
 */
import { InvalidArgument, OutOfBounds } from "../errors.ts"
import { checkBool, checkInt, readOptions, show } from "../validate.ts"
import { ZERO_FRAME } from "./frames.ts"
import { PAGE_KSM_ZERO, PAGE_SOFT_DIRTY, PAGE_UFFD_REG, PAGE_UFFD_WP } from "./flags.ts"

/** What a PAGEMAP_SCAN walks: a space's page table and flags (PagedSpace is one). */
export interface PagemapTarget {
  readonly pageSize: number
  readonly size: number
  readonly pflags: Uint8Array
  /** The frame page `pi` maps. */
  frameAt(pi: number): number
  /** Write-protect page `pi` (wpMatching). */
  revokeWrite(pi: number): void
  /** Throws SpaceDisposed after dispose. */
  live(): void
  /** Called with the validated page range before the walk: a space fills its missing pages there. */
  prepareScan?(p0: number, p1: number): void
}

/**
 * Page categories of PAGEMAP_SCAN, with the kernel's bit values (`PAGE_IS_*` in
 * include/uapi/linux/fs.h). Combine with `|` for the masks of {@link PagemapScanArgs}.
 *
 * sksm sets WPALLOWED, WRITTEN, PRESENT, PFNZERO and SOFT_DIRTY. FILE, SWAPPED and HUGE are
 * valid in masks but never set: a space is anonymous memory with no swap and no huge pages.
 */
export const PageCategory = {
  /** The page is registered for async uffd write-protect (its "VMA" allows WP). */
  WPALLOWED: 1,
  /** Written since it was last write-protected (or, unregistered, present at all). */
  WRITTEN: 2,
  /** File-backed. Never set in sksm. */
  FILE: 4,
  /** Maps a frame: populated, or a merge-placed zero page. */
  PRESENT: 8,
  /** Swapped out. Never set in sksm. */
  SWAPPED: 16,
  /** Present and mapping the zero frame: a merge-placed zero page. */
  PFNZERO: 32,
  /** THP or hugetlb. Never set in sksm. */
  HUGE: 64,
  /** Soft-dirty: written at least once since it was populated. */
  SOFT_DIRTY: 128,
} as const

/** Every category bit the kernel knows (PM_SCAN_CATEGORIES). Any other bit is InvalidArgument. */
export const PAGE_CATEGORIES_ALL = 0xff

/** Arguments of {@link pagemapScan}: the fields of `struct pm_scan_arg`, addresses in bytes. */
export interface PagemapScanArgs {
  /** First byte to scan; page-aligned. */
  readonly start: number
  /** End of the scan (exclusive); rounded up to a page boundary; at most the space size. */
  readonly end: number
  /** Categories that must all be set (after `categoryInverted`). @default 0 */
  readonly categoryMask?: number
  /** Categories to invert before matching (turns "set" into "clear" in both masks). @default 0 */
  readonly categoryInverted?: number
  /** If non-zero, at least one of these must be set (after inversion). @default 0 */
  readonly categoryAnyofMask?: number
  /** Categories reported per region; 0 coalesces every contiguous matching run. */
  readonly returnMask: number
  /** Stop after this many pages have been reported (the last region is cut). 0 = unlimited. @default 0 */
  readonly maxPages?: number
  /**
   * Room for this many regions (the kernel's `vec_len`); a page that would need one more stops
   * the walk. 0 = no output at all: the whole range is walked (maxPages then does not apply)
   * and only wpMatching has an effect. @default unlimited
   */
  readonly maxRegions?: number
  /** PM_SCAN_WP_MATCHING: write-protect the reported pages that are WRITTEN, in the same pass. @default false */
  readonly wpMatching?: boolean
  /** PM_SCAN_CHECK_WPASYNC: fail if any page of the range is not registered. @default false */
  readonly checkWpAsync?: boolean
}

/** One reported run (`struct page_region`): `[start, end)` in bytes, and its `categories & returnMask`. */
export interface PageRegion {
  readonly start: number
  readonly end: number
  readonly categories: number
}

/** Result of {@link pagemapScan}. */
export interface PagemapScanResult {
  /** The matching runs, in address order. */
  readonly regions: PageRegion[]
  /** Where the walk stopped: `end` if it walked the whole range; else the first page not reported. */
  readonly walkEnd: number
}

/** The keys of PagemapScanArgs; any other key is InvalidArgument, as the kernel rejects unknown flag bits (a typo must not pass silently). */
const KNOWN_KEYS: readonly string[] = [
  "start",
  "end",
  "categoryMask",
  "categoryInverted",
  "categoryAnyofMask",
  "returnMask",
  "maxPages",
  "maxRegions",
  "wpMatching",
  "checkWpAsync",
]

const WPALLOWED = PageCategory.WPALLOWED
const WRITTEN = PageCategory.WRITTEN

/** Index bit of {@link CATEGORIES} for "the page maps the zero frame". */
const ON_ZERO_FRAME = 256

/**
 * Categories of a page, indexed by `pflags | (frame === ZERO_FRAME ? 256 : 0)`; built once, so
 * the walk costs one compare and one load per page.
 */
const CATEGORIES: Uint8Array = buildCategoryTable()

function buildCategoryTable(): Uint8Array {
  const t = new Uint8Array(512)
  for (let i = 0; i < 512; i++) t[i] = categoriesOf(i & 0xff, (i & ON_ZERO_FRAME) !== 0)
  return t
}

/**
 * The categories of one page from its flag byte and whether it maps the zero frame.
 * Cold (used to build the table and by tests); the rules, in the kernel's terms:
 * - PRESENT: the PTE maps a frame. Populated pages do; a merge-placed zero page maps the
 *   zero frame (a present zero-pfn PTE); an unpopulated page has no PTE (`pte_none`).
 * - PFNZERO: present and the frame is the zero frame, i.e. a merge-placed zero page. (A read
 *   never installs a zero-pfn PTE in sksm: reads do not populate.)
 * - WPALLOWED: registered for async uffd-wp (the kernel: the VMA is, with WP_UNPOPULATED).
 * - WRITTEN, registered: the uffd-wp bit (or marker) is clear, populated or not. For an
 *   unpopulated page this is the newer kernels' generic-path answer (July 2026: `pte_none` and
 *   PMD holes in uffd-wp VMAs read WRITTEN); older kernels said 0 there except on the
 *   WRITTEN-only fast path. A registered page loses its protection only by a write or a
 *   discard, and a never-protected registered page has nothing to compare against, so "not
 *   protected" is the only consistent meaning of WRITTEN.
 * - WRITTEN, unregistered: present (the kernel reports every present PTE outside uffd VMAs as
 *   written; `pte_none` there is 0 on the generic path).
 * - SOFT_DIRTY: the page's soft-dirty bit (set by every write fault, cleared by discard).
 */
export function categoriesOf(pflags: number, onZeroFrame: boolean): number {
  const present = !onZeroFrame || (pflags & PAGE_KSM_ZERO) !== 0
  let c = 0
  if ((pflags & PAGE_UFFD_REG) !== 0) {
    c |= WPALLOWED
    if ((pflags & PAGE_UFFD_WP) === 0) c |= WRITTEN
  } else if (present) {
    c |= WRITTEN
  }
  if (present) {
    c |= PageCategory.PRESENT
    if (onZeroFrame) c |= PageCategory.PFNZERO
  }
  if ((pflags & PAGE_SOFT_DIRTY) !== 0) c |= PageCategory.SOFT_DIRTY
  return c
}

function checkMask(name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new InvalidArgument(`${name} must be an integer of PageCategory bits, got ${show(value)}`)
  }
  // `&` sees only the low 32 bits: bits above them (2^32 and up) are unknown bits too.
  if (value < 0 || value > 0xffffffff || (value & ~PAGE_CATEGORIES_ALL) !== 0) {
    throw new InvalidArgument(`${name} has unknown category bits: ${value} (known: 0x${PAGE_CATEGORIES_ALL.toString(16)})`)
  }
  return value
}

function optMask(name: string, value: unknown): number {
  return value === undefined ? 0 : checkMask(name, value)
}

function optFlag(name: string, value: unknown): boolean {
  return value === undefined ? false : checkBool(name, value)
}

function optCount(name: string, value: unknown, ifAbsent: number): number {
  if (value === undefined) return ifAbsent
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgument(`${name} must be a non-negative safe integer, got ${show(value)}`)
  }
  return value
}

/**
 * PAGEMAP_SCAN over `[start, end)` of `space`: the kernel's `ioctl(PAGEMAP_SCAN)` on
 * /proc/pid/pagemap. Use `space.pagemapScan(args)`; see {@link PagemapScanArgs}.
 *
 * All arguments are checked before anything is read or protected: a failed call changes
 * nothing (InvalidArgument for types, unknown keys or category bits, an unaligned start,
 * an unregistered page under checkWpAsync; OutOfBounds for `start > end` or `end` past the
 * space; SpaceDisposed after dispose).
 *
 * Differences from the kernel, all deliberate:
 * - checkWpAsync fails (InvalidArgument; the kernel's EPERM) if ANY page of the range is
 *   unregistered, checked before the walk. The kernel fails only when its walk reaches such a
 *   VMA, after it may already have protected pages before it; sksm keeps "a failed call
 *   changes nothing".
 * - Without checkWpAsync, wpMatching skips unregistered pages silently (the kernel skips the
 *   VMA), so they are neither reported nor protected; plain scans report them.
 * - maxRegions 0 (no output buffer): like the kernel, nothing is reported, maxPages does not
 *   apply and walkEnd is `end`; with wpMatching sksm protects the pages the masks match that
 *   are WRITTEN. The kernel's no-buffer fast path protects every unprotected PTE regardless
 *   of the masks (only inside populated page tables); the two agree for the usual
 *   `categoryMask: WRITTEN`.
 * - Unpopulated pages: see {@link categoriesOf} (newer kernels' generic path; no WRITTEN-only
 *   fast-path quirk for unregistered pages).
 * - No VM_SOFTDIRTY: a fresh kernel mapping reads SOFT_DIRTY everywhere until clear_refs;
 *   sksm has no clear_refs, and SOFT_DIRTY is the page's own bit only.
 * - Regions are returned as objects (no user buffer, so no EFAULT), one per run.
 */
export function pagemapScan(space: PagemapTarget, argsIn: PagemapScanArgs): PagemapScanResult {
  space.live()
  if (argsIn === undefined) throw new InvalidArgument("pagemapScan args must be an object { start, end, returnMask, ... }")
  // One read of each field into a frozen snapshot: a getter cannot change a field after its check.
  const args = readOptions("pagemapScan()", argsIn, KNOWN_KEYS) as Partial<PagemapScanArgs>
  const ps = space.pageSize
  const start = checkInt("start", args.start)
  const rawEnd = checkInt("end", args.end)
  if (start % ps !== 0) throw new InvalidArgument(`start ${start} is not page-aligned (${ps})`)
  if (start > rawEnd) throw new OutOfBounds(`start ${start} is past end ${rawEnd}`)
  if (rawEnd > space.size) throw new OutOfBounds(`end ${rawEnd} is beyond the space size ${space.size}`)
  const inverted = optMask("categoryInverted", args.categoryInverted)
  const mask = optMask("categoryMask", args.categoryMask)
  const anyof = optMask("categoryAnyofMask", args.categoryAnyofMask)
  if (args.returnMask === undefined) throw new InvalidArgument("returnMask is required (0 coalesces every matching run)")
  const ret = checkMask("returnMask", args.returnMask)
  const maxPagesArg = optCount("maxPages", args.maxPages, 0)
  const maxPages = maxPagesArg === 0 ? Number.POSITIVE_INFINITY : maxPagesArg
  const maxRegions = optCount("maxRegions", args.maxRegions, Number.POSITIVE_INFINITY)
  const wp = optFlag("wpMatching", args.wpMatching)
  const checkWp = optFlag("checkWpAsync", args.checkWpAsync)

  // end is rounded up to a page (ALIGN(end, PAGE_SIZE)); size is page-aligned, so still in range.
  const p0 = start / ps
  const p1 = Math.ceil(rawEnd / ps)
  if (checkWp) {
    for (let pi = p0; pi < p1; pi++) {
      if ((space.pflags[pi]! & PAGE_UFFD_REG) === 0) {
        throw new InvalidArgument(`checkWpAsync: page at ${pi * ps} is not registered for async write-protect (EPERM); call writeProtect on it first`)
      }
    }
  }
  // A missing page (registerMissing) has contents not here yet: filled first, never reported absent.
  space.prepareScan?.(p0, p1)
  return pagemapWalk(space, p0, p1, inverted, mask, anyof, ret, maxPages, maxRegions, wp)
}

/**
 * The walk of {@link pagemapScan} over pages [p0, p1), arguments already validated (masks of
 * known bits, `maxPages`/`maxRegions` Infinity for unlimited). The scanner's tracked policy
 * calls it directly: validation is for callers, not for the library's own fixed arguments.
 */
export function pagemapWalk(
  space: PagemapTarget,
  p0: number,
  p1: number,
  inverted: number,
  mask: number,
  anyof: number,
  ret: number,
  maxPages: number,
  maxRegions: number,
  wp: boolean,
): PagemapScanResult {
  const ps = space.pageSize
  const end = p1 * ps
  const pflags = space.pflags

  const regions: PageRegion[] = []
  const output = maxRegions > 0
  let found = 0
  // The region being built (the kernel's cur_buf), in pages; curEnd -1 = none yet.
  let curStart = -1
  let curEnd = -1
  let curCats = 0
  let walkEnd = end
  // Imported constants copied to locals: a module loader (tsx) may turn imports into getter
  // calls, which would cost more than the rest of the loop body.
  const zeroFrame = ZERO_FRAME
  const table = CATEGORIES
  const setWp = PAGE_UFFD_WP

  for (let pi = p0; pi < p1; pi++) {
    const fl = pflags[pi]!
    const c = table[space.frameAt(pi) === zeroFrame ? fl | ON_ZERO_FRAME : fl]!
    // With wpMatching an unregistered "VMA" is skipped whole (pagemap_scan_test_walk).
    if (wp && (c & WPALLOWED) === 0) continue
    const x = c ^ inverted
    if ((x & mask) !== mask || (anyof !== 0 && (x & anyof) === 0)) continue
    if (output) {
      // pagemap_scan_output: max_pages first (cuts the region at this page), then room.
      if (found >= maxPages) {
        walkEnd = pi * ps
        break
      }
      const rc = c & ret
      if (pi === curEnd && rc === curCats) {
        curEnd++
      } else {
        if (curEnd !== -1) {
          if (regions.length + 1 >= maxRegions) {
            walkEnd = pi * ps
            break
          }
          regions.push({ start: curStart * ps, end: curEnd * ps, categories: curCats })
        }
        curStart = pi
        curEnd = pi + 1
        curCats = rc
      }
      found++
    }
    // make_uffd_wp_pte: only pages that were reported (or any match with no output).
    if (wp && (c & WRITTEN) !== 0) {
      pflags[pi] = fl | setWp
      space.revokeWrite(pi)
    }
  }
  if (curEnd !== -1) regions.push({ start: curStart * ps, end: curEnd * ps, categories: curCats })
  return { regions, walkEnd }
}
