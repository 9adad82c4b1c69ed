/**
 * The worker scanner: an engine's background scanner whose hashing runs on another thread.
 * The scanner itself (policy, counters, merges) stays on the host's thread, created with
 * `offload: true`; this module starts the hashing thread, hands it the scanner's channel, answers
 * its requests for newer buffers, and shuts it down.
 */
import { type AdvisorResult, Engine, InvalidArgument, type OffloadChannel, type Scanner, type ScannerOptions, type ScanReport, Unsupported } from "../index.ts"
import { type HashThread, spawnHashThread } from "./spawn.ts"

/** Options of {@link startWorkerScanner}: engine.scanner()'s, plus how to fall back. */
export type WorkerScannerOptions = Omit<ScannerOptions, "offload"> & {
  /**
   * Where the hashing thread cannot run (no shared memory: a browser page without cross-origin
   * isolation, or an engine made without `sharedMemory: true`; no workers), run the in-thread
   * scanner instead and say why in {@link WorkerScanner.fallback}. `false`: reject with
   * Unsupported instead. @default true
   */
  readonly fallback?: boolean
  /** Called once with the reason when falling back. @default console.warn of the reason */
  readonly onFallback?: (reason: string) => void
  /**
   * Where the hashing thread's script is (`sksm/worker`'s dist/worker/thread.js). Set it when a
   * bundler moved things: e.g. `new URL("sksm/worker/thread.js", import.meta.url)` or the URL your
   * bundler emits for that file. @default thread.js beside this module
   */
  readonly threadUrl?: string | URL
}

/**
 * A background scanner whose hashing runs on a worker thread ({@link startWorkerScanner}). It is
 * a {@link Scanner}: tick/start/stop/set work as on the in-thread one, with the same decisions
 * and counters; batches end early at pages whose digest is not ready yet (ScanReport.waited).
 * Gotchas: call {@link close} when done (it stops the loop and the thread); a newer
 * engine.scanner() detaches this one and its thread stops by itself. The thread never keeps a
 * Node process alive.
 */
export interface WorkerScanner extends Scanner {
  /** "worker": hashing on the thread; "in-thread": the fallback ran (see {@link fallback}). */
  readonly mode: "worker" | "in-thread"
  /** Why the worker mode could not run, or null. */
  readonly fallback: string | null
  /** The thread's error, if it died (the scanner then hashes on the host by itself). */
  readonly threadError: unknown
  /**
   * Stop the loop and the thread; resolves once the thread is gone. Idempotent. The scanner stays
   * the engine's: a later tick() still works, hashing on the host once it finds the thread gone.
   */
  close(): Promise<void>
}

/**
 * Start an engine's background scanner with its hashing on a worker thread (Node
 * worker_threads, or a browser module Worker). The engine must be made with
 * `new Engine({ sharedMemory: true })`. Replaces the engine's scanner, like engine.scanner().
 *
 * ```ts
 * const engine = new Engine({ sharedMemory: true })
 * const ksmd = await startWorkerScanner(engine, { policy: "ksm", pagesToScan: 1000, sleepMillis: 5 })
 * ksmd.start()
 * // ... later
 * await ksmd.close()
 * ```
 */
export async function startWorkerScanner(engine: Engine, options: WorkerScannerOptions = {}): Promise<WorkerScanner> {
  if (!(engine instanceof Engine)) throw new InvalidArgument("startWorkerScanner: engine must be an Engine")
  if (typeof options !== "object" || options === null) throw new InvalidArgument("startWorkerScanner: options must be an object")
  // Read once; everything else goes to engine.scanner(), which reads and validates it.
  const { fallback = true, onFallback, threadUrl, ...rest } = options as WorkerScannerOptions & Record<string, unknown>
  let url: URL | undefined
  try {
    const base = (globalThis as { location?: { href?: unknown } }).location?.href
    url = threadUrl === undefined ? undefined : threadUrl instanceof URL ? threadUrl : new URL(String(threadUrl), typeof base === "string" ? base : undefined)
  } catch {
    throw new InvalidArgument("threadUrl must be an absolute URL (or relative to the page)")
  }
  if (typeof fallback !== "boolean") throw new InvalidArgument(`fallback must be a boolean, got ${typeof fallback}`)
  if (onFallback !== undefined && typeof onFallback !== "function") throw new InvalidArgument("onFallback must be a function")
  if ("offload" in rest) throw new InvalidArgument("offload is set by startWorkerScanner itself")
  const fallBack = (reason: string): WorkerScanner => {
    if (!fallback) throw new Unsupported(`worker scanner: ${reason}`)
    const inner = engine.scanner(rest as ScannerOptions)
    ;(onFallback ?? ((r: string) => console.warn(`sksm: worker scanner unavailable, scanning on this thread: ${r}`)))(reason)
    return new ThreadedScanner(inner, null, reason)
  }
  let inner: Scanner
  try {
    inner = engine.scanner({ ...(rest as ScannerOptions), offload: true })
  } catch (err) {
    if (err instanceof Unsupported) return fallBack(err.message)
    throw err
  }
  let thread: HashThread
  try {
    thread = await spawnHashThread(url)
  } catch (err) {
    return fallBack(`no worker thread could be started (${err instanceof Error ? err.message : String(err)})`)
  }
  const scanner = new ThreadedScanner(inner, thread, null)
  // Batches before the thread runs would find no digests and wait, then hash here: wait for it
  // (with the thread keeping the process alive meanwhile, or a host with nothing else to do
  // would exit before the thread answers).
  thread.keepAlive(true)
  try {
    await scanner.ready
  } finally {
    thread.keepAlive(false)
  }
  return scanner
}

class ThreadedScanner implements WorkerScanner {
  readonly #inner: Scanner
  readonly #thread: HashThread | null
  readonly fallback: string | null
  threadError: unknown = undefined
  #closed: Promise<void> | null = null
  #gone = false
  /** Resolves when the thread reports its loop running (or died, or was closed). */
  readonly ready: Promise<void>
  #readyNow: () => void = () => {}

  constructor(inner: Scanner, thread: HashThread | null, fallback: string | null) {
    this.#inner = inner
    this.#thread = thread
    this.fallback = fallback
    this.ready = new Promise((resolve) => (this.#readyNow = resolve))
    if (thread === null) {
      this.#readyNow()
      return
    }
    thread.onError((e) => {
      this.threadError = e
      this.#gone = true
      this.#readyNow()
    })
    thread.onMessage((m) => {
      const msg = m as { type?: unknown }
      if (msg.type === "need") this.#sendChannel()
      else if (msg.type === "ready") this.#readyNow()
      else if (msg.type === "stopped") {
        this.#gone = true
        this.#readyNow()
      }
    })
    this.#sendChannel()
  }

  #sendChannel(): void {
    const ch: OffloadChannel | null = this.#inner.offloadChannel()
    if (ch !== null && !this.#gone) this.#thread!.post({ type: "channel", channel: ch })
  }

  get mode(): "worker" | "in-thread" {
    return this.#thread === null ? "in-thread" : "worker"
  }
  get policy(): string {
    return this.#inner.policy
  }
  get tunables(): Scanner["tunables"] {
    return this.#inner.tunables
  }
  get running(): boolean {
    return this.#inner.running
  }
  get detached(): boolean {
    return this.#inner.detached
  }
  get lastAdvice(): AdvisorResult | null {
    return this.#inner.lastAdvice
  }
  tick(): ScanReport {
    return this.#inner.tick()
  }
  start(): void {
    this.#inner.start()
  }
  stop(): Promise<void> {
    return this.#inner.stop()
  }
  set(tunables: object): void {
    this.#inner.set(tunables)
  }
  offloadChannel(): OffloadChannel | null {
    return this.#inner.offloadChannel()
  }

  close(): Promise<void> {
    if (this.#closed !== null) return this.#closed
    this.#closed = (async () => {
      try {
        await this.#inner.stop()
      } finally {
        this.#gone = true
        this.#readyNow()
        await this.#thread?.terminate()
      }
    })()
    return this.#closed
  }
}
