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
  const { Worker } = (await import(nodeWorkers)) as { Worker: new (u: URL | string, o: { execArgv?: string[]; eval?: boolean }) => NodeWorker }
  // Sources run through tsx (development, tests): the thread must load .ts modules. A worker's own
  // `--import tsx` does not reach its entry module on Node 20 (ERR_UNKNOWN_FILE_EXTENSION), so the
  // thread starts as a one-line script that imports thread.ts through tsx's tsImport.
  const w = url.pathname.endsWith(".ts") ? new Worker(tsxEntry(url), { eval: true }) : new Worker(url, { execArgv: [] })
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

/**
 * The script of a thread whose entry is a .ts module: import it through tsx's tsImport. tsx is
 * resolved here, from this module (an eval'd script would resolve it from the working directory).
 */
function tsxEntry(url: URL): string {
  const resolve = (import.meta as { resolve?: (s: string) => string }).resolve
  const api = typeof resolve === "function" ? resolve("tsx/esm/api") : "tsx/esm/api"
  return `import(${JSON.stringify(api)}).then((tsx) => tsx.tsImport(${JSON.stringify(url.href)}, ${JSON.stringify(url.href)}))`
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
