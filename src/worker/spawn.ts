/**
 * Starting the hashing thread where the host runs: a Node `worker_threads` Worker, or a browser
 * module Worker. The thread's script is thread.js next to this file (thread.ts when the sources
 * run through tsx, which the thread then loads too).
 */

/** The host's handle on its hashing thread. */
export interface HashThread {
  post(message: unknown): void
  onMessage(cb: (message: unknown) => void): void
  onError(cb: (error: unknown) => void): void
  /** Stop the thread now; resolves once it is gone. */
  terminate(): Promise<void>
}

/** The thread's script, beside this module, with this module's extension (.js built, .ts in development). */
function scriptUrl(): URL {
  const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js"
  return new URL(`./thread${ext}`, import.meta.url)
}

/**
 * Start a hashing thread running `url` (default: thread.js beside this module). Rejects where
 * the runtime has no workers.
 */
export async function spawnHashThread(url: URL = scriptUrl()): Promise<HashThread> {
  const g = globalThis as unknown as { Worker?: new (u: URL, o: { type: string }) => BrowserWorker; process?: { versions?: { node?: string } } }
  if (g.process?.versions?.node === undefined && typeof g.Worker === "function") return browserThread(new g.Worker(url, { type: "module" }))
  // A specifier in a variable: the library builds without Node's types, and browsers never get here.
  const nodeWorkers = "node:worker_threads"
  const { Worker } = (await import(nodeWorkers)) as { Worker: new (u: URL, o: { execArgv: string[] }) => NodeWorker }
  // Sources run through tsx: the thread needs its loader to import .ts modules.
  const execArgv = url.pathname.endsWith(".ts") ? ["--import", "tsx"] : []
  const w = new Worker(url, { execArgv })
  // The thread must never keep a host process alive that has nothing else to do.
  w.unref()
  return {
    post: (m) => w.postMessage(m),
    // A listener refs the worker's port again: unref after each one.
    onMessage: (cb) => {
      w.on("message", cb)
      w.unref()
    },
    onError: (cb) => {
      w.on("error", cb)
      w.unref()
    },
    terminate: async () => {
      await w.terminate()
    },
  }
}

interface NodeWorker {
  postMessage(m: unknown): void
  on(type: string, cb: (v: unknown) => void): void
  unref(): void
  terminate(): Promise<number>
}

interface BrowserWorker {
  postMessage(m: unknown): void
  addEventListener(type: string, cb: (e: { data?: unknown; message?: unknown }) => void): void
  terminate(): void
}

function browserThread(w: BrowserWorker): HashThread {
  return {
    post: (m) => w.postMessage(m),
    onMessage: (cb) => w.addEventListener("message", (e) => cb(e.data)),
    onError: (cb) => w.addEventListener("error", (e) => cb(e.message ?? e)),
    terminate: async () => w.terminate(),
  }
}
