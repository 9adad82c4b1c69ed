/**
 * The workload cache: where generated memory images live and how they are described.
 *
 * Layout (never committed; `.cache/` is gitignored):
 *
 *   .cache/workloads/<name>/manifest.json     what was generated, from what, how long it took
 *   .cache/workloads/<name>/<instance>.bin     one raw memory image per instance (page-aligned)
 *   .cache/workloads/npm/<pkg>@<version>/      npm packages installed on demand (--no-save)
 *   .cache/workloads/debian/                   Debian packages downloaded and unpacked
 *
 * A workload is reused when its manifest's `key` (a hash of package versions and options)
 * matches what is asked for. `SKSM_WORKLOADS_DIR` moves the whole cache.
 */
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

/** The repository root (this file is scripts/workloads/cache.ts). */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..")

/** Root of the cache. */
export const CACHE_DIR = process.env["SKSM_WORKLOADS_DIR"] ?? join(REPO, ".cache", "workloads")

/** Page size of every image and census. */
export const PAGE = 4096

/** Names of the workloads the generator knows. */
export const WORKLOAD_NAMES = ["quickjs", "pyodide-seeded", "pyodide-random", "v86-booted", "v86-cloned"] as const
export type WorkloadName = (typeof WORKLOAD_NAMES)[number]

/** One instance's image. */
export interface InstanceImage {
  /** File name inside the workload's directory. */
  readonly file: string
  readonly bytes: number
  /** What the instance is (e.g. "guest 2, booted"). */
  readonly label: string
}

/** Page statistics of a workload (see oracle.ts). */
export interface WorkloadStats {
  readonly pages: number
  readonly zeroPages: number
  /** Distinct non-zero contents. */
  readonly distinctNonZero: number
  /** Non-zero pages whose content occurs more than once (anywhere). */
  readonly sharedPages: number
  /** Non-zero pages whose content occurs in more than one instance. */
  readonly crossInstancePages: number
  /** Non-zero pages whose content occurs once. */
  readonly uniquePages: number
  /** Non-zero pages with at most 16 non-zero bytes (page tables, bitmaps, allocator metadata). */
  readonly nearlyZeroPages: number
}

/** manifest.json of a workload. */
export interface Manifest {
  readonly name: WorkloadName
  /** Hash of sources and options: a different key means regenerate. */
  readonly key: string
  readonly sources: Record<string, string>
  readonly options: Record<string, string | number | boolean>
  readonly createdAt: string
  /** Wall seconds the generation took (package installs excluded). */
  readonly seconds: number
  readonly instances: readonly InstanceImage[]
  readonly stats: WorkloadStats
}

/** A short stable hash of any JSON value (sorted keys). */
export function keyOf(value: unknown): string {
  const canon = (v: unknown): unknown =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])]))
      : v
  return createHash("sha256").update(JSON.stringify(canon(value))).digest("hex").slice(0, 16)
}

/** The directory of a workload. */
export function workloadDir(name: WorkloadName): string {
  return join(CACHE_DIR, name)
}

/** The manifest of a cached workload, or null. */
export function readManifest(name: WorkloadName): Manifest | null {
  const file = join(workloadDir(name), "manifest.json")
  if (!existsSync(file)) return null
  try {
    const m = JSON.parse(readFileSync(file, "utf8")) as Manifest
    return m.instances.every((i) => existsSync(join(workloadDir(name), i.file))) ? m : null
  } catch {
    return null
  }
}

/** Every cached workload, in {@link WORKLOAD_NAMES} order. */
export function cachedWorkloads(): Manifest[] {
  return WORKLOAD_NAMES.map(readManifest).filter((m): m is Manifest => m !== null)
}

/** A fresh, empty staging directory for a workload (renamed into place by {@link commitWorkload}). */
export function stagingDir(name: WorkloadName): string {
  const dir = join(CACHE_DIR, `.staging-${name}-${process.pid}`)
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  return dir
}

/** Write the manifest into `staging` and move it over the workload's directory (atomic enough for a cache). */
export function commitWorkload(staging: string, manifest: Manifest): void {
  writeFileSync(join(staging, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`)
  const dir = workloadDir(manifest.name)
  rmSync(dir, { recursive: true, force: true })
  renameSync(staging, dir)
}

/** Remove staging directories left by interrupted runs of dead processes. */
export function cleanStaging(): void {
  if (!existsSync(CACHE_DIR)) return
  for (const e of readdirSync(CACHE_DIR)) {
    const m = /^\.staging-.*-(\d+)$/.exec(e)
    if (m === null) continue
    try {
      process.kill(Number(m[1]), 0)
    } catch {
      rmSync(join(CACHE_DIR, e), { recursive: true, force: true })
    }
  }
}

/** Read a workload's images (each a page-aligned Uint8Array). */
export function loadImages(m: Manifest): Uint8Array[] {
  return readImages(workloadDir(m.name), m.instances)
}

/** Read the images of `instances` from `dir`. */
export function readImages(dir: string, instances: readonly InstanceImage[]): Uint8Array[] {
  return instances.map((i) => {
    const b = readFileSync(join(dir, i.file))
    if (b.length % PAGE !== 0) throw new Error(`${join(dir, i.file)}: ${b.length} bytes is not a multiple of ${PAGE}`)
    return new Uint8Array(b.buffer, b.byteOffset, b.length)
  })
}
