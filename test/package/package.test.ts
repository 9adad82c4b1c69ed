/**
 * The package as its users get it: `npm pack` (prepack builds dist/), the tarball installed into
 * fresh projects, used from plain JavaScript, from TypeScript (tsc 7 and 5.9, nodenext and
 * bundler), through its `sksm` binary, with and without the optional effect peer; plus publint
 * and arethetypeswrong on the tarball. The browser and Web Worker runs are in browser.test.ts.
 */
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync, copyFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { EXPECTED, FIXTURES, lockedVersion, type Packed, packed, project, ROOT, run } from "./packed.ts"

const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version
const TSC7 = join(ROOT, "node_modules/typescript/bin/tsc")

/** tools/ts5's TypeScript 5.9 compiler (installed from its lockfile when missing). */
function tsc59(): string {
  run(process.execPath, [join(ROOT, "tools/ts5/ensure.mjs")], ROOT)
  return join(ROOT, "tools/ts5/node_modules/typescript/bin/tsc")
}

/** Lines a command wrote, minus blank ones and npm's own warnings. */
const lines = (s: string) => s.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("npm warn"))

function resultLine(stdout: string, tag: string): unknown {
  const line = stdout.split("\n").find((l) => l.startsWith(`${tag} `))
  expect(line, stdout).toBeDefined()
  return JSON.parse(line!.slice(tag.length + 1))
}

/**
 * A consumer tsconfig: strict, declarations checked (no skipLibCheck), no Node types, and no DOM
 * unless asked (effect's own declarations need the DOM lib; sksm's need neither).
 */
function tsconfig(dir: string, name: string, resolution: "nodenext" | "bundler", files: string[], lib: string[] = ["es2023"]): string {
  const module = resolution === "nodenext" ? "nodenext" : "esnext"
  const file = join(dir, `tsconfig.${name}.json`)
  writeFileSync(file, JSON.stringify({ compilerOptions: { target: "es2022", lib, types: [], module, moduleResolution: resolution, strict: true, noEmit: true, skipLibCheck: false, exactOptionalPropertyTypes: true }, files }, null, 2))
  return file
}

let pack: Packed
let plain: string
const dirs: string[] = []

beforeAll(async () => {
  pack = await packed()
  plain = project("plain", [pack.tarball])
  dirs.push(plain)
  for (const f of ["scenario.mjs", "node.mjs", "consumer.ts"]) copyFileSync(join(FIXTURES, f), join(plain, f))
}, 300_000)

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

describe("npm pack", () => {
  it("ships built JavaScript, declarations, README, LICENSE and CHANGELOG, and nothing else", () => {
    const files = [...pack.files].sort()
    const outside = files.filter((f) => !f.startsWith("dist/") && !["package.json", "README.md", "LICENSE", "CHANGELOG.md"].includes(f))
    expect(outside).toEqual([])
    for (const f of ["LICENSE", "CHANGELOG.md", "README.md", "dist/index.js", "dist/index.d.ts", "dist/effect.js", "dist/effect.d.ts", "dist/snapshot/index.js", "dist/snapshot/index.d.ts", "dist/worker/index.js", "dist/worker/thread.js", "dist/cli/main.js"]) expect(files).toContain(f)
    // No TypeScript sources (only declarations), no tests, benchmarks, scripts or build info.
    expect(files.filter((f) => (f.endsWith(".ts") && !f.endsWith(".d.ts")) || /test|bench\/|scripts\/|tsbuildinfo/.test(f))).toEqual([])
    expect(files.length).toBeLessThan(100) // 93 with sksm/worker (4 modules: .js and .d.ts each)
    console.log(`npm pack: ${files.length} files, ${(statSync(pack.tarball).size / 1024).toFixed(1)} kB tarball`)
  })

  it("the manifest: exports (types first), bin, optional caret peers on effect and ioredis, no dependencies, no install scripts", () => {
    const pkg = JSON.parse(run("tar", ["-xzOf", pack.tarball, "package/package.json"], ROOT).stdout) as Record<string, unknown>
    expect(pkg["exports"]).toEqual({
      ".": { types: "./dist/index.d.ts", default: "./dist/index.js" },
      "./effect": { types: "./dist/effect.d.ts", default: "./dist/effect.js" },
      "./snapshot": { types: "./dist/snapshot/index.d.ts", default: "./dist/snapshot/index.js" },
      "./worker": { types: "./dist/worker/index.d.ts", default: "./dist/worker/index.js" },
      "./package.json": "./package.json",
    })
    expect(pkg["bin"]).toEqual({ sksm: "dist/cli/main.js" })
    expect(pkg["dependencies"]).toBeUndefined()
    expect(pkg["peerDependencies"]).toEqual({ effect: "^4.1.0", ioredis: "^6.0.0" })
    expect(pkg["peerDependenciesMeta"]).toEqual({ effect: { optional: true }, ioredis: { optional: true } })
    expect(pkg["sideEffects"]).toBe(false)
    expect(pkg["license"]).toBe("MIT")
    for (const k of ["keywords", "engines", "files", "description"]) expect(pkg[k]).toBeDefined()
    // No public repository exists yet: the manifest names none rather than an invented URL.
    expect(pkg["repository"]).toBeUndefined()
    // Nothing runs at install time.
    const scripts = (pkg["scripts"] ?? {}) as Record<string, string>
    for (const k of ["preinstall", "install", "postinstall", "prepare"]) expect(scripts[k]).toBeUndefined()
  })
})

describe("installed into a fresh project", () => {
  it("adds exactly one package", () => {
    const installed = readdirSync(join(plain, "node_modules")).filter((n) => !n.startsWith("."))
    expect(installed).toEqual(["sksm"])
    const tree = run("npm", ["ls", "--all", "--parseable"], plain).stdout.trim().split("\n")
    expect(tree.slice(1).map((p) => p.slice(p.lastIndexOf("node_modules"))) ).toEqual(["node_modules/sksm"])
    const du = run("du", ["-sk", join(plain, "node_modules")], plain).stdout
    const kb = Number(du.split(/\s/)[0])
    expect(kb).toBeLessThan(2048)
    console.log(`installed: 1 package, ${kb} kB in node_modules`)
  })

  it("imports from plain JavaScript on Node, without any TypeScript tooling", () => {
    const once = run(process.execPath, ["-e", 'import("sksm").then(m => console.log(typeof m.Engine))'], plain)
    expect(once.stdout.trim()).toBe("function")
    const r = run(process.execPath, ["node.mjs"], plain)
    expect(lines(r.stderr)).toEqual([])
    expect(resultLine(r.stdout, "SKSM-RESULT")).toEqual(EXPECTED)
  })

  it("sksm/effect without effect installed: a one-line error naming the peer", () => {
    const r = run(process.execPath, ["-e", 'import("sksm/effect").then(() => console.log("loaded"), e => console.log(`${e.code}: ${e.message}`))'], plain)
    const out = lines(r.stdout)
    expect(out).toHaveLength(1)
    expect(out[0]).toMatch(/^ERR_MODULE_NOT_FOUND: Cannot find package 'effect' imported from .*sksm\/dist\/effect\.js$/)
  })

  it("sksm/snapshot without ioredis installed: loads; RedisBackend.open() says in one line what to install", () => {
    const r = run(process.execPath, ["-e", 'import("sksm/snapshot").then(m => m.RedisBackend.open({ nodes: [{ host: "127.0.0.1", port: 1 }] })).then(() => console.log("opened"), e => console.log(`${e._tag}: ${e.message}`))'], plain)
    expect(lines(r.stdout)).toEqual(["StoreUnavailable: RedisBackend needs the ioredis package: npm install ioredis@6"])
  })

  it("type-checks a TypeScript consumer: tsc 7 and 5.9, nodenext and bundler, declarations checked, no Node types", () => {
    const ts59 = tsc59()
    for (const [name, tsc] of [["7", TSC7], ["5.9", ts59]] as const) {
      for (const resolution of ["nodenext", "bundler"] as const) {
        const cfg = tsconfig(plain, `${resolution}-${name.replace(".", "")}`, resolution, ["consumer.ts"])
        const r = run(process.execPath, [tsc, "-p", cfg], plain, { allowFail: true })
        expect(`${r.stdout}${r.stderr}`, `tsc ${name} ${resolution}`).toBe("")
        expect(r.status, `tsc ${name} ${resolution}`).toBe(0)
      }
    }
  })

  it("the sksm binary: --version from built JavaScript in well under 0.3 s, --help, estimate", () => {
    const bin = join(plain, "node_modules/.bin/sksm")
    const times: number[] = []
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now()
      const r = run(bin, ["--version"], plain)
      times.push(performance.now() - t0)
      expect(r.stdout.trim()).toBe(`sksm ${VERSION}`)
    }
    const best = Math.min(...times)
    console.log(`sksm --version: best ${best.toFixed(0)} ms of 3 (${times.map((t) => t.toFixed(0)).join(", ")})`)
    expect(best).toBeLessThan(300)
    expect(run(bin, ["--help"], plain).stdout).toContain("estimate")
    const image = join(plain, "image.raw")
    writeFileSync(image, new Uint8Array(64 * 4096).fill(7))
    const est = run(bin, ["estimate", image, "--json"], plain)
    expect(JSON.parse(est.stdout)).toHaveProperty("totals")
  })

  it("sksm demo and sksm bench say in one line what is missing (exit 1, no stack trace)", () => {
    const bin = join(plain, "node_modules/.bin/sksm")
    const demo = run(bin, ["demo", "--small"], plain, { allowFail: true })
    expect(demo.status).toBe(1)
    expect(lines(demo.stderr)).toEqual(["sksm: sksm demo needs the dev dependency quickjs-emscripten: npm install quickjs-emscripten"])
    const bench = run(bin, ["bench", "--quick"], plain, { allowFail: true })
    expect(bench.status).toBe(1)
    expect(lines(bench.stderr)).toHaveLength(1)
    expect(bench.stderr).toMatch(/^sksm: sksm bench needs the benchmarks of a clone of the repository/)
  })

  it("publint and arethetypeswrong (--profile esm-only) find nothing", () => {
    const lint = run(process.execPath, [join(ROOT, "node_modules/publint/src/cli.js"), "run", pack.tarball, "--strict", "--level", "suggestion"], ROOT, { allowFail: true })
    expect(lint.stdout, lint.stderr).toContain("All good!")
    expect(lint.status).toBe(0)
    const attw = run(process.execPath, [join(ROOT, "node_modules/@arethetypeswrong/cli/dist/index.js"), pack.tarball, "--profile", "esm-only", "--format", "json"], ROOT, { allowFail: true })
    const problems = Object.values((JSON.parse(attw.stdout) as { problems: Record<string, { resolutionKind?: string }[]> }).problems)
      .flat()
      .filter((p) => p.resolutionKind !== "node10" && p.resolutionKind !== "node16-cjs") // what esm-only ignores
    expect(problems).toEqual([])
    expect(attw.status).toBe(0)
  })
})

describe("with the effect peer installed", () => {
  let dir: string
  beforeAll(() => {
    dir = project("effect", [pack.tarball, `effect@${lockedVersion("effect")}`])
    dirs.push(dir)
    for (const f of ["effect.mjs", "effect-consumer.ts"]) copyFileSync(join(FIXTURES, f), join(dir, f))
  }, 300_000)

  it("one copy of effect: the project's", () => {
    const tree = run("npm", ["ls", "--all", "--parseable"], dir).stdout.trim().split("\n").slice(1)
    expect(tree.map((p) => p.slice(p.lastIndexOf("node_modules"))).sort()).toEqual(["node_modules/effect", "node_modules/sksm"])
  })

  it("sksm/effect runs from plain JavaScript", () => {
    const r = run(process.execPath, ["effect.mjs"], dir)
    expect(lines(r.stderr)).toEqual([])
    expect(resultLine(r.stdout, "SKSM-EFFECT")).toEqual({ pagesShared: 1, pagesSharing: 15 })
  })

  it("an Effect program using sksm/effect type-checks (tsc 7 and 5.9, nodenext and bundler)", () => {
    const ts59 = tsc59()
    for (const [name, tsc] of [["7", TSC7], ["5.9", ts59]] as const) {
      for (const resolution of ["nodenext", "bundler"] as const) {
        const cfg = tsconfig(dir, `${resolution}-${name.replace(".", "")}`, resolution, ["effect-consumer.ts"], ["es2023", "dom"])
        const r = run(process.execPath, [tsc, "-p", cfg], dir, { allowFail: true })
        expect(`${r.stdout}${r.stderr}`, `tsc ${name} ${resolution}`).toBe("")
        expect(r.status, `tsc ${name} ${resolution}`).toBe(0)
      }
    }
  })
})
