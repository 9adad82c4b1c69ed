/**
 * One emulated i386 Linux guest (the v86 npm package), run as its own Node process by
 * scripts/workloads/v86.ts so that several boot in parallel:
 *
 *   node v86-guest.mjs '<json job>'
 *
 * Job fields: v86Dir, bios, vgaBios, kernel, initrd, memMiB, imageOut, and either
 * `mode: "boot"` (boot from the kernel until the guest's /init prints SKSM-GUEST-UP; with
 * `stateOut`, then save the machine's state there) or `mode: "restore"` (load `stateIn`, run,
 * type `command` on the serial console and wait for its end marker). Then it lets the guest
 * idle `settleMs`, writes the guest's RAM (emulator.v86.cpu.mem8) to `imageOut` and prints
 * `DONE <json timings>` on stdout. Plain JavaScript: it runs without a TypeScript loader.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { pathToFileURL } from "node:url"

const job = JSON.parse(process.argv[2] ?? "{}")
const t0 = performance.now()
const secs = () => Number(((performance.now() - t0) / 1e3).toFixed(2))
const log = (line) => process.stderr.write(`[${job.label ?? "guest"} ${secs()} s] ${line}\n`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

const timer = setTimeout(() => {
  log(`timed out after ${job.timeoutMs} ms; console so far:\n${console_.slice(-2000)}`)
  process.exit(3)
}, job.timeoutMs ?? 300_000)

let console_ = ""
/** Resolve once the console output contains `marker` (after `from`). */
function waitFor(marker, from = 0) {
  return new Promise((resolve) => {
    const check = setInterval(() => {
      if (console_.indexOf(marker, from) >= 0) {
        clearInterval(check)
        resolve()
      }
    }, 50)
  })
}

const { V86 } = await import(pathToFileURL(join(job.v86Dir, "build", "libv86.mjs")).href)
const emulator = new V86({
  wasm_path: join(job.v86Dir, "build", "v86.wasm"),
  bios: { url: job.bios },
  vga_bios: { url: job.vgaBios },
  bzimage: { url: job.kernel },
  initrd: { url: job.initrd },
  cmdline: "console=ttyS0 tsc=reliable mitigations=off random.trust_cpu=on",
  memory_size: job.memMiB << 20,
  vga_memory_size: 2 << 20,
  disable_speaker: true,
  autostart: false,
})
emulator.add_listener("serial0-output-byte", (b) => {
  console_ += String.fromCharCode(b)
})
await new Promise((r) => emulator.add_listener("emulator-loaded", r))

const timings = {}
if (job.mode === "boot") {
  await emulator.run()
  await waitFor("SKSM-GUEST-UP")
  timings.bootSeconds = secs()
  log("guest is up")
  await sleep(job.settleMs ?? 2000)
  if (job.stateOut) {
    const s0 = performance.now()
    const state = await emulator.save_state()
    writeFileSync(job.stateOut, Buffer.from(state))
    timings.saveSeconds = Number(((performance.now() - s0) / 1e3).toFixed(2))
    log(`saved state (${(state.byteLength / 2 ** 20).toFixed(1)} MiB)`)
  }
} else {
  const r0 = performance.now()
  const buf = readFileSync(job.stateIn)
  await emulator.restore_state(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length))
  await emulator.run()
  timings.restoreSeconds = Number(((performance.now() - r0) / 1e3).toFixed(2))
  const from = console_.length
  emulator.serial0_send(`${job.command}; echo SKSM-CMD-DONE\n`)
  await waitFor("SKSM-CMD-DONE\r\n", from)
  log("command done")
  await sleep(job.settleMs ?? 2000)
}

await emulator.stop()
const mem = emulator.v86.cpu.mem8
const bytes = Buffer.from(mem.buffer, mem.byteOffset, mem.length)
if (bytes.length !== job.memMiB << 20) log(`warning: guest RAM is ${bytes.length} bytes, asked ${job.memMiB} MiB`)
writeFileSync(job.imageOut, bytes)
timings.totalSeconds = secs()
process.stdout.write(`DONE ${JSON.stringify(timings)}\n`)
clearTimeout(timer)
await emulator.destroy?.()
process.exit(0)
