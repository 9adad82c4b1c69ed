/**
 * How pages get merged in the ported KSM selftests: the driver table. Each ported test runs
 * under every driver it applies to:
 * - "merge()": the synchronous call (SKSM's MADV_MERGE) on every space, once per pass;
 * - "ksm scanner" and "tracked scanner": the background scanner's two policies ("tracked" with
 *   stablePasses 1, which needs ksmd's two passes too), one full scan per pass.
 * ksm_start() is two full scans (one merge() pass); MADV_UNMERGEABLE is unmerge() for merge() (whose return value must
 * match what ksmStat saw unmerged) and advise(..., "unmergeable") for the scanners.
 */
import { expect } from "vitest"
import type { MergeReport } from "../../src/core/merge.ts"
import type { ScannerOptions } from "../../src/policy/registry.ts"
import type { AddressSpace, Engine, Scanner } from "../helpers/internals.ts"
import { checkCounters } from "../helpers/recount.ts"
import { checkScanCounters, fullScans } from "../helpers/scanner.ts"

/** Tunables a port asks for (each driver uses those that apply to it). */
export interface Tunables {
  readonly pagesToScan?: number
  /**
   * The test rewrites merged pages on purpose: no back-off of thrashing ranges (tracked), and no
   * smart scan (ksm: under 6.18's rules a page keeps its smart-scan age across a merge, so pages
   * rewritten between steps may be skipped for a few passes; LTP ksm07 checks smart scan).
   */
  readonly rewritesOnPurpose?: boolean
}

/** One engine's way of merging. */
export interface Merger {
  /** ksm_start(): everything that will merge has (two full scans; one merge() pass). */
  start(): void
  /** One more pass: merge() on every space, or one full scan. */
  pass(): void
  /** MADV_UNMERGEABLE on a range (default: the whole space); returns the pages it unmerged. */
  unmerge(space: AddressSpace, addr?: number, length?: number): number
  /** merge()'s reports of the last pass, one per space in creation order; null for the scanners. */
  readonly reports: MergeReport[] | null
  /** The scanner, null for merge(). */
  readonly ksmd: Scanner | null
  /** Every counter recounted (the scanner's too). */
  check(): void
}

export interface Driver {
  readonly name: string
  /** Where a page with no partner is counted: merge() inserts it in the table, the scanners keep it unstable. */
  readonly lonely: "pagesUnique" | "pagesUnshared"
  /** Whether uffd-wp protection is the test's alone (the tracked policy owns it itself). */
  readonly userUffdWp: boolean
  attach(engine: Engine, tunables?: Tunables): Merger
}

/** Pages a space has merged (or mapped to the zero page). */
function merging(space: AddressSpace): number {
  const k = space.ksmStat()
  return k.ksmMergingPages + k.ksmZeroPages
}

const byMerge: Driver = {
  name: "merge()",
  lonely: "pagesUnique",
  userUffdWp: true,
  attach(engine) {
    const m = {
      reports: null as MergeReport[] | null,
      ksmd: null,
      // Synchronous: one call merges everything that will merge.
      start: () => m.pass(),
      pass() {
        m.reports = engine.spaces().map((s) => s.merge())
      },
      unmerge(space: AddressSpace, addr = 0, length = space.size - addr) {
        const before = merging(space)
        const n = space.unmerge(addr, length)
        expect(n).toBe(before - merging(space))
        return n
      },
      check: () => void checkCounters(engine),
    }
    return m
  },
}

function byScanner(name: string, options: ScannerOptions): Driver {
  return {
    name,
    lonely: "pagesUnshared",
    userUffdWp: options.policy !== "tracked",
    attach(engine, tunables = {}) {
      const ksmd = engine.scanner({
        ...options,
        ...(tunables.pagesToScan === undefined ? {} : { pagesToScan: tunables.pagesToScan }),
        ...(tunables.rewritesOnPurpose ? (options.policy === "tracked" ? { thrashUnshares: 0xffff } : { smartScan: false }) : {}),
      })
      return {
        reports: null,
        ksmd,
        start: () => fullScans(ksmd, 2),
        pass: () => fullScans(ksmd, 1),
        unmerge(space, addr = 0, length = space.size - addr) {
          const before = merging(space)
          space.advise(addr, length, "unmergeable")
          return before - merging(space)
        },
        check() {
          checkCounters(engine)
          checkScanCounters(engine, ksmd)
        },
      }
    },
  }
}

/** The scanner drivers only (ports of behaviour merge() does not have: passes, advice, smart scan). */
export const SCANNERS: readonly Driver[] = [byScanner("ksm scanner", { policy: "ksm" }), byScanner("tracked scanner", { policy: "tracked", stablePasses: 1 })]

export const DRIVERS: readonly Driver[] = [byMerge, ...SCANNERS]

/** ksm_tests.c's assert_ksm_pages_count(N) rule for N identical pages and max_page_sharing M. */
export function expectedCounts(n: number, m: number): { shared: number; sharing: number } {
  if (n % m === 0 || n % m === 1) {
    const shared = Math.floor(n / m)
    return { shared, sharing: shared * (m - 1) }
  }
  const shared = Math.floor(n / m) + 1
  return { shared, sharing: n - shared }
}
