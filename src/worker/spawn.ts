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
  /** Node: whether the thread keeps the process alive (only while the host waits for it to start). No-op in browsers. */
  keepAlive(on: boolean): void
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
  if (g.process?.versions?.node === undefined && typeof g.Worker === "function") return browserThread(new g.Worker(url, { type: "module" }), url)
  // A specifier in a variable: the library builds without Node's types, and browsers never get here.
  const nodeWorkers = "node:worker_threads"
  const { Worker } = (await import(nodeWorkers)) as { Worker: new (u: URL, o: { execArgv: string[] }) => NodeWorker }
  const w = new Worker(url.pathname.endsWith(".ts") ? await tsxBootstrap(url) : url, { execArgv: [] })
  // The thread must never keep a host process alive that has nothing else to do.
  let alive = false
  const settle = (): void => (alive ? w.ref() : w.unref())
  settle()
  return {
    post: (m) => w.postMessage(m),
    // A listener refs the worker's port again: settle after each one.
    onMessage: (cb) => {
      w.on("message", cb)
      settle()
    },
    onError: (cb) => {
      w.on("error", cb)
      settle()
    },
    keepAlive: (on) => {
      alive = on
      settle()
    },
    terminate: async () => {
      await w.terminate()
    },
  }
}

/**
 * Development only (the sources run through tsx): a module that registers tsx's loader in the
 * thread, then imports the thread's .ts script. (`--import tsx` in the worker's execArgv races
 * the entry point on Node 20: the loader is not in place when the script loads.)
 */
async function tsxBootstrap(url: URL): Promise<URL> {
  let api: string
  try {
    api = (import.meta as unknown as { resolve(s: string): string }).resolve("tsx/esm/api")
  } catch {
    const nodeModule = "node:module"
    const { createRequire } = (await import(nodeModule)) as { createRequire(u: string): { resolve(s: string): string } }
    api = `file://${createRequire(import.meta.url).resolve("tsx/esm/api")}`
  }
  const code = `import { register } from ${JSON.stringify(api)}; register(); await import(${JSON.stringify(url.href)})`
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`)
}

interface NodeWorker {
  postMessage(m: unknown): void
  on(type: string, cb: (v: unknown) => void): void
  unref(): void
  ref(): void
  terminate(): Promise<number>
}

interface BrowserWorker {
  postMessage(m: unknown): void
  addEventListener(type: string, cb: (e: { data?: unknown; message?: unknown; error?: unknown }) => void): void
  terminate(): void
}

function browserThread(w: BrowserWorker, url: URL): HashThread {
  // An error thrown in the thread comes as an ErrorEvent; a script that failed to load (404, not
  // JavaScript, blocked by COEP) as a bare Event, with nothing to tell: name the script then.
  const error = (e: { message?: unknown; error?: unknown }): unknown =>
    e.error instanceof Error ? e.error : new Error(typeof e.message === "string" && e.message !== "" ? e.message : `the hashing thread's script did not load (${url.href})`)
  return {
    post: (m) => w.postMessage(m),
    onMessage: (cb) => w.addEventListener("message", (e) => cb(e.data)),
    onError: (cb) => w.addEventListener("error", (e) => cb(error(e))),
    terminate: async () => w.terminate(),
    keepAlive: () => {},
  }
}
