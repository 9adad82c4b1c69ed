/**
 * sksm in a browser, as a web app gets it: the packed package installed into a fresh project, a
 * small program bundled for the browser with esbuild, served over HTTP and run in a real headless
 * Chromium (Debian's `chromium`, driven by playwright-core): on the page's main thread and in a
 * module Web Worker. Both must print the same result as Node (package.test.ts's EXPECTED).
 */
import { execFileSync } from "node:child_process"
import { copyFileSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { join, normalize } from "node:path"
import { build } from "esbuild"
import { type Browser, chromium } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { EXPECTED, FIXTURES, packed, project, run } from "./packed.ts"

/** Debian's chromium (CHROMIUM_PATH overrides). .ci/run installs it; the README says so. */
function chromiumPath(): string {
  const env = process.env["CHROMIUM_PATH"]
  if (env !== undefined && env !== "") return env
  for (const p of ["/usr/bin/chromium", "/usr/bin/chromium-browser"]) if (existsSync(p)) return p
  try {
    return execFileSync("sh", ["-c", "command -v chromium || command -v chromium-browser"], { encoding: "utf8" }).trim()
  } catch {
    throw new Error("the browser tests need Chromium: apt-get install -y chromium (.ci/run installs it), or set CHROMIUM_PATH")
  }
}

let dir: string
let server: Server
let origin: string
let browser: Browser
let bundleText = ""
/** fixtures/worker-node.mjs's line: the in-thread reference figure, and sksm/worker in Node. */
let nodeWorker: { inThread: { pagesShared: number; pagesSharing: number; exact: boolean }; worker: Record<string, unknown> }

/** What a cross-origin isolated page needs (crossOriginIsolated: SharedArrayBuffer, the worker scanner). */
const ISOLATION = { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" }

beforeAll(async () => {
  const pack = await packed()
  dir = project("browser", [pack.tarball])
  for (const f of ["scenario.mjs", "page.mjs", "worker.mjs", "worker-scenario.mjs", "worker-page.mjs", "worker-node.mjs"]) copyFileSync(join(FIXTURES, f), join(dir, f))
  writeFileSync(join(dir, "index.html"), '<!doctype html><meta charset="utf-8"><title>sksm</title><script type="module" src="./page.js"></script>\n')
  writeFileSync(join(dir, "worker.html"), '<!doctype html><meta charset="utf-8"><title>sksm/worker</title><script type="module" src="./worker-page.js"></script>\n')
  // Unbundled (served from the project itself): the browser resolves the package through an import map.
  const imports = { sksm: "./node_modules/sksm/dist/index.js", "sksm/worker": "./node_modules/sksm/dist/worker/index.js" }
  writeFileSync(join(dir, "raw.html"), `<!doctype html><meta charset="utf-8"><title>sksm/worker unbundled</title><script type="importmap">${JSON.stringify({ imports })}</script><script type="module" src="./worker-page.mjs"></script>\n`)
  const line = run("node", ["worker-node.mjs"], dir).stdout.split("\n").find((l) => l.startsWith("SKSM-WORKER "))
  nodeWorker = JSON.parse(line!.slice("SKSM-WORKER ".length)) as typeof nodeWorker
  const result = await build({
    absWorkingDir: dir,
    // The hashing thread is an entry of its own, as a bundler user makes it (its URL is the page's threadUrl).
    entryPoints: { page: "page.mjs", worker: "worker.mjs", "worker-page": "worker-page.mjs", thread: "node_modules/sksm/dist/worker/thread.js" },
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    outdir: join(dir, "public"),
    logLevel: "silent",
  })
  expect(result.errors).toEqual([])
  expect(result.warnings).toEqual([])
  for (const f of ["index.html", "worker.html"]) copyFileSync(join(dir, f), join(dir, "public", f))
  bundleText = ["page.js", "worker.js", "worker-page.js", "thread.js"].map((f) => readFileSync(join(dir, "public", f), "utf8")).join("\n")

  // public/ at /, the same cross-origin isolated at /isolated/, and the project unbundled (isolated) at /raw/.
  const pub = join(dir, "public")
  server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x").pathname
    const [root, rest, headers] = url.startsWith("/isolated/") ? [pub, url.slice(9), ISOLATION] : url.startsWith("/raw/") ? [dir, url.slice(4), ISOLATION] : [pub, url, {}]
    const path = normalize(join(root, rest))
    if (!path.startsWith(root) || !existsSync(path) || !statSync(path).isFile()) {
      res.writeHead(404).end()
      return
    }
    const type = path.endsWith(".html") ? "text/html" : path.endsWith(".json") ? "application/json" : "text/javascript"
    res.writeHead(200, { "content-type": type, ...headers }).end(readFileSync(path))
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  browser = await chromium.launch({ executablePath: chromiumPath(), headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] })
}, 300_000)

afterAll(async () => {
  await browser?.close()
  await new Promise<void>((r) => (server === undefined ? r() : server.close(() => r())))
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

describe("in a browser (headless Chromium)", () => {
  it("bundles for the browser with esbuild: no Node built-ins, and Effect stays out", () => {
    expect(bundleText).not.toMatch(/from\s*["']node:|require\(["']node:/)
    expect(bundleText).not.toMatch(/effect\/(Effect|Layer|Schema)/)
  })

  it("runs the scenario on the page and in a Web Worker, with the same result as Node", async () => {
    const { json, errors } = await pageResult("/index.html", "sksmResult", "SKSM-RESULT ")
    const result = json as { page: Record<string, unknown>; worker: Record<string, unknown>; runtime: Record<string, string> }
    expect(errors).toEqual([])
    // The browser itself has no Node globals: nothing was polyfilled.
    expect(result.runtime).toEqual({ process: "undefined", Buffer: "undefined", setImmediate: "undefined" })
    expect(result.page).toEqual(EXPECTED)
    const { runtime, ...worker } = result.worker
    expect(runtime).toEqual({ process: "undefined", Buffer: "undefined", importScripts: "function" })
    expect(worker).toEqual(EXPECTED)
    console.log(`chromium ${browser.version()}: page and worker printed ${JSON.stringify(EXPECTED)}`)
  })
})

/**
 * Load `path`, wait until the page sets `globalThis[flag]`, and parse the console line that
 * starts with `marker`; also the console and the page's errors. The page is closed after.
 */
async function pageResult(path: string, flag: string, marker: string): Promise<{ json: unknown; logs: string[]; errors: string[] }> {
  const page = await browser.newPage()
  const logs: string[] = []
  const errors: string[] = []
  page.on("console", (m) => logs.push(m.text()))
  page.on("pageerror", (e) => errors.push(String(e)))
  try {
    await page.goto(`${origin}${path}`)
    await page.waitForFunction((f: string) => (globalThis as Record<string, unknown>)[f] !== undefined, flag, { timeout: 60_000 })
    const line = logs.find((l) => l.startsWith(marker))
    expect(line, logs.join("\n")).toBeDefined()
    return { json: JSON.parse(line!.slice(marker.length)), logs, errors }
  } finally {
    await page.close()
  }
}

/** Load a worker-scanner page; its SKSM-WORKER result, the console and the page's errors. */
async function workerPage(path: string): Promise<{ result: Record<string, unknown>; logs: string[]; errors: string[] }> {
  const r = await pageResult(`${path}${path.includes("?") ? "&" : "?"}sharing=${nodeWorker.inThread.pagesSharing}`, "sksmWorkerResult", "SKSM-WORKER ")
  return { result: r.json as Record<string, unknown>, logs: r.logs, errors: r.errors }
}

describe("sksm/worker in a browser (headless Chromium)", () => {
  // fixtures/worker-scenario.mjs: 200 pages of 5 contents, 56 unique: 5 shared frames, 195 pages sharing them.
  it("Node: the in-thread reference figure, and the worker scanner (worker_threads) reaching it", () => {
    expect(nodeWorker.inThread).toEqual({ pagesShared: 5, pagesSharing: 195, exact: true })
    expect(nodeWorker.worker).toEqual({ mode: "worker", pagesShared: 5, pagesSharing: 195, exact: true, threadHashed: true, threadError: null })
  })

  const merged = () => ({
    mode: "worker",
    fallback: null,
    fallbacks: [],
    threadError: null,
    pagesShared: nodeWorker.inThread.pagesShared,
    pagesSharing: nodeWorker.inThread.pagesSharing,
    threadHashed: true,
    mismatches: [],
    cow: true,
  })

  it("cross-origin isolated: sharedMemory engine, the hashing thread from its own bundle (threadUrl), merges as Node does", async () => {
    const { result, errors } = await workerPage("/isolated/worker.html?thread=url")
    expect(errors).toEqual([])
    expect(result).toEqual({ crossOriginIsolated: true, ...merged() })
  })

  it("cross-origin isolated, unbundled: the default thread URL (thread.js beside the module) loads as a module Worker", async () => {
    const { result, errors } = await workerPage("/raw/raw.html?thread=default")
    expect(errors).toEqual([])
    expect(result).toEqual({ crossOriginIsolated: true, ...merged() })
  })

  it("cross-origin isolated, a threadUrl that does not load: threadError names it, the host hashes, the merge is the same", async () => {
    const { result, errors } = await workerPage("/isolated/worker.html?thread=missing")
    expect(errors).toEqual([])
    expect(result).toEqual({ crossOriginIsolated: true, ...merged(), threadError: `Error: the hashing thread's script did not load (${origin}/isolated/no-such-thread.js)`, threadHashed: false })
  })

  it("not isolated: sharedMemory is Unsupported (naming cross-origin isolation); the scanner falls back to this thread and still merges", async () => {
    const { result, errors, logs } = await workerPage("/worker.html?thread=url")
    expect(errors).toEqual([])
    const { sharedMemory, fellBack, strict, ...rest } = result as { sharedMemory: { message: string }; fellBack: { fallback: string; fallbacks: string[] }; strict: { message: string } } & Record<string, unknown>
    expect(rest).toEqual({ crossOriginIsolated: false, sharedArrayBuffer: "undefined", warned: "in-thread" })
    expect(sharedMemory).toMatchObject({ unsupported: true, tag: "Unsupported" })
    expect(sharedMemory.message).toMatch(/cross-origin isolat/)
    expect(sharedMemory.message).toMatch(/Cross-Origin-Opener-Policy: same-origin/)
    // An engine without shared memory: the in-thread scanner, the reason given once, the same merge.
    expect(fellBack).toEqual({ ...merged(), mode: "in-thread", fallback: fellBack.fallback, fallbacks: [fellBack.fallback], threadHashed: false })
    expect(fellBack.fallback).toMatch(/sharedMemory: true/)
    expect(strict).toMatchObject({ unsupported: true, tag: "Unsupported" })
    expect(strict.message).toMatch(/^worker scanner: .*sharedMemory: true/)
    // No onFallback: the reason went to console.warn.
    expect(logs.filter((l) => l.startsWith("sksm: worker scanner unavailable, scanning on this thread: "))).toHaveLength(1)
  })
})
