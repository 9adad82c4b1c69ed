/**
 * sksm: userspace page merging for TypeScript hosts. This file is the public API's
 * allow-list; anything not exported here is internal.
 */

// Main classes:
export { Engine } from "./engine.ts"
export { AddressSpace, RMAP_ITEM_BYTES } from "./address-space.ts"

// Errors (each has a `_tag`):
export { Busy, InvalidArgument, OutOfBounds, OutOfMemory, PinnedPage, SksmError, SpaceDisposed } from "./errors.ts"

// Write tracking (PAGEMAP_SCAN categories):
export { PageCategory } from "./memory/pagemap.ts"

// Types:
export type { EngineOptions, EngineStats, MemoryReport } from "./engine.ts"
export type { SpaceStats } from "./address-space.ts"
export type { SpaceOptions } from "./memory/space.ts"
export type { PagemapScanArgs, PagemapScanResult, PageRegion } from "./memory/pagemap.ts"
export type { MergeReport } from "./core/merge.ts"
export type { ChecksumFunction } from "./core/checksum.ts"
export type { SksmErrorType } from "./errors.ts"
