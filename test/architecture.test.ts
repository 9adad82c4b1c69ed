/**
 * The house rules of src/, checked from the source text: the import graph has no cycle (type-only
 * imports included), every arrow points down the layers, the command line uses only the public
 * API, and nothing outside src/cli/ and the platform seam touches Node.
 */
import { readdirSync, readFileSync, statSync } from "node:fs"
import { dirname, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const SRC = fileURLToPath(new URL("../src/", import.meta.url))

/**
 * The layers, top to bottom. A module may import modules of its own folder and of lower layers;
 * two folders of one layer never import each other. A new folder must be placed here.
 */
const LAYERS: readonly (readonly string[])[] = [
  ["cli"],
  ["effect.ts", "snapshot"],
  ["worker"],
  ["index.ts"],
  ["engine"],
  ["space", "policy"],
  ["core"],
  ["memory"],
  ["validate.ts", "platform.ts"],
  ["errors.ts"],
]

/** The unit of a module: its first path segment under src/ (a folder, or a top-level file). */
function unitOf(file: string): string {
  return relative(SRC, file).split("/")[0]!
}

function rankOf(unit: string): number {
  const r = LAYERS.findIndex((layer) => layer.includes(unit))
  if (r < 0) throw new Error(`src/${unit} is in no layer: add it to LAYERS in test/architecture.test.ts`)
  return r
}

function sources(dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    const p = resolve(dir, name)
    if (statSync(p).isDirectory()) out.push(...sources(p))
    else if (name.endsWith(".ts")) out.push(p)
  }
  return out
}

/** Source without comments and string contents other than import specifiers (enough for the checks below). */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:\\])\/\/.*$/gm, "$1")
}

/** Every relative module `file` imports or re-exports, type-only ones included. */
function importsOf(file: string): { spec: string; target: string | null }[] {
  const text = code(readFileSync(file, "utf8"))
  const out: { spec: string; target: string | null }[] = []
  for (const m of text.matchAll(/(?:^|;|\n)\s*(?:import|export)\b[^"';]*?\bfrom\s*["']([^"']+)["']|(?:^|\n)\s*import\s*["']([^"']+)["']/g)) {
    const spec = (m[1] ?? m[2])!
    out.push({ spec, target: spec.startsWith(".") ? resolve(dirname(file), spec) : null })
  }
  return out
}

/** Every cycle a depth-first walk meets, as "a -> b -> a". */
function findCycles(edges: ReadonlyMap<string, readonly string[]>): string[] {
  const state = new Map<string, 1 | 2>()
  const cycles: string[] = []
  const stack: string[] = []
  const visit = (n: string): void => {
    state.set(n, 1)
    stack.push(n)
    for (const m of edges.get(n) ?? []) {
      const s = state.get(m)
      if (s === 1) cycles.push([...stack.slice(stack.indexOf(m)), m].join(" -> "))
      else if (s === undefined) visit(m)
    }
    stack.pop()
    state.set(n, 2)
  }
  for (const n of edges.keys()) if (!state.has(n)) visit(n)
  return cycles
}

const files = sources(SRC)
const graph = new Map(files.map((f) => [f, importsOf(f)]))

describe("architecture", () => {
  it("reads a real import graph", () => {
    expect(files.length).toBeGreaterThan(30)
    const engine = graph.get(resolve(SRC, "engine/engine.ts"))!
    expect(engine.some((i) => i.target === resolve(SRC, "policy/registry.ts"))).toBe(true)
    for (const [f, imps] of graph) for (const i of imps) if (i.target !== null) expect(files, `${relative(SRC, f)} imports missing ${i.spec}`).toContain(i.target)
  })

  it("has no import cycle in src/, type-only imports included", () => {
    const edges = new Map([...graph].map(([f, imps]) => [relative(SRC, f), imps.flatMap((i) => (i.target === null ? [] : [relative(SRC, i.target)]))]))
    expect(findCycles(edges)).toEqual([])
  })

  it("the cycle check finds a cycle when there is one", () => {
    const edges = new Map([
      ["a.ts", ["b.ts"]],
      ["b.ts", ["c.ts"]],
      ["c.ts", ["a.ts"]],
      ["d.ts", ["a.ts"]],
    ])
    expect(findCycles(edges)).toEqual(["a.ts -> b.ts -> c.ts -> a.ts"])
  })

  it("points every arrow down the layers: cli -> effect | snapshot -> worker -> index -> engine -> space | policy -> core -> memory -> validate, platform -> errors", () => {
    const wrong: string[] = []
    for (const [f, imps] of graph) {
      const from = unitOf(f)
      for (const { target } of imps) {
        if (target === null) continue
        const to = unitOf(target)
        if (to === from) continue
        if (rankOf(to) <= rankOf(from)) wrong.push(`${relative(SRC, f)} -> ${relative(SRC, target)}`)
      }
    }
    expect(wrong).toEqual([])
  })

  it("the command line reaches the library only through the public API (src/index.ts) and the sksm/snapshot entry (src/snapshot/index.ts)", () => {
    const wrong: string[] = []
    const entries = [resolve(SRC, "index.ts"), resolve(SRC, "snapshot/index.ts")]
    for (const [f, imps] of graph) {
      if (unitOf(f) !== "cli") continue
      for (const { target } of imps) if (target !== null && unitOf(target) !== "cli" && !entries.includes(target)) wrong.push(`${relative(SRC, f)} -> ${relative(SRC, target)}`)
    }
    expect(wrong).toEqual([])
  })

  it.each(["snapshot", "worker"])("the %s layer reaches the library only through the public API (src/index.ts)", (unit) => {
    const wrong: string[] = []
    for (const [f, imps] of graph) {
      if (unitOf(f) !== unit) continue
      for (const { target } of imps) if (target !== null && unitOf(target) !== unit && target !== resolve(SRC, "index.ts")) wrong.push(`${relative(SRC, f)} -> ${relative(SRC, target)}`)
    }
    expect(wrong).toEqual([])
    expect(graph.get(resolve(SRC, `${unit}/index.ts`))).toBeDefined()
  })

  it("nothing outside src/cli/, src/snapshot/, src/worker/ (Node entry points; the worker's by feature detection) and the platform seam uses Buffer, process, setImmediate or node:* modules", () => {
    const wrong: string[] = []
    for (const [f, imps] of graph) {
      const rel = relative(SRC, f)
      if (unitOf(f) === "cli" || unitOf(f) === "snapshot" || unitOf(f) === "worker") continue
      for (const { spec } of imps) if (spec.startsWith("node:") || ["fs", "path", "os", "crypto", "worker_threads", "buffer"].includes(spec)) wrong.push(`${rel} imports ${spec}`)
      if (rel === "platform.ts") continue
      const text = code(readFileSync(f, "utf8")).replace(/(["'`])(?:\\.|(?!\1).)*\1/g, '""')
      for (const word of ["Buffer", "process", "setImmediate", "require"]) if (new RegExp(`\\b${word}\\b`).test(text)) wrong.push(`${rel} uses ${word}`)
    }
    expect(wrong).toEqual([])
  })

  it("the platform seam finds Node's primitives by feature detection only (no import)", () => {
    const imps = graph.get(resolve(SRC, "platform.ts"))!
    expect(imps).toEqual([])
  })
})
