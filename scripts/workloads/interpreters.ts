/**
 * Heaps of real interpreters, each instance's whole WebAssembly linear memory as one image:
 *
 * - QuickJS (quickjs-emscripten, a devDependency): the demo's fleet (src/cli/fleet.ts), each
 *   instance booted, the shared framework and its own app script evaluated.
 * - Pyodide (CPython in WebAssembly, installed on demand): each instance imports the same ~20
 *   stdlib modules and runs the same small program, either with PYTHONHASHSEED=0 (every
 *   instance hashes strings alike) or with Python's default random hash seed.
 */
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { boot, linearMemory, shutdown } from "../../src/cli/fleet.ts"
import type { InstanceImage } from "./cache.ts"
import { type Missing, npmPackage } from "./sources.ts"

/** What a generator produced (images written into the staging directory). */
export interface Produced {
  readonly instances: InstanceImage[]
  readonly sources: Record<string, string>
  readonly options: Record<string, string | number | boolean>
}

function save(staging: string, file: string, bytes: Uint8Array, label: string): InstanceImage {
  writeFileSync(join(staging, file), bytes)
  return { file, bytes: bytes.length, label }
}

/** Version of a package in the repository's node_modules. */
async function installedVersion(name: string): Promise<string> {
  const pkg = (await import(`${name}/package.json`, { with: { type: "json" } })) as { default: { version: string } }
  return pkg.default.version
}

/** Sources and options of the QuickJS workload (its cache key). */
export async function quickjsPlan(count: number): Promise<Pick<Produced, "sources" | "options">> {
  return { sources: { "quickjs-emscripten": await installedVersion("quickjs-emscripten"), fleet: "src/cli/fleet.ts" }, options: { instances: count } }
}

/** `count` QuickJS heaps of the demo's fleet. */
export async function quickjs(staging: string, count: number): Promise<Produced> {
  const instances: InstanceImage[] = []
  for (let i = 0; i < count; i++) {
    const inst = await boot(i)
    instances.push(save(staging, `quickjs-${i}.bin`, linearMemory(inst).slice(), `instance ${i} (${inst.app})`))
    shutdown(inst)
  }
  return { instances, ...(await quickjsPlan(count)) }
}

/** The program every Pyodide instance runs: imports, then a little work on strings, sets and dicts. */
export const PYTHON_PROGRAM = `
import json, re, collections, itertools, functools, dataclasses, datetime, decimal, fractions, statistics
import textwrap, string, heapq, bisect, enum, typing, hashlib, base64, random, math, struct, io, csv
words = [f"w{i:x}-{(i * 7919) % 1009}" for i in range(6000)]
index = {w: i for i, w in enumerate(words)}
tags = {frozenset((i % 7, i % 11)) for i in range(3000)}
counts = collections.Counter(w[-2:] for w in words)
@dataclasses.dataclass
class Item:
    id: int
    name: str
items = [Item(i, words[i % len(words)]) for i in range(4000)]
doc = json.dumps({"items": [dataclasses.asdict(x) for x in items[:500]], "n": len(index)})
len(doc) + len(tags) + len(counts)
`

type PyodideApi = { runPython(code: string): unknown; _module: { HEAPU8: Uint8Array } }
type LoadPyodide = (opts: { indexURL: string; env?: Record<string, string>; stdout?: (s: string) => void }) => Promise<PyodideApi>

/** Sources and options of a Pyodide workload, installing pyodide if needed. */
export function pyodidePlan(count: number, seeded: boolean, log: (l: string) => void): (Pick<Produced, "sources" | "options"> & { dir: string }) | Missing {
  const pkg = npmPackage("pyodide", log)
  if ("missing" in pkg) return pkg
  return { dir: pkg.dir, sources: { pyodide: pkg.version }, options: { instances: count, PYTHONHASHSEED: seeded ? "0" : "random", program: PYTHON_PROGRAM.length } }
}

/** `count` Pyodide heaps, with PYTHONHASHSEED=0 when `seeded`. */
export async function pyodide(staging: string, count: number, seeded: boolean, log: (l: string) => void): Promise<Produced | Missing> {
  const plan = pyodidePlan(count, seeded, log)
  if ("missing" in plan) return plan
  const mod = (await import(pathToFileURL(join(plan.dir, "pyodide.mjs")).href)) as { loadPyodide: LoadPyodide }
  const instances: InstanceImage[] = []
  for (let i = 0; i < count; i++) {
    const t0 = performance.now()
    const py = await mod.loadPyodide({ indexURL: `${plan.dir}/`, ...(seeded ? { env: { PYTHONHASHSEED: "0" } } : {}), stdout: () => {} })
    py.runPython(PYTHON_PROGRAM)
    instances.push(save(staging, `pyodide-${i}.bin`, py._module.HEAPU8.slice(), `instance ${i}, PYTHONHASHSEED=${seeded ? "0" : "random"}`))
    log(`pyodide ${seeded ? "seeded" : "random"} ${i}: ${((performance.now() - t0) / 1e3).toFixed(1)} s`)
  }
  return { instances, sources: plan.sources, options: plan.options }
}
