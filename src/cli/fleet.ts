/**
 * A fleet of real QuickJS interpreters (quickjs-emscripten, WebAssembly) for the demo: boot
 * each, run a shared "framework" script and an app script of its own, hibernate its linear
 * memory into an sksm address space, and resume an instance from a space.
 *
 * How resume works: a fresh module is given a WebAssembly.Memory of the snapshot's size, and the
 * same runtime/context creation calls are replayed in it, so the host-side wrappers hold the
 * same pointers as the original (QuickJS's allocator is deterministic). Then the snapshot's
 * pages are copied over the whole linear memory: the interpreter now *is* the hibernated one,
 * and the next evalCode runs against its heap. Nothing but the linear memory is restored; that
 * is enough because between calls the wasm stack is empty and every other piece of state
 * (malloc arena, sbrk, QuickJS heap, atoms) lives in linear memory.
 */
import { newQuickJSWASMModule, newVariant, type QuickJSContext, type QuickJSRuntime, type QuickJSWASMModule, RELEASE_SYNC } from "quickjs-emscripten"
import type { AddressSpace } from "../index.ts"
import type { Engine } from "../index.ts"

/** A live interpreter of the fleet. */
export interface Instance {
  readonly index: number
  readonly app: string
  readonly module: QuickJSWASMModule
  readonly runtime: QuickJSRuntime
  readonly context: QuickJSContext
}

/** WebAssembly pages are 64 KiB. */
const WASM_PAGE = 65536

/** The WebAssembly global (typed by hand: the project's lib has no DOM/WebAssembly values). */
type WasmMemoryOption = Parameters<typeof newVariant>[1]["wasmMemory"]
const wasm = (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number; maximum?: number }) => WasmMemoryOption } }).WebAssembly

/**
 * The framework every instance loads first: a small standard library with tables, strings,
 * compiled functions and classes. Identical code, identical allocation order: identical pages.
 */
export const FRAMEWORK = String.raw`
globalThis.fw = (() => {
  const words = []
  for (let i = 0; i < 6000; i++) words.push("w" + i.toString(36) + "-" + ((i * 7919) % 1009))
  const index = new Map()
  for (let i = 0; i < 4000; i++) index.set("k" + i, { id: i, name: words[i % words.length], tags: [i % 7, i % 11, i % 13] })
  const primes = []
  for (let n = 2; primes.length < 6000; n++) {
    let p = true
    for (const q of primes) { if (q * q > n) break; if (n % q === 0) { p = false; break } }
    if (p) primes.push(n)
  }
  const render = (tpl, data) => tpl.replace(/\{(\w+)\}/g, (_, k) => String(data[k]))
  class Emitter {
    constructor() { this.handlers = {} }
    on(e, f) { (this.handlers[e] ||= []).push(f); return this }
    emit(e, x) { let n = 0; for (const f of this.handlers[e] || []) { f(x); n++ } return n }
  }
  const memo = (f) => { const c = new Map(); return (x) => c.has(x) ? c.get(x) : (c.set(x, f(x)), c.get(x)) }
  const fib = memo((n) => n < 2 ? n : fib(n - 1) + fib(n - 2))
  return { words, index, primes, render, Emitter, memo, fib, version: "1.4.2" }
})()
`

/** App scripts: each instance runs one, parameterised by its index, on top of the framework. */
const APPS: Record<string, (i: number) => string> = {
  counter: (i) => `
    globalThis.app = { name: "counter-${i}", next: (() => { let n = ${1000 * (i + 1)}; return () => ++n })(), log: [] }
    for (let k = 0; k < ${1500 + 97 * i}; k++) app.log.push({ at: k, v: app.next() })
    app.describe = () => app.name + " log=" + app.log.length`,
  router: (i) => `
    const routes = new Map()
    for (let k = 0; k < ${800 + 31 * i}; k++) routes.set("/api/v${i}/item/" + k, (q) => fw.render("item {id} of {n}", { id: k, n: q }))
    let hits = ${i * 10}
    globalThis.app = { name: "router-${i}", routes, next: () => ++hits, describe: () => "routes=" + routes.size + " " + routes.get("/api/v${i}/item/7")("x") }`,
  store: (i) => `
    const em = new fw.Emitter()
    const state = new Map()
    let version = ${i}
    em.on("set", ([k, v]) => { state.set(k, v); version++ })
    for (let k = 0; k < ${2500 + 113 * i}; k++) em.emit("set", ["user:" + (k * ${i + 3}), { score: (k * 31 + ${i}) % 997, name: fw.words[k % 6000] }])
    globalThis.app = { name: "store-${i}", next: () => ++version, describe: () => "entries=" + state.size }`,
  math: (i) => `
    class Matrix { constructor(n) { this.n = n; this.a = new Float64Array(n * n) } get(r, c) { return this.a[r * this.n + c] } set(r, c, v) { this.a[r * this.n + c] = v } }
    const m = new Matrix(${96 + 8 * i})
    for (let r = 0; r < m.n; r++) for (let c = 0; c < m.n; c++) m.set(r, c, fw.primes[(r * m.n + c) % 6000] * ${i + 1})
    let calls = ${7 * i}
    globalThis.app = { name: "math-${i}", m, next: () => ++calls, describe: () => "fib(70)=" + fw.fib(70) + " trace=" + m.get(1, 1) }`,
}

/** The app names, in the order instances take them. */
export const APP_NAMES = Object.keys(APPS)

/** An expression every app answers: advances its counter and describes its state. */
export const PROBE = `app.name + " next=" + app.next() + " " + app.describe() + " fw=" + fw.version + " primes=" + fw.primes.length`

/** Evaluate `code`, dispose the handle, return the dumped value (throws with the guest's error). */
export function evalString(context: QuickJSContext, code: string): string {
  const result = context.evalCode(code)
  if (result.error !== undefined) {
    const err = context.dump(result.error) as unknown
    result.error.dispose()
    throw new Error(`guest error: ${typeof err === "object" && err !== null && "message" in err ? String((err as { message: unknown }).message) : JSON.stringify(err)}`)
  }
  const v = context.dump(result.value) as unknown
  result.value.dispose()
  return String(v)
}

/** Boot instance `index`: a fresh wasm module, the framework, and its app. */
export async function boot(index: number): Promise<Instance> {
  const module = await newQuickJSWASMModule()
  const runtime = module.newRuntime()
  const context = runtime.newContext()
  const app = APP_NAMES[index % APP_NAMES.length]!
  evalString(context, FRAMEWORK)
  evalString(context, `${APPS[app]!(index)}; "ok"`)
  return { index, app, module, runtime, context }
}

/** The instance's linear memory (a live view: copy it before the instance runs again). */
export function linearMemory(inst: Instance): Uint8Array {
  return new Uint8Array(inst.module.getWasmMemory().buffer)
}

/** Hibernate: copy the instance's whole linear memory into a new space of `engine`, page by page. */
export function hibernate(inst: Instance, engine: Engine, domain?: string): AddressSpace {
  const mem = linearMemory(inst)
  const space = engine.createSpace({ size: mem.byteLength, name: `quickjs-${inst.index}-${inst.app}`, ...(domain === undefined ? {} : { domain }) })
  space.write(0, mem)
  return space
}

/** Release an instance's interpreter (its wasm memory goes with the module). */
export function shutdown(inst: Instance): void {
  inst.context.dispose()
  inst.runtime.dispose()
}

/**
 * Resume a hibernated instance from `space`: a fresh module whose memory is the space's pages.
 * The instance's host state (which runtime/context calls were made) is replayed, not stored.
 */
export async function resume(space: AddressSpace, index: number, app: string): Promise<Instance> {
  const memory = new wasm.Memory({ initial: space.size / WASM_PAGE, maximum: 32768 })
  const module = await newQuickJSWASMModule(newVariant(RELEASE_SYNC, { wasmMemory: memory }))
  const runtime = module.newRuntime()
  const context = runtime.newContext()
  const mem = new Uint8Array(module.getWasmMemory().buffer)
  if (mem.byteLength !== space.size) throw new Error(`resumed memory is ${mem.byteLength} bytes, the space ${space.size}`)
  space.readInto(0, mem)
  return { index, app, module, runtime, context }
}
