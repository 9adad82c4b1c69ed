/**
 * Generate a workload into the cache, or reuse it: `ensureWorkload(name, options)` resolves
 * the workload's sources (installing packages on demand), derives its cache key from their
 * versions and the options, returns the cached manifest when the key matches, and otherwise
 * generates the images into a staging directory, takes the oracle's census, records how long
 * generation took and moves the result into place. A source that cannot be had comes back as
 * `{ missing }` (one line: what, and how to get it), and so does a generator that fails.
 */
import { rmSync } from "node:fs"
import { join } from "node:path"
import { cleanStaging, commitWorkload, keyOf, type Manifest, readImages, readManifest, stagingDir, type WorkloadName } from "./cache.ts"
import { type Produced, pyodide, pyodidePlan, quickjs, quickjsPlan } from "./interpreters.ts"
import { census, statsOf } from "./oracle.ts"
import type { Missing } from "./sources.ts"
import { cloneCommand, v86Booted, v86Cloned, v86Plan } from "./v86.ts"

/** Sizes of the generated workloads. */
export interface GenerateOptions {
  /** Emulated guests per v86 workload. @default 4 */
  readonly guests?: number
  /** RAM of each guest, MiB. @default 128 */
  readonly memMiB?: number
  /** Instances per interpreter workload. @default 4 */
  readonly interpreters?: number
  /** Regenerate even when the cache matches. @default false */
  readonly force?: boolean
  readonly log?: (line: string) => void
}

/** A workload ready in the cache. */
export interface Ready {
  readonly manifest: Manifest
  /** True when it was already cached (nothing generated). */
  readonly cached: boolean
}

type Job = { sources: Record<string, string>; options: Record<string, string | number | boolean>; produce: (staging: string) => Promise<Produced | Missing> }

function plan(name: WorkloadName, o: Required<Omit<GenerateOptions, "force">>): Promise<Job | Missing> | Job | Missing {
  const { guests, memMiB, interpreters, log } = o
  switch (name) {
    case "quickjs":
      return quickjsPlan(interpreters).then((p) => ({ ...p, produce: (s: string) => quickjs(s, interpreters) }))
    case "pyodide-seeded":
    case "pyodide-random": {
      const seeded = name === "pyodide-seeded"
      const p = pyodidePlan(interpreters, seeded, log)
      return "missing" in p ? p : { sources: p.sources, options: p.options, produce: (s) => pyodide(s, interpreters, seeded, log) }
    }
    case "v86-booted":
    case "v86-cloned": {
      const p = v86Plan(memMiB, log)
      if ("missing" in p) return p
      const produce = name === "v86-booted" ? (s: string) => v86Booted(s, p, guests, memMiB, log) : (s: string) => v86Cloned(s, p, guests, memMiB, log)
      const options: Job["options"] = name === "v86-booted" ? { guests, memMiB } : { guests, memMiB, command: cloneCommand(0) }
      return { sources: p.sources, options, produce }
    }
  }
}

/** The workload `name` from the cache, generated first if needed; or what is missing. */
export async function ensureWorkload(name: WorkloadName, options: GenerateOptions = {}): Promise<Ready | Missing> {
  const o = { guests: options.guests ?? 4, memMiB: options.memMiB ?? 128, interpreters: options.interpreters ?? 4, log: options.log ?? (() => {}) }
  const job = await plan(name, o)
  if ("missing" in job) return job
  const key = keyOf({ name, sources: job.sources, options: job.options })
  const have = readManifest(name)
  if (have !== null && have.key === key && options.force !== true) return { manifest: have, cached: true }
  cleanStaging()
  const staging = stagingDir(name)
  const t0 = performance.now()
  let produced: Produced | Missing
  try {
    produced = await job.produce(staging)
  } catch (e) {
    rmSync(staging, { recursive: true, force: true })
    const msg = e instanceof Error ? e.message : String(e)
    return { missing: `generating ${name} failed: ${msg.split("\n").slice(0, 3).join(" | ")}` }
  }
  if ("missing" in produced) return produced
  const seconds = (performance.now() - t0) / 1e3
  const images = readImages(staging, produced.instances)
  const manifest: Manifest = {
    name,
    key,
    sources: produced.sources,
    options: produced.options,
    createdAt: new Date().toISOString(),
    seconds: Number(seconds.toFixed(2)),
    instances: produced.instances,
    stats: statsOf(census(images)),
  }
  commitWorkload(staging, manifest)
  return { manifest, cached: false }
}

/** The images' directory of a ready workload (for messages). */
export function where(m: Manifest): string {
  return join(".cache", "workloads", m.name)
}
