/**
 * sksm: userspace page merging for TypeScript hosts. This file is the public API's
 * allow-list; anything not exported here is internal.
 */

// Main classes and types:
export { Engine } from "./engine/engine.ts"
export type { EngineOptions, EngineStats, MemoryReport } from "./engine/engine.ts"
export { RMAP_ITEM_BYTES } from "./space/address-space.ts"
export type { AddressSpace, SpaceStats } from "./space/address-space.ts"
export type { SpaceOptions } from "./memory/space.ts"
export type { MissingPageHandler } from "./memory/missing.ts"
export type { MergeReport } from "./core/merge.ts"
export type { ChecksumFunction } from "./core/checksum.ts"

// Compaction (engine.compact / autoCompact): the default budget of one automatic step.
export { DEFAULT_COMPACT_BUDGET_PAGES } from "./memory/compact.ts"
export type { AutoCompactOptions, AutoCompactSettings, CompactionTotals, CompactReport } from "./memory/compact.ts"

// Errors (each has a `_tag`):
export { Busy, InvalidArgument, OutOfBounds, OutOfMemory, PageFetchFailed, PinnedPage, ScannerDetached, SksmError, SpaceDisposed, Unsupported } from "./errors.ts"
export type { SksmErrorType } from "./errors.ts"

// Background scanner (ksmd; engine.scanner(options)):
export { DEFAULT_TUNABLES, POLICY_NAMES } from "./policy/registry.ts"
export type { ResolvedTunables, ScannerOptions, ScannerTunables, ScanPolicyName } from "./policy/registry.ts"
export type { Scanner } from "./policy/scanner.ts"
// Hashing off the host's thread (scanner option `offload`; sksm/worker runs the thread):
export { HasherState, OFFLOAD_RING_JOBS, OffloadHasher } from "./policy/offload.ts"
export type { OffloadChannel } from "./policy/offload.ts"
export type { AdvisorMode, CommonTunables, ScanClock, ScanReport } from "./policy/options.ts"
export type { AdvisorResult } from "./policy/advisor.ts"

// Write tracking (PAGEMAP_SCAN categories):
export { PageCategory } from "./memory/pagemap.ts"
export type { PagemapScanArgs, PagemapScanResult, PageRegion } from "./memory/pagemap.ts"
