/**
 * A JIT host: several isolates compile the same modules into their own code heaps. Once a
 * module's code is emitted and finalised, its range is invariant, so the host merges it at
 * once with merge() (SKSM's MADV_MERGE). Later the host patches a few code pages of some
 * isolates (enabling a tracing hook, as static keys or inline-cache patching do): each write
 * unshares only the page it touches, by copy-on-write.
 *
 * Run: npx tsx examples/jit-host.ts
 */
import { Engine } from "../src/index.ts"

const PAGE = 4096
const ISOLATES = 6

/** Modules every isolate compiles; sizes in code pages, plus one page of per-isolate data. */
const MODULES = [
  { name: "runtime", codePages: 96 },
  { name: "stdlib", codePages: 160 },
  { name: "regexp", codePages: 40 },
  { name: "app", codePages: 24 },
]

/** Deterministic "machine code" for a module: the same bytes in every isolate. */
function emitCode(module: string, pages: number): Uint8Array {
  const code = new Uint8Array(pages * PAGE)
  let x = 0x9e3779b9
  for (const ch of module) x = Math.imul(x ^ ch.charCodeAt(0), 0x01000193)
  for (let i = 0; i < code.length; i += 4) {
    x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) >>> 0
    // Mostly "instructions", with int3 padding at each function end (every 256 bytes).
    const word = i % 256 >= 240 ? 0xcccccccc : x
    code[i] = word & 0xff
    code[i + 1] = (word >>> 8) & 0xff
    code[i + 2] = (word >>> 16) & 0xff
    code[i + 3] = word >>> 24
  }
  return code
}

/** The module's data page: literal pool and isolate-specific pointers, different per isolate. */
function emitData(module: string, isolate: number): Uint8Array {
  const data = new Uint8Array(PAGE)
  const text = new TextEncoder().encode(`${module} isolate=${isolate} heap=0x${(0x10000000 * (isolate + 1)).toString(16)}`)
  data.set(text)
  return data
}

const engine = new Engine({ pageSize: PAGE })
const heaps = Array.from({ length: ISOLATES }, (_, i) => engine.createSpace({ size: 4 << 20, name: `isolate-${i}-code` }))
const where = new Map<string, number>() // `${isolate}/${module}` -> address of its code

console.log(`jit-host: ${ISOLATES} isolates compile ${MODULES.length} modules each\n`)
for (const m of MODULES) {
  const code = emitCode(m.name, m.codePages)
  let merged = 0
  let inserted = 0
  heaps.forEach((heap, i) => {
    // A bump allocator: modules are laid out in the same order in every isolate.
    const addr = MODULES.slice(0, MODULES.indexOf(m)).reduce((a, p) => a + (p.codePages + 1) * PAGE, 0)
    heap.write(addr, code)
    heap.write(addr + code.length, emitData(m.name, i))
    where.set(`${i}/${m.name}`, addr)
    // The code is final: merge its range now. The data page is merged too; it finds no partner.
    const r = heap.merge(addr, code.length + PAGE)
    merged += r.merged
    inserted += r.inserted
  })
  const s = engine.stats()
  console.log(`emitted ${m.name.padEnd(8)} ${String(m.codePages + 1).padStart(4)} pages x ${ISOLATES}: merged ${String(merged).padStart(4)}, first copies ${String(inserted).padStart(3)}  -> pagesSharing ${s.pagesSharing}`)
}

const before = engine.stats()
const populated = ISOLATES * MODULES.reduce((a, m) => a + m.codePages + 1, 0)
console.log(`\nafter emission: ${populated} pages populated, ${engine.memory().framesInUse} frames held`)
console.log(`saved: ${before.pagesSharing} pages (${((before.pagesSharing * PAGE) / 2 ** 20).toFixed(2)} MiB), generalProfit ${before.generalProfit} bytes`)

// Patch: isolates 0 and 1 enable a tracing hook in 3 stdlib functions (one write per page).
for (const i of [0, 1]) {
  const base = where.get(`${i}/stdlib`)!
  for (const page of [3, 50, 120]) heaps[i]!.writeU8(base + page * PAGE + 17, 0xe8) // call rel32
}
const after = engine.stats()
console.log(`\npatched 3 stdlib pages in isolates 0 and 1: ${after.cowFaults} copy-on-write faults`)
console.log(`saved: ${after.pagesSharing} pages (was ${before.pagesSharing}); the other isolates still share every stdlib page`)
console.log(`isolate-0 ksm_stat: ${JSON.stringify(heaps[0]!.ksmStat())}`)

// Sanity: the patch is private to the isolate that wrote it.
const probe = where.get("0/stdlib")! + 3 * PAGE + 17
console.log(`\nbyte at the patch site: isolate-0 0x${heaps[0]!.readU8(probe).toString(16)}, isolate-2 0x${heaps[2]!.readU8(probe).toString(16)}`)
for (const h of heaps) h.dispose()
