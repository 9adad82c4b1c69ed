/**
 * Where the workloads' programs come from, installed on demand into the cache:
 *
 * - npm packages (v86, pyodide) with `npm install --no-save` into
 *   .cache/workloads/npm/<pkg>@<version>/. Not devDependencies: v86 is 18 MB unpacked
 *   (4 MB download) and pyodide 14 MB (6.5 MB); every `npm ci` (CI's too) would fetch them
 *   although only this generator needs them, and only when asked for those workloads.
 * - Debian packages (an i386 kernel, busybox-static, SeaBIOS) with `apt-get download` and
 *   `dpkg-deb -x` into .cache/workloads/debian/ (nothing is installed into the system; the
 *   i386 architecture is added to dpkg so apt can resolve the :i386 packages).
 *
 * Each function returns the files and versions, or `{ missing }`: one line saying what is
 * missing and how to get it by hand.
 */
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { CACHE_DIR } from "./cache.ts"

/** Pinned npm versions (the generator's cache keys include them). */
export const NPM_VERSIONS = { v86: "0.5.462", pyodide: "314.0.7" } as const

/** Something could not be had: one line of what and how. */
export interface Missing {
  readonly missing: string
}

function run(cmd: string, args: readonly string[], cwd?: string): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }, maxBuffer: 64 << 20 })
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`.trim()
  if (r.error !== undefined) return { ok: false, out: r.error.message }
  return { ok: r.status === 0, out }
}

const lastLine = (s: string): string => s.split("\n").filter((l) => l.trim() !== "").at(-1) ?? ""

/** The installed directory of an npm package (`<dir>/node_modules/<name>`), installing it if needed. */
export function npmPackage(name: keyof typeof NPM_VERSIONS, log: (l: string) => void): { dir: string; version: string } | Missing {
  const version = NPM_VERSIONS[name]
  const prefix = join(CACHE_DIR, "npm", `${name}@${version}`)
  const dir = join(prefix, "node_modules", name)
  if (existsSync(join(dir, "package.json"))) return { dir, version }
  mkdirSync(prefix, { recursive: true })
  log(`installing ${name}@${version} into ${prefix} (npm install --no-save)`)
  const r = run("npm", ["install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", prefix, `${name}@${version}`])
  if (!r.ok || !existsSync(join(dir, "package.json"))) {
    return { missing: `npm package ${name}@${version} could not be installed (${lastLine(r.out) || "no output"}); get it with: npm install --no-save --prefix ${prefix} ${name}@${version}` }
  }
  return { dir, version }
}

/** The files of an emulated i386 machine, from Debian's packages. */
export interface DebianFiles {
  readonly kernel: string
  readonly busybox: string
  readonly bios: string
  readonly vgaBios: string
  /** Package versions, for cache keys. */
  readonly versions: Record<string, string>
}

const DEBIAN_DIR = join(CACHE_DIR, "debian")

/** The candidate version of a package, or null when apt cannot resolve it. */
function candidate(pkg: string): string | null {
  const r = run("apt-cache", ["policy", pkg])
  const m = /Candidate:\s*(\S+)/.exec(r.out)
  return m === null || m[1] === "(none)" ? null : m[1]!
}

/** The concrete kernel package behind the linux-image-686 metapackage. */
function kernelPackage(): string | null {
  const r = run("apt-cache", ["depends", "linux-image-686:i386"])
  const m = /Depends:\s*(linux-image-[0-9][^\s:]*-686)(?::i386)?/.exec(r.out)
  return m === null ? null : `${m[1]}:i386`
}

/** Make apt able to resolve :i386 packages (adds the architecture, updates the lists; tolerates a failing index). */
function prepareApt(log: (l: string) => void): Missing | null {
  if (!existsSync("/usr/bin/apt-get") || !existsSync("/usr/bin/dpkg")) return { missing: "Debian packages for the v86 guest: apt-get/dpkg not found (a Debian or Ubuntu machine is needed)" }
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0
  const foreign = run("dpkg", ["--print-foreign-architectures"]).out.split("\n")
  if (!foreign.includes("i386")) {
    if (!isRoot) return { missing: "the i386 architecture is not enabled for dpkg; as root run: dpkg --add-architecture i386 && apt-get update" }
    log("adding the i386 architecture to dpkg")
    if (!run("dpkg", ["--add-architecture", "i386"]).ok) return { missing: "dpkg --add-architecture i386 failed; run it as root, then apt-get update" }
  }
  if (kernelPackage() === null || candidate("busybox-static:i386") === null || candidate("seabios") === null) {
    if (!isRoot) return { missing: "apt cannot resolve linux-image-686:i386, busybox-static:i386 and seabios; as root run: apt-get update" }
    log("apt-get update (an index that fails, e.g. i386 security during a mirror sync, is tolerated if the packages resolve)")
    run("apt-get", ["update", "-q"]) // exit code ignored on purpose: what matters is whether the packages resolve now
  }
  return null
}

/** Download and unpack the i386 kernel, busybox-static and SeaBIOS (cached). */
export function debianFiles(log: (l: string) => void): DebianFiles | Missing {
  const root = join(DEBIAN_DIR, "root")
  const found = findFiles(root)
  if (found !== null) return found
  const prep = prepareApt(log)
  if (prep !== null) return prep
  const kpkg = kernelPackage()
  const wanted = [kpkg, "busybox-static:i386", "seabios"]
  const unresolved = wanted.filter((p) => p === null || candidate(p) === null)
  if (kpkg === null || unresolved.length > 0) {
    return { missing: `apt cannot resolve ${kpkg === null ? "linux-image-686:i386" : unresolved.join(", ")}; as root run: dpkg --add-architecture i386 && apt-get update` }
  }
  const debs = join(DEBIAN_DIR, "debs")
  mkdirSync(debs, { recursive: true })
  log(`apt-get download ${wanted.join(" ")}`)
  const dl = run("apt-get", ["download", "-q", ...(wanted as string[])], debs)
  if (!dl.ok) return { missing: `apt-get download ${wanted.join(" ")} failed (${lastLine(dl.out)}); run it by hand in ${debs}` }
  mkdirSync(root, { recursive: true })
  for (const f of readdirSync(debs).filter((f) => f.endsWith(".deb"))) {
    const x = run("dpkg-deb", ["-x", join(debs, f), root])
    if (!x.ok) return { missing: `dpkg-deb -x ${f} failed (${lastLine(x.out)})` }
  }
  return findFiles(root) ?? { missing: `the unpacked packages in ${root} lack boot/vmlinuz-*, bin/busybox or usr/share/seabios/bios.bin` }
}

/** The unpacked files, with versions read from the .deb names, or null if any is missing. */
function findFiles(root: string): DebianFiles | null {
  const boot = join(root, "boot")
  const vmlinuz = existsSync(boot) ? readdirSync(boot).find((f) => f.startsWith("vmlinuz-")) : undefined
  const busybox = join(root, "bin", "busybox")
  const bios = join(root, "usr", "share", "seabios", "bios.bin")
  const vgaBios = join(root, "usr", "share", "seabios", "vgabios-stdvga.bin")
  if (vmlinuz === undefined || ![busybox, bios, vgaBios].every((f) => existsSync(f))) return null
  const versions: Record<string, string> = {}
  const debs = join(DEBIAN_DIR, "debs")
  for (const f of existsSync(debs) ? readdirSync(debs) : []) {
    const m = /^([^_]+)_([^_]+)_/.exec(f)
    if (m !== null) versions[m[1]!] = decodeURIComponent(m[2]!)
  }
  versions["kernel"] = vmlinuz.slice("vmlinuz-".length)
  versions["busybox-size"] = String(readFileSync(busybox).length)
  return { kernel: join(boot, vmlinuz), busybox, bios, vgaBios, versions }
}
