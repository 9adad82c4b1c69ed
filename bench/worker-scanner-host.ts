/**
 * One scanner mode's process for bench/worker-scanner.ts: runs a list of converge jobs for that
 * mode in one long-lived process, in a plain loop, and sends back every run when done. A host
 * runs one mode; a process running both makes the scanner's shared code paths polymorphic in V8
 * and slows whichever mode its JIT state suits less (measured: the worker mode's host CPU per
 * merged page on v86 guests was 741-769 ns in a process that also ran in-thread scanners, 344-372
 * in one that did not; the in-thread mode's did not move). The parent alternates these processes.
 * The loop is deliberate: the same runs started one by one from IPC messages measured 2-3x the
 * worker's host CPU on QuickJS heaps (1,200-1,500 vs 450-550 ns per merged page; not pinned).
 */
import { converge, type ConvergeRun, type Mode, type SubjectSpec, subjectFrom, type Tunables } from "./worker-scanner.ts"

/** One job: `warmup` unmeasured runs, then `runs` measured ones, of one subject at one speed. */
export interface HostJob {
  readonly spec: SubjectSpec
  readonly t: Tunables
  readonly capMs: number
  readonly warm: boolean
  readonly warmup: number
  readonly runs: number
  /** Only these modes run it (the others answer no runs). */
  readonly modes?: readonly Mode[]
}

export interface HostReply {
  readonly ok: boolean
  /** Per job, its measured runs. */
  readonly runs?: ConvergeRun[][]
  readonly error?: string
}

const mode = process.argv[2] as Mode
const jobs = JSON.parse(process.env.SKSM_WS_JOBS ?? "[]") as HostJob[]
const subjects = new Map<string, ReturnType<typeof subjectFrom>>()
const reply = (r: HostReply): void => {
  process.send!(r, () => process.disconnect())
}
try {
  const out: ConvergeRun[][] = []
  for (const j of jobs) {
    const runs: ConvergeRun[] = []
    out.push(runs)
    if (j.modes !== undefined && !j.modes.includes(mode)) continue
    const key = JSON.stringify(j.spec)
    let s = subjects.get(key)
    if (s === undefined) subjects.set(key, (s = subjectFrom(j.spec)))
    for (let i = 0; i < j.warmup; i++) await converge(s, mode, j.t, j.capMs, j.warm)
    for (let i = 0; i < j.runs; i++) runs.push(await converge(s, mode, j.t, j.capMs, j.warm))
  }
  reply({ ok: true, runs: out })
} catch (e) {
  reply({ ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) })
}
