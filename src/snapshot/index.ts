/**
 * sksm/snapshot: hibernate address spaces to disk, deduplicated and crash safe. A separate entry
 * point for Node (it uses node:fs and node:crypto); it reaches the engine only through the public
 * API of "sksm".
 *
 * ```ts
 * import { SnapshotStore } from "sksm/snapshot"
 * const store = await SnapshotStore.open("./snapshots")
 * await store.save(spaces, { name: "fleet-1" })     // each distinct page once on disk
 * const restored = await store.restore("fleet-1", engine)
 * ```
 */
export { SnapshotStore } from "./store.ts"
export type { GcReport, LazyRestore, RestoreOptions, SaveOptions, SaveReport, SnapshotInfo, SnapshotSpaceInfo, SnapshotStoreOptions, StoreStats } from "./store.ts"
export { PackBackend } from "./pack.ts"
export type { PackBackendOptions } from "./pack.ts"
export type { BackendUsage, ContentId, SnapshotBackend, StoredPage } from "./backend.ts"
export { SnapshotCorrupt, SnapshotExists, SnapshotNotFound, StoreIOError, StoreUnavailable } from "./errors.ts"
export type { SnapshotErrorType } from "./errors.ts"
export { RedisBackend } from "./redis.ts"
export type { RedisBackendOptions, RedisNode } from "./redis.ts"
