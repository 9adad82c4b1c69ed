/**
 * The package as its users get it: `npm pack` (which runs prepack: the build) once per content of
 * the repository, shared by the test files that need it, then installed into fresh projects.
 */
import { spawnSync, type SpawnSyncReturns } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { fileURLToPath } from "node:url"

export const ROOT = fileURLToPath(new URL("../../", import.meta.url))
export const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url))

/** What fixtures/scenario.mjs returns in every runtime: Node, a Chromium page, a Web Worker. */
export const EXPECTED = {
  merged: 15,
  afterMerge: { pagesShared: 1, pagesSharing: 15 },
  cowFaults: 1,
  afterScan: { pagesShared: 1, pagesSharing: 23, fullScansAtLeast4: true },
  framesInUse: true,
  error: "OutOfBounds",
}

/** The environment for a child npm: the parent `npm test`'s lifecycle and package variables removed. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith("npm_lifecycle_") || k.startsWith("npm_package_") || k === "npm_command" || k === "INIT_CWD") continue
    env[k] = v
  }
  return { ...env, npm_config_update_notifier: "false", npm_config_fund: "false", npm_config_audit: "false", ...extra }
}

/** Run a command; throws with its output if it fails. */
export function run(cmd: string, args: readonly string[], cwd: string, options: { env?: Record<string, string>; allowFail?: boolean; timeout?: number } = {}): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env: cleanEnv(options.env), encoding: "utf8", timeout: options.timeout ?? 300_000 })
  if (r.error !== undefined) throw r.error
  if (r.status !== 0 && options.allowFail !== true) {
    throw new Error(`${cmd} ${args.join(" ")} (in ${cwd}) exited ${r.status}\n${r.stdout}\n${r.stderr}`)
  }
  return r
}

/** Files that decide what `npm pack` produces. */
function inputs(): string[] {
  const out: string[] = []
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name)
      if (e.isDirectory()) walk(p)
      else out.push(p)
    }
  }
  walk(join(ROOT, "src"))
  for (const f of readdirSync(ROOT)) {
    if (/^(package\.json|package-lock\.json|tsconfig.*\.json|README\.md|LICENSE|CHANGELOG\.md|\.npmignore)$/.test(f)) out.push(join(ROOT, f))
  }
  return out.sort()
}

function contentKey(): string {
  const h = createHash("sha256")
  for (const f of inputs()) h.update(relative(ROOT, f)).update("\0").update(readFileSync(f)).update("\0")
  return h.digest("hex").slice(0, 16)
}

export interface Packed {
  /** Absolute path of the .tgz. */
  readonly tarball: string
  /** Paths inside the package (package/...), from `npm pack --json`. */
  readonly files: readonly string[]
  /** Whole seconds npm pack took (0 when another test file had already packed this content). */
  readonly seconds: number
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/**
 * Pack the repository once for its current content. Test files run in parallel processes, and
 * `npm pack` rebuilds dist/, so the first caller packs under a lock and the others wait for it.
 */
export async function packed(): Promise<Packed> {
  // SKSM_TEST_TARBALL=path/to/sksm-x.y.z.tgz tests a tarball made elsewhere (a release candidate).
  const given = process.env["SKSM_TEST_TARBALL"]
  if (given !== undefined && given !== "") {
    const listing = run("tar", ["-tzf", given], ROOT).stdout.trim().split("\n")
    return { tarball: given, files: listing.map((f) => f.replace(/^package\//, "")), seconds: 0 }
  }
  const key = contentKey()
  const dir = join(tmpdir(), `sksm-pack-${key}`)
  const lock = `${dir}.lock`
  const manifest = join(dir, "pack.json")
  for (let waited = 0; ; waited += 200) {
    if (existsSync(manifest)) {
      const m = JSON.parse(readFileSync(manifest, "utf8")) as { filename: string; files: string[] }
      return { tarball: join(dir, m.filename), files: m.files, seconds: 0 }
    }
    try {
      mkdirSync(lock)
      break
    } catch {
      // Another process packs: wait, unless its lock is stale (a killed run).
      if (waited > 240_000 || Date.now() - statSync(lock, { throwIfNoEntry: false })!.mtimeMs > 300_000) rmSync(lock, { recursive: true, force: true })
      await sleep(200)
    }
  }
  try {
    const t0 = performance.now()
    const work = mkdtempSync(join(tmpdir(), "sksm-packing-"))
    const r = run("npm", ["pack", "--json", "--pack-destination", work], ROOT)
    const [info] = JSON.parse(r.stdout.slice(r.stdout.indexOf("["))) as { filename: string; files: { path: string }[] }[]
    const files = info!.files.map((f) => f.path)
    writeFileSync(join(work, "pack.json"), JSON.stringify({ filename: info!.filename, files }))
    rmSync(dir, { recursive: true, force: true })
    renameSync(work, dir)
    pruneOld(key)
    return { tarball: join(dir, info!.filename), files, seconds: Math.round((performance.now() - t0) / 1000) }
  } finally {
    rmSync(lock, { recursive: true, force: true })
  }
}

/** Drop packs of earlier contents (older than an hour). */
function pruneOld(key: string): void {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith("sksm-pack-") || name.includes(key)) continue
    const p = join(tmpdir(), name)
    if (Date.now() - statSync(p).mtimeMs > 3_600_000) rmSync(p, { recursive: true, force: true })
  }
}

/** A fresh project (`type: module`) with `specs` installed from npm's cache (the tarball needs no registry). */
export function project(label: string, specs: readonly string[]): string {
  const dir = mkdtempSync(join(tmpdir(), `sksm-${label}-`))
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: `sksm-${label}`, version: "0.0.0", private: true, type: "module" }, null, 2))
  run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", ...specs], dir)
  return dir
}

/** The root lockfile's exact version of a dev dependency (so consumers install what the cache holds). */
export function lockedVersion(name: string): string {
  const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, { version: string }> }
  return lock.packages[`node_modules/${name}`]!.version
}
