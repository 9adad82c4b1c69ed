/**
 * RAM of emulated i386 Linux machines (v86, Debian's kernel, busybox and SeaBIOS):
 *
 * - v86-booted: N guests each booted from the kernel in its own Node process, in parallel
 *   (KASLR on: every guest lays out its memory differently).
 * - v86-cloned: one guest booted and its state saved, then N clones restored from that state
 *   in parallel, each typing a different command, as a fleet cloned from a snapshot would.
 *
 * The booted fleet's guest 0 saves the state the clones start from, so generating both costs
 * one boot round. Each guest's RAM is written by scripts/workloads/v86-guest.mjs.
 */
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { CACHE_DIR, type InstanceImage, keyOf } from "./cache.ts"
import { initramfs } from "./initramfs.ts"
import type { Produced } from "./interpreters.ts"
import { debianFiles, type DebianFiles, type Missing, npmPackage } from "./sources.ts"

const GUEST_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "v86-guest.mjs")

/** Everything a guest needs, resolved (and installed) once. */
export interface V86Plan {
  readonly v86Dir: string
  readonly files: DebianFiles
  readonly initrd: string
  readonly sources: Record<string, string>
  /** Where the booted guest 0's state is kept for the clones (keyed like the images). */
  readonly statePath: string
}

/** Install v86 and the Debian files, build the initramfs; or say what is missing. */
export function v86Plan(memMiB: number, log: (l: string) => void): V86Plan | Missing {
  const v86 = npmPackage("v86", log)
  if ("missing" in v86) return v86
  const files = debianFiles(log)
  if ("missing" in files) return files
  const dir = join(CACHE_DIR, "v86")
  mkdirSync(dir, { recursive: true })
  const rd = initramfs(readFileSync(files.busybox))
  const rdKey = keyOf(rd.toString("base64"))
  const initrd = join(dir, `initrd-${rdKey}.gz`)
  if (!existsSync(initrd)) writeFileSync(initrd, rd)
  const sources = { v86: v86.version, initrd: rdKey, ...files.versions }
  return { v86Dir: v86.dir, files, initrd, sources, statePath: join(dir, `state-${keyOf({ sources, memMiB })}.bin`) }
}

interface GuestJob {
  readonly label: string
  readonly mode: "boot" | "restore"
  readonly imageOut: string
  readonly stateOut?: string
  readonly stateIn?: string
  readonly command?: string
}

/** Run one guest process; resolves to its timings. */
function runGuest(plan: V86Plan, memMiB: number, job: GuestJob, log: (l: string) => void): Promise<Record<string, number>> {
  const full = { ...job, v86Dir: plan.v86Dir, bios: plan.files.bios, vgaBios: plan.files.vgaBios, kernel: plan.files.kernel, initrd: plan.initrd, memMiB, timeoutMs: 420_000 }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [GUEST_SCRIPT, JSON.stringify(full)], { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString()
      for (let nl = err.indexOf("\n"); nl >= 0; nl = err.indexOf("\n")) {
        log(err.slice(0, nl))
        err = err.slice(nl + 1)
      }
    })
    child.on("error", reject)
    child.on("close", (code) => {
      const m = /^DONE (.*)$/m.exec(out)
      if (code === 0 && m !== null) resolve(JSON.parse(m[1]!) as Record<string, number>)
      else reject(new Error(`guest ${job.label} exited with code ${code}: ${err.trim().slice(-500)}`))
    })
  })
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? 0

/** `guests` guests booted in parallel; guest 0 also saves the state the clones restore. */
export async function v86Booted(staging: string, plan: V86Plan, guests: number, memMiB: number, log: (l: string) => void): Promise<Produced> {
  const jobs = Array.from({ length: guests }, (_, i): GuestJob => ({
    label: `boot ${i}`,
    mode: "boot",
    imageOut: join(staging, `guest-${i}.bin`),
    ...(i === 0 ? { stateOut: plan.statePath } : {}),
  }))
  const t = await Promise.all(jobs.map((j) => runGuest(plan, memMiB, j, log)))
  const instances: InstanceImage[] = jobs.map((j, i) => ({ file: `guest-${i}.bin`, bytes: memMiB << 20, label: `${j.label}: up in ${t[i]!["bootSeconds"]} s` }))
  log(`v86-booted: median boot ${median(t.map((x) => x["bootSeconds"] ?? 0))} s with ${guests} in parallel`)
  return { instances, sources: plan.sources, options: { guests, memMiB, parallel: true } }
}

/** The command clone `i` types: a little work of its own, so the clones diverge as a fleet's would. */
export function cloneCommand(i: number): string {
  return `echo clone-${i} > /tmp/id; seq 1 ${2000 * (i + 1)} > /tmp/seq; ls -lR /proc/sys > /tmp/sys.${i} 2>&1; sort -r /tmp/files > /tmp/files.${i}`
}

/** `guests` clones restored from the saved state of one booted guest (booting one first if none is cached). */
export async function v86Cloned(staging: string, plan: V86Plan, guests: number, memMiB: number, log: (l: string) => void): Promise<Produced> {
  if (!existsSync(plan.statePath)) {
    log("v86-cloned: booting one guest for the saved state")
    const tmp = join(staging, "state-guest.tmp")
    await runGuest(plan, memMiB, { label: "state", mode: "boot", imageOut: tmp, stateOut: plan.statePath }, log)
    rmSync(tmp)
  }
  const jobs = Array.from({ length: guests }, (_, i): GuestJob => ({ label: `clone ${i}`, mode: "restore", imageOut: join(staging, `clone-${i}.bin`), stateIn: plan.statePath, command: cloneCommand(i) }))
  const t = await Promise.all(jobs.map((j) => runGuest(plan, memMiB, j, log)))
  const instances: InstanceImage[] = jobs.map((j, i) => ({ file: `clone-${i}.bin`, bytes: memMiB << 20, label: `${j.label}: restored in ${t[i]!["restoreSeconds"]} s` }))
  return { instances, sources: plan.sources, options: { guests, memMiB, state: "one saved state", command: cloneCommand(0) } }
}
