/**
 * Hibernate a real WebAssembly interpreter (QuickJS from quickjs-emscripten) into an sksm
 * address space, merge it against a sibling, drop the live instance, and resume it byte-exact.
 *
 * The trick for resuming: give a fresh module a WebAssembly.Memory of the snapshot's size,
 * replay the same newRuntime()/newContext() calls (QuickJS's allocator is deterministic, so the
 * host-side wrappers get the same pointers), then copy the pages over the whole linear memory.
 * Between calls the wasm stack is empty, so linear memory is the instance's entire state.
 *
 * Run: npx tsx examples/wasm-hibernate.ts
 */
import { createHash } from "node:crypto"
import { newQuickJSWASMModule, newVariant, type QuickJSContext, RELEASE_SYNC } from "quickjs-emscripten"
import { Engine } from "../src/index.ts"

const SCRIPT = `
  const counter = (() => { let n = 41; return () => ++n })()
  const cache = new Map([["greeting", "hello from before hibernation"]])
  class Account { constructor(b) { this.balance = b } deposit(x) { this.balance += x; return this.balance } }
  globalThis.state = { counter, cache, account: new Account(100) }
  state.counter()
`

function run(ctx: QuickJSContext, code: string): unknown {
  const r = ctx.evalCode(code)
  if (r.error !== undefined) {
    const e = ctx.dump(r.error)
    r.error.dispose()
    throw new Error(`guest error: ${JSON.stringify(e)}`)
  }
  const v = ctx.dump(r.value) as unknown
  r.value.dispose()
  return v
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex").slice(0, 16)

// 1. Two instances run the same script (a sibling gives merge() something to share with).
const boot = async () => {
  const module = await newQuickJSWASMModule()
  const runtime = module.newRuntime()
  const context = runtime.newContext()
  console.log(`booted: state.counter() = ${run(context, SCRIPT)}`)
  return { module, runtime, context }
}
const a = await boot()
const b = await boot()

// 2. Hibernate: copy each linear memory into a space and merge.
const engine = new Engine()
const hibernate = (mem: Uint8Array, name: string) => {
  const space = engine.createSpace({ size: mem.byteLength, name })
  space.write(0, mem)
  return space
}
const memA = new Uint8Array(a.module.getWasmMemory().buffer)
const digestBefore = sha(memA)
const spaceA = hibernate(memA, "quickjs-a")
const spaceB = hibernate(new Uint8Array(b.module.getWasmMemory().buffer), "quickjs-b")
spaceA.merge()
spaceB.merge()
const s = engine.stats()
console.log(`hibernated 2 x ${memA.byteLength >> 20} MiB: ${s.pagesSharing} pages merged away, ${s.ksmZeroPages} zero pages, ${engine.memory().framesInUse} frames held for ${spaceA.pages + spaceB.pages} pages`)

// 3. Drop the live instance A entirely.
a.context.dispose()
a.runtime.dispose()

// 4. Resume A from its merged space into a brand-new module.
const memory = new (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => object } }).WebAssembly.Memory({ initial: spaceA.size / 65536, maximum: 32768 })
const module = await newQuickJSWASMModule(newVariant(RELEASE_SYNC, { wasmMemory: memory as never }))
const runtime = module.newRuntime()
const context = runtime.newContext()
const target = new Uint8Array(module.getWasmMemory().buffer)
spaceA.readInto(0, target)
const digestAfter = sha(target)
console.log(`resumed: memory sha256 ${digestAfter} (hibernated ${digestBefore}) byte-exact: ${digestAfter === digestBefore ? "yes" : "NO"}`)

// 5. It carries on: the closure, the Map and the class instance are all there.
const next = run(context, "state.counter()")
const greeting = run(context, `state.cache.get("greeting")`)
const balance = run(context, "state.account.deposit(23)")
console.log(`after resume: state.counter() = ${next} (expected 43), greeting = "${greeting}", balance = ${balance} (expected 123)`)
const ok = digestAfter === digestBefore && next === 43 && greeting === "hello from before hibernation" && balance === 123
console.log(ok ? "OK: the interpreter carried on where it was hibernated" : "FAILED")

context.dispose()
runtime.dispose()
b.context.dispose()
b.runtime.dispose()
process.exitCode = ok ? 0 : 1
