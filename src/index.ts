/**
 * sksm: userspace page merging for TypeScript hosts. This file is the public API's
 * allow-list; anything not exported here is internal.
 */

// Main classes:
export { Engine } from "./engine.ts"
export { AddressSpace, RMAP_ITEM_BYTES } from "./address-space.ts"

// Compaction (engine.compact / autoCompact): the default budget of one automatic step.
export { DEFAULT_COMPACT_BUDGET_PAGES } from "./memory/compact.ts"

// Errors (each has a `_tag`):
export { Busy, InvalidArgument, OutOfBounds, OutOfMemory, PinnedPage, SksmError, SpaceDisposed } from "./errors.ts"
export { ScannerDetached } from "./errors.ts"

// Background scanner (ksmd; engine.scanner(options)):
export { Scanner } from "./policy/scanner.ts"
export { KsmScanner } from "./policy/ksm.ts"
export { TrackedScanner } from "./policy/tracked.ts"
export { DEFAULT_TUNABLES } from "./policy/options.ts"

// Write tracking (PAGEMAP_SCAN categories):
export { PageCategory } from "./memory/pagemap.ts"

// Types:
export type { EngineOptions, EngineStats, MemoryReport } from "./engine.ts"
export type { SpaceStats } from "./address-space.ts"
export type { SpaceOptions } from "./memory/space.ts"
export type { PagemapScanArgs, PagemapScanResult, PageRegion } from "./memory/pagemap.ts"
export type { MergeReport } from "./core/merge.ts"
export type { AutoCompactOptions, AutoCompactSettings, CompactionTotals, CompactReport } from "./memory/compact.ts"
export type { ChecksumFunction } from "./core/checksum.ts"
export type { SksmErrorType } from "./errors.ts"
export type { AdvisorMode, ResolvedTunables, ScanClock, ScannerOptions, ScannerTunables, ScanPolicyName, ScanReport } from "./policy/options.ts"
export type { AdvisorResult } from "./policy/advisor.ts"
