/**
 * An emulator fleet: several guests boot from the same disk image into their own guest RAM,
 * then run, each writing pages of its own (a heap that grows, a clock page that changes all the
 * time). Like QEMU, the host marks guest RAM MADV_MERGEABLE and lets the background scanner
 * (ksmd emulation, promise API: start() / stop()) find the identical pages over time. It
 * prints what merging saves, second by second.
 *
 * Run: npx tsx examples/emulator-fleet.ts
 *      (EMULATOR_SECONDS=N to run longer, EMULATOR_PAGES_TO_SCAN=N to scan faster or slower)
 */
import { Engine } from "../src/index.ts"

const PAGE = 4096
const GUESTS = 6
const RAM = 32 << 20
const IMAGE_PAGES = 4096 // 16 MiB: firmware, kernel text and data, initrd
const SECONDS = Number(process.env["EMULATOR_SECONDS"] ?? 5)
// Pages per batch, every 20 ms: ~20,000 pages/s, so a pass over the fleet takes a second or two.
const PAGES_TO_SCAN = Number(process.env["EMULATOR_PAGES_TO_SCAN"] ?? 400)

/** The boot image every guest loads: deterministic bytes, with some zero-filled stretches. */
function bootImage(): Uint8Array {
  const img = new Uint8Array(IMAGE_PAGES * PAGE)
  let x = 12345
  for (let p = 0; p < IMAGE_PAGES; p++) {
    if (p % 8 === 7) continue // BSS and padding: zero pages
    for (let i = 0; i < PAGE; i += 4) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0
      img[p * PAGE + i] = x >>> 24
    }
  }
  return img
}

const engine = new Engine({ pageSize: PAGE })
const image = bootImage()
const guests = Array.from({ length: GUESTS }, (_, i) => {
  const ram = engine.createSpace({ size: RAM, name: `guest-${i}` })
  ram.write(0, image) // "boot": load the image into guest RAM
  ram.advise(0, RAM, "mergeable") // what QEMU does to guest RAM (MADV_MERGEABLE)
  return ram
})

// Each guest writes its own pages as it runs: a heap that grows and a clock page.
const HEAP = IMAGE_PAGES * PAGE
let tick = 0
function runGuests(): void {
  tick++
  guests.forEach((ram, i) => {
    ram.writeU32(HEAP - PAGE, tick * 1000 + i) // the clock page: volatile, never merges
    const page = HEAP + ((tick * 7 + i) % 512) * PAGE
    ram.fill(page, PAGE, 0x90) // a private heap page: it carries the guest's id and the time
    ram.writeU32(page + 8, i)
    ram.writeU32(page + 12, tick)
  })
}

const ksmd = engine.scanner({ policy: "ksm", pagesToScan: PAGES_TO_SCAN, sleepMillis: 20 })
const populated = () => guests.reduce((a, g) => a + g.ksmStat().ksmRmapItems, 0)
console.log(`emulator-fleet: ${GUESTS} guests x ${RAM >> 20} MiB RAM booted from one ${(IMAGE_PAGES * PAGE) >> 20} MiB image; ksmd: pages_to_scan ${PAGES_TO_SCAN}, sleep 20 ms`)
console.log(" time   saved      pages_sharing  pages_shared  volatile  full_scans  saved/s")

ksmd.start()
const runner = setInterval(runGuests, 50)
let last = 0
for (let s = 1; s <= SECONDS; s++) {
  await new Promise((r) => setTimeout(r, 1000))
  const st = engine.stats()
  const saved = (st.pagesSharing + st.ksmZeroPages) * PAGE
  console.log(
    `${String(s).padStart(4)} s  ${(saved / 2 ** 20).toFixed(2).padStart(6)} MiB  ${String(st.pagesSharing).padStart(13)}  ${String(st.pagesShared).padStart(12)}  ${String(st.pagesVolatile).padStart(8)}  ${String(st.fullScans).padStart(10)}  ${((saved - last) / 2 ** 20).toFixed(2).padStart(6)} MiB/s`,
  )
  last = saved
}
clearInterval(runner)
await ksmd.stop()

const st = engine.stats()
const mem = engine.memory()
console.log(`\nsaved: ${(((st.pagesSharing + st.ksmZeroPages) * PAGE) / 2 ** 20).toFixed(2)} MiB of guest RAM (pages_sharing ${st.pagesSharing}, ksm_zero_pages ${st.ksmZeroPages})`)
console.log(`${mem.framesInUse} frames hold ${GUESTS} guests' ${populated()} merge-tracked pages; ${st.cowFaults} copy-on-write faults from guests writing merged pages`)
console.log(`guest-0 ksm_stat: ${JSON.stringify(guests[0]!.ksmStat())}`)
for (const g of guests) g.dispose()
