/**
 * The background scanner as an Effect service: a worker pool whose workers all load the same
 * runtime image, merged by `Ksmd` from "sksm/effect" while an Effect program watches the
 * savings. The scanner's configuration comes from the environment (KSMD_PAGES_TO_SCAN,
 * KSMD_SLEEP_MILLIS, KSMD_POLICY, ... the /sys/kernel/mm/ksm names in CONSTANT_CASE), with this
 * example's own defaults underneath; the loop is a fiber that stops when the layer's scope
 * closes.
 *
 * Run: npx tsx examples/effect-scanner.ts
 *      KSMD_POLICY=tracked KSMD_PAGES_TO_SCAN=500 npx tsx examples/effect-scanner.ts
 */
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Ksmd, SksmEngine } from "../src/effect.ts" // in your project: from "sksm/effect"
import { Engine } from "../src/index.ts" // in your project: from "sksm"

const PAGE = 4096
const WORKERS = 8
const RUNTIME_PAGES = 1024 // a 4 MiB runtime image every worker loads

// Plain code builds the memory; the Effect program only runs the scanner over it.
const engine = new Engine({ pageSize: PAGE })
const runtime = new Uint8Array(RUNTIME_PAGES * PAGE)
const view = new DataView(runtime.buffer)
for (let i = 0; i < runtime.length; i += 64) view.setUint32(i, i * 2654435761, true) // every page distinct
for (let w = 0; w < WORKERS; w++) {
  const worker = engine.createSpace({ size: 8 << 20, name: `worker-${w}` })
  worker.write(0, runtime)
  for (let p = 0; p < 64; p++) worker.writeU32((RUNTIME_PAGES + p) * PAGE, (w << 16) | p) // the worker's own heap
  worker.setMergeAny(true) // PR_SET_MEMORY_MERGE
}

// Environment first (KSMD_* keys), then this example's defaults for anything unset.
const config = ConfigProvider.orElse(
  ConfigProvider.fromEnv().pipe(ConfigProvider.constantCase),
  ConfigProvider.fromUnknown({ ksmd: { pagesToScan: 1000, sleepMillis: 10 } }),
)
const layer = Ksmd.layer.pipe(Layer.provide(SksmEngine.fromEngine(engine)), Layer.provide(ConfigProvider.layer(config)))

const program = Effect.gen(function* () {
  const ksmd = yield* Ksmd
  const t = yield* ksmd.tunables
  const fromEnv = process.env["KSMD_PAGES_TO_SCAN"] !== undefined || process.env["KSMD_SLEEP_MILLIS"] !== undefined
  console.log(`ksmd: policy ${ksmd.config.policy}, pages_to_scan ${t.pagesToScan}, sleep ${t.sleepMillis} ms (${fromEnv ? "from the environment" : "example defaults"})`)
  // Watch the savings until every runtime page is merged (7 of 8 copies) or 10 s pass.
  const target = (WORKERS - 1) * RUNTIME_PAGES
  for (let i = 0; i < 200; i++) {
    yield* Effect.sleep("50 millis")
    const s = yield* ksmd.stats
    if (i % 4 === 0 || s.pagesSharing >= target) console.log(`  ${((i + 1) * 50).toString().padStart(5)} ms  pages_sharing ${s.pagesSharing}  full_scans ${s.fullScans}`)
    if (s.pagesSharing >= target) break
  }
  const s = yield* ksmd.stats
  console.log(`merged: the runtime image is shared by all ${WORKERS} workers, the heaps stay private`)
  console.log(`pages_shared ${s.pagesShared}, pages_sharing ${s.pagesSharing} (${((s.pagesSharing * PAGE) / 2 ** 20).toFixed(1)} MiB saved) after ${yield* ksmd.batches} batches`)
  return s
})

// Effect.scoped: the layer's scope (and with it the loop fiber) closes when the program ends.
const stats = await Effect.runPromise(program.pipe(Effect.provide(layer), Effect.scoped))
const after = engine.stats().pagesScanned
await new Promise((r) => setTimeout(r, 100))
console.log(`scanner stopped with its scope: ${engine.stats().pagesScanned === after ? "no batches after the program ended" : "STILL SCANNING"}`)
process.exitCode = stats.pagesSharing >= (WORKERS - 1) * RUNTIME_PAGES ? 0 : 1
