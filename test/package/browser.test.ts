/**
 * sksm in a browser, as a web app gets it: the packed package installed into a fresh project, a
 * small program bundled for the browser with esbuild, served over HTTP and run in a real headless
 * Chromium (Debian's `chromium`, driven by playwright-core): on the page's main thread and in a
 * module Web Worker. Both must print the same result as Node (package.test.ts's EXPECTED).
 */
import { execFileSync } from "node:child_process"
import { copyFileSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { join, normalize } from "node:path"
import { build } from "esbuild"
import { type Browser, chromium } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { EXPECTED, FIXTURES, packed, project } from "./packed.ts"

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

beforeAll(async () => {
  const pack = await packed()
  dir = project("browser", [pack.tarball])
  for (const f of ["scenario.mjs", "page.mjs", "worker.mjs"]) copyFileSync(join(FIXTURES, f), join(dir, f))
  writeFileSync(join(dir, "index.html"), '<!doctype html><meta charset="utf-8"><title>sksm</title><script type="module" src="./page.js"></script>\n')
  const result = await build({
    absWorkingDir: dir,
    entryPoints: { page: "page.mjs", worker: "worker.mjs" },
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    outdir: join(dir, "public"),
    logLevel: "silent",
  })
  expect(result.errors).toEqual([])
  expect(result.warnings).toEqual([])
  copyFileSync(join(dir, "index.html"), join(dir, "public", "index.html"))
  bundleText = readFileSync(join(dir, "public", "page.js"), "utf8") + readFileSync(join(dir, "public", "worker.js"), "utf8")

  const root = join(dir, "public")
  server = createServer((req, res) => {
    const path = normalize(join(root, new URL(req.url ?? "/", "http://x").pathname))
    if (!path.startsWith(root) || !existsSync(path)) {
      res.writeHead(404).end()
      return
    }
    const type = path.endsWith(".html") ? "text/html" : "text/javascript"
    res.writeHead(200, { "content-type": type }).end(readFileSync(path))
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
    const page = await browser.newPage()
    const logs: string[] = []
    const errors: string[] = []
    page.on("console", (m) => logs.push(m.text()))
    page.on("pageerror", (e) => errors.push(String(e)))
    try {
      await page.goto(`${origin}/index.html`)
      await page.waitForFunction(() => (globalThis as { sksmResult?: unknown }).sksmResult !== undefined, undefined, { timeout: 60_000 })
      const line = logs.find((l) => l.startsWith("SKSM-RESULT "))
      expect(line, logs.join("\n")).toBeDefined()
      const result = JSON.parse(line!.slice("SKSM-RESULT ".length)) as { page: Record<string, unknown>; worker: Record<string, unknown>; runtime: Record<string, string> }
      expect(errors).toEqual([])
      // The browser itself has no Node globals: nothing was polyfilled.
      expect(result.runtime).toEqual({ process: "undefined", Buffer: "undefined", setImmediate: "undefined" })
      expect(result.page).toEqual(EXPECTED)
      const { runtime, ...worker } = result.worker
      expect(runtime).toEqual({ process: "undefined", Buffer: "undefined", importScripts: "function" })
      expect(worker).toEqual(EXPECTED)
      console.log(`chromium ${browser.version()}: page and worker printed ${JSON.stringify(EXPECTED)}`)
    } finally {
      await page.close()
    }
  })
})
