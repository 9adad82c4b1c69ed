/**
 * One "host" of bench/snapshot-fleet.ts: a child process that loads the fleet's images into its
 * own engine and, on the parent's word (IPC), opens a store (Redis or pack files), saves the
 * fleet, restores it, and answers with its own timings. Two of these run at once.
 */
import { readFileSync } from "node:fs"
import { type AddressSpace, Engine } from "../src/index.ts"
import { RedisBackend, SnapshotStore } from "../src/snapshot/index.ts"

export type HostCommand =
  | { readonly op: "open"; readonly redisPort?: number; readonly namespace?: string; readonly packDir?: string }
  | { readonly op: "save"; readonly name: string }
  | { readonly op: "restore"; readonly name: string }
  | { readonly op: "close" }
  | { readonly op: "exit" }

export interface HostReply {
  readonly ok: boolean
  readonly seconds?: number
  readonly newPages?: number
  readonly exact?: boolean
  readonly error?: string
}

const files = process.argv.slice(2)
const images = files.map((f) => new Uint8Array(readFileSync(f)))
const engine = new Engine()
const spaces: AddressSpace[] = images.map((img, i) => {
  const s = engine.createSpace({ size: img.byteLength, name: `img-${i}` })
  s.write(0, img)
  return s
})
let store: SnapshotStore | null = null

async function handle(c: HostCommand): Promise<HostReply> {
  if (c.op === "open") {
    // cacheBytes 0: every restored page comes from the servers, as on a host that did not save it.
    store = c.redisPort !== undefined ? await SnapshotStore.withBackend(await RedisBackend.open({ nodes: [{ host: "127.0.0.1", port: c.redisPort }], namespace: c.namespace ?? "sksm", cacheBytes: 0 })) : await SnapshotStore.open(c.packDir!)
    return { ok: true }
  }
  if (c.op === "close" || c.op === "exit") {
    await store?.close()
    store = null
    return { ok: true }
  }
  const t0 = performance.now()
  if (c.op === "save") {
    const r = await store!.save(spaces, { name: c.name })
    return { ok: true, seconds: (performance.now() - t0) / 1e3, newPages: r.newPages }
  }
  const back = await store!.restore(c.name, new Engine(), { merge: false })
  const seconds = (performance.now() - t0) / 1e3
  const exact = back.every((s, i) => Buffer.from(s.read(0, images[i]!.byteLength)).equals(Buffer.from(images[i]!)))
  for (const s of back) s.dispose()
  return { ok: true, seconds, exact }
}

process.on("message", (c: HostCommand) => {
  const reply = (r: HostReply) => process.send!(r, () => (c.op === "exit" ? process.disconnect() : undefined))
  handle(c).then(reply, (e: unknown) => reply({ ok: false, error: e instanceof Error ? e.message : String(e) }))
})
process.send!({ ok: true })
