/**
 * The kernel's ksmd on memory images (issue 13): bench/kernel-ksm/ksm_files.c loads the
 * images into anonymous memory (MADV_NOHUGEPAGE, every page populated, MADV_MERGEABLE), and
 * ksmd runs at full speed (pages_to_scan 100000, sleep_millisecs 0) with use_zero_pages 1
 * and max_page_sharing 256 until pages_sharing + ksm_zero_pages stay unchanged for two full
 * scans. Reported: ksmd's CPU (schedstat, or utime+stime) until the counters last changed
 * ("to converge") and until convergence was seen, and the counters.
 *
 * Settings are saved and restored by bench/kernel-ksm.ts's KsmSettings (run=2, then every
 * value as it was), also on error and on SIGINT/SIGTERM; the same lock keeps two drivers
 * apart, and a KSM someone else is using is left alone.
 */
import { existsSync, rmSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { buildHelper, findKsmd, type Helper, KSM_SYSFS, kernelKsmUnavailable, KsmSettings, lock, processCpu, readKsm, restoreOnSignal, startHelperWith } from "./kernel-ksm.ts"

const SOURCE = join(dirname(fileURLToPath(import.meta.url)), "kernel-ksm", "ksm_files.c")

/** One image set merged by ksmd. */
export interface KsmdConvergence {
  readonly label: string
  readonly pages: number
  /** The counters stayed put for two full scans before the time bound. */
  readonly converged: boolean
  /** ksmd CPU seconds from run=1 until the counters last changed. */
  readonly cpuToConverge: number
  /** ksmd CPU seconds until convergence was seen (two more full scans). */
  readonly cpuTotal: number
  readonly wallToConverge: number
  readonly fullScans: number
  readonly pagesShared: number
  readonly pagesSharing: number
  readonly ksmZeroPages: number
}

/** What {@link kernelOnImages} found. */
export type KernelImagesResult =
  | { readonly status: "skipped"; readonly reason: string }
  | { readonly status: "ok"; readonly runs: KsmdConvergence[]; readonly settingsBefore: Record<string, string>; readonly restoreFailures: string[] }

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const num = (name: string): number => Number(readKsm(name))

async function converge(settings: KsmSettings, ksmd: number, label: string, pages: number, timeoutMs: number): Promise<KsmdConvergence> {
  const cpu = (): number => {
    const c = processCpu(ksmd)
    return c.sched ?? c.stat
  }
  const scans0 = num("full_scans")
  const cpu0 = cpu()
  const t0 = performance.now()
  settings.set("run", 1)
  let value = -1
  let changedCpu = cpu0
  let changedWall = t0
  const atScan: number[] = []
  let converged = false
  for (;;) {
    const scans = num("full_scans") - scans0
    const v = num("pages_sharing") + num("ksm_zero_pages")
    if (v !== value) {
      value = v
      changedCpu = cpu()
      changedWall = performance.now()
    }
    if (atScan.length < scans) {
      while (atScan.length < scans) atScan.push(v)
      const n = atScan.length
      if (n >= 3 && atScan[n - 1] === atScan[n - 2] && atScan[n - 2] === atScan[n - 3]) {
        converged = true
        break
      }
    }
    if (performance.now() - t0 > timeoutMs) break
    await sleep(1)
  }
  const cpuEnd = cpu()
  settings.set("run", 0) // stop ksmd burning a core; merged pages stay merged until run=2
  return {
    label,
    pages,
    converged,
    cpuToConverge: changedCpu - cpu0,
    cpuTotal: cpuEnd - cpu0,
    wallToConverge: (changedWall - t0) / 1e3,
    fullScans: num("full_scans") - scans0,
    pagesShared: num("pages_shared"),
    pagesSharing: num("pages_sharing"),
    ksmZeroPages: num("ksm_zero_pages"),
  }
}

/** Run ksmd to convergence on each set of image files; skipped (with the reason) where impossible. */
export async function kernelOnImages(sets: readonly { label: string; files: readonly string[] }[], opts: { timeoutMs?: number; log?: (l: string) => void } = {}): Promise<KernelImagesResult> {
  const log = opts.log ?? (() => {})
  const why = kernelKsmUnavailable()
  if (why !== null) return { status: "skipped", reason: why }
  if (readKsm("run") !== "0" || num("pages_shared") !== 0 || num("pages_sharing") !== 0) {
    return { status: "skipped", reason: `KSM is in use on this machine (run=${readKsm("run")}, pages_shared=${num("pages_shared")}); not disturbing it` }
  }
  const unlock = lock()
  if (typeof unlock === "string") return { status: "skipped", reason: unlock }
  const build = buildHelper(undefined, SOURCE)
  if (!build.ok) {
    unlock()
    return { status: "skipped", reason: build.reason }
  }
  const ksmd = findKsmd()!
  const settings = new KsmSettings()
  let helper: Helper | null = null
  const uninstall = restoreOnSignal("kernel-real", settings, unlock, () => {
    if (helper !== null) process.kill(helper.pid, "SIGKILL")
    rmSync(build.dir, { recursive: true, force: true })
  })
  const runs: KsmdConvergence[] = []
  let settingsBefore: Record<string, string> = {}
  const restoreFailures: string[] = []
  try {
    if (existsSync(join(KSM_SYSFS, "advisor_mode")) && readKsm("advisor_mode") !== "none") settings.set("advisor_mode", "none")
    settings.set("max_page_sharing", 256)
    settings.set("use_zero_pages", 1)
    settings.set("pages_to_scan", 100000)
    settings.set("sleep_millisecs", 0)
    for (const set of sets) {
      log(`kernel-real: ${set.label}: loading ${set.files.length} images into the helper`)
      helper = await startHelperWith(build.path, set.files, 300_000)
      try {
        runs.push(await converge(settings, ksmd, set.label, helper.pages, opts.timeoutMs ?? 120_000))
        log(`kernel-real: ${set.label}: ksmd CPU ${runs.at(-1)!.cpuToConverge.toFixed(3)} s to converge`)
      } finally {
        await helper.stop()
        helper = null
        settings.set("run", 2) // unmerge what is left before the next set
      }
    }
    settingsBefore = settings.saved()
  } finally {
    restoreFailures.push(...settings.restore())
    uninstall()
    unlock()
    rmSync(build.dir, { recursive: true, force: true })
  }
  return { status: "ok", runs, settingsBefore, restoreFailures }
}
