/**
 * The fleets the snapshot-store benches run on: the demo's QuickJS interpreters (booted here),
 * the cached real-memory images of scripts/workloads.ts (v86 Linux guests, $SKSM_WORKLOADS_DIR or
 * .cache/workloads) when present, and a synthetic fleet with a known dedup pattern.
 */
import { boot, linearMemory, shutdown } from "../src/cli/fleet.ts"
import { cachedWorkloads, loadImages } from "../scripts/workloads/cache.ts"
import { PAGE } from "./lib.ts"
import { xorshift32 } from "./xorshift.ts"

export interface Fleet {
  readonly name: string
  readonly images: readonly Uint8Array[]
}

/** `n` of the demo's QuickJS interpreters, booted, their linear memories copied. */
export async function quickjsFleet(n: number): Promise<Fleet> {
  const images: Uint8Array[] = []
  for (let i = 0; i < n; i++) {
    const inst = await boot(i)
    images.push(linearMemory(inst).slice())
    shutdown(inst)
  }
  return { name: `${n} QuickJS interpreters (demo, ${(images[0]!.byteLength / 2 ** 20).toFixed(0)} MiB each)`, images }
}

/** The cached v86 guests (booted each on its own, else cloned from one state), or a line saying why not. */
export function v86Fleet(): Fleet | string {
  const cached = cachedWorkloads()
  const m = cached.find((w) => w.name === "v86-booted") ?? cached.find((w) => w.name === "v86-cloned")
  if (m === undefined) return "No cached v86 guest images (v86-booted / v86-cloned in $SKSM_WORKLOADS_DIR or .cache/workloads; `npx tsx scripts/workloads.ts --only v86` makes them): the v86 fleet is not measured."
  const images = loadImages(m)
  return { name: `${m.name}: ${images.length} v86 Linux guests x ${(images[0]!.byteLength / 2 ** 20).toFixed(0)} MiB`, images }
}

/**
 * `n` images of `mib` MiB, page by page: a quarter zero, half drawn from a pool of 2,048 shared
 * pages, a quarter unique; page contents are xorshift32 words (incompressible).
 */
export function syntheticFleet(n: number, mib: number): Fleet {
  const pages = (mib << 20) / PAGE
  const fill = (seed: number, out: Uint32Array) => {
    const next = xorshift32(seed)
    for (let i = 0; i < out.length; i++) out[i] = next()
  }
  const images = Array.from({ length: n }, (_, img) => {
    const words = new Uint32Array((mib << 20) >>> 2)
    const rnd = xorshift32(1000 + img)
    for (let p = 0; p < pages; p++) {
      const kind = p & 3
      if (kind === 0) continue
      const page = words.subarray((p * PAGE) >>> 2, ((p + 1) * PAGE) >>> 2)
      fill(kind === 3 ? 0x10000 + img * pages + p : 1 + (rnd() % 2048), page)
    }
    return new Uint8Array(words.buffer)
  })
  return { name: `synthetic: ${n} x ${mib} MiB (1/4 zero, 1/2 from 2,048 shared pages, 1/4 unique; random bytes)`, images }
}
