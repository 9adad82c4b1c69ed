/**
 * The merge workloads of issue 3, built once per bench and written into fresh spaces:
 *
 * - W: the first `dup` fraction of pages hold `contents` distinct contents repeated
 *   (page i has content i mod contents), the rest are random unique pages. The kernel
 *   helper (kernel-ksm/ksm_w.c) builds the same shape in C.
 * - unique: every page random.
 * - zero: every page populated with zeros (fill, like memset).
 */
import { randomFillSync } from "node:crypto"
import { type AddressSpace, Engine } from "../test/helpers/internals.ts"
import { MiB, PAGE } from "./lib.ts"

/** Shape of a workload. */
export interface WorkloadSpec {
  readonly kind: "W" | "unique" | "zero"
  readonly sizeBytes: number
  /** Fraction of pages that are duplicates (W only). */
  readonly dup: number
  /** Distinct duplicate contents (W only). */
  readonly contents: number
}

/** A workload's bytes, ready to write into spaces again and again. */
export interface Workload {
  readonly spec: WorkloadSpec
  readonly pages: number
  /** Pages [0, dupPages) are the duplicates. */
  readonly dupPages: number
  /** One random page per distinct content. */
  readonly contentPages: readonly Uint8Array[]
  /** Random bytes of the unique pages [dupPages, pages). */
  readonly uniqueBytes: Uint8Array
}

/** Build the bytes of a workload (random contents; no two pages equal outside the dup set). */
export function makeWorkload(spec: WorkloadSpec): Workload {
  const pages = spec.sizeBytes / PAGE
  if (!Number.isInteger(pages)) throw new Error("workload size must be a multiple of 4 KiB")
  const dupPages = spec.kind === "W" ? Math.round(pages * spec.dup) : 0
  const contentPages: Uint8Array[] = []
  if (spec.kind === "W") for (let c = 0; c < spec.contents; c++) contentPages.push(randomFillSync(new Uint8Array(PAGE)))
  const uniqueBytes = spec.kind === "zero" ? new Uint8Array(0) : randomFillSync(Buffer.allocUnsafe((pages - dupPages) * PAGE))
  return { spec, pages, dupPages, contentPages, uniqueBytes }
}

/** Write workload `w` into `space` (which must be at least as large). Every page ends up populated. */
export function populate(space: AddressSpace, w: Workload): void {
  if (w.spec.kind === "zero") {
    space.fill(0, w.pages * PAGE, 0)
    return
  }
  const n = w.spec.contents
  for (let pi = 0; pi < w.dupPages; pi++) space.write(pi * PAGE, w.contentPages[pi % n]!)
  const base = w.dupPages * PAGE
  const u = w.uniqueBytes
  for (let off = 0; off < u.length; off += MiB) space.write(base + off, u.subarray(off, Math.min(off + MiB, u.length)))
}

/**
 * The kernel's counters for N identical pages under max_page_sharing M (ksm_tests.c's
 * rule): if N mod M is 0 or 1, shared = floor(N/M) and sharing = shared*(M-1); otherwise
 * shared = floor(N/M)+1 and sharing = N - shared.
 */
export function identicalCounts(n: number, m: number): { shared: number; sharing: number } {
  if (n < 2) return { shared: 0, sharing: 0 }
  if (n % m === 0 || n % m === 1) {
    const shared = Math.floor(n / m)
    return { shared, sharing: shared * (m - 1) }
  }
  const shared = Math.floor(n / m) + 1
  return { shared, sharing: n - shared }
}

/** pages_shared / pages_sharing a full merge of W must reach under max_page_sharing `m`. */
export function expectedCounts(pages: number, dup: number, contents: number, m: number): { shared: number; sharing: number } {
  const dupPages = Math.round(pages * dup)
  let shared = 0
  let sharing = 0
  for (let c = 0; c < contents; c++) {
    // page i holds content i mod contents
    const n = Math.floor(dupPages / contents) + (c < dupPages % contents ? 1 : 0)
    const k = identicalCounts(n, m)
    shared += k.shared
    sharing += k.sharing
  }
  return { shared, sharing }
}

/** Workload W (half `contents` contents repeated, half random) as the bytes of one image (untimed). */
export function imageW(sizeBytes: number, contents = 16): Uint8Array {
  const space = new Engine().createSpace({ size: sizeBytes })
  populate(space, makeWorkload({ kind: "W", sizeBytes, dup: 0.5, contents }))
  const img = space.read(0, sizeBytes)
  space.dispose()
  return img
}
