/**
 * The hashing thread's entry point (a Node worker_threads Worker or a browser module Worker):
 * waits for the scanner's channel, then hashes queued frames until told to stop. Started by
 * spawn.ts; never imported by the host's code.
 *
 * Messages in: { type: "channel", channel } (the first starts the loop; later ones bring newer
 * buffers). Out: { type: "ready" } (the loop runs), { type: "need", version } (a job needs newer buffers), { type: "stopped",
 * hashed } (the ring's stop flag was set; the thread then closes itself).
 */
import { HasherState, type OffloadChannel, OffloadHasher } from "../index.ts"

/** What the loop needs of its thread, Node or browser. */
interface ThreadPort {
  post(message: unknown): void
  onMessage(cb: (message: unknown) => void): void
  close(): void
}

async function threadPort(): Promise<ThreadPort> {
  const g = globalThis as unknown as { WorkerGlobalScope?: unknown; postMessage(m: unknown): void; addEventListener(t: string, cb: (e: { data: unknown }) => void): void; close(): void }
  if (typeof g.WorkerGlobalScope === "function") {
    return {
      post: (m) => g.postMessage(m),
      onMessage: (cb) => g.addEventListener("message", (e) => cb(e.data)),
      close: () => g.close(),
    }
  }
  // A specifier in a variable: the library builds without Node's types, and browsers never get here.
  const nodeWorkers = "node:worker_threads"
  const { parentPort } = (await import(nodeWorkers)) as { parentPort: { postMessage(m: unknown): void; on(t: string, cb: (m: unknown) => void): void; close(): void } | null }
  if (parentPort === null) throw new Error("sksm/worker thread.ts must run as a worker")
  return {
    post: (m) => parentPort.postMessage(m),
    onMessage: (cb) => parentPort.on("message", cb),
    close: () => parentPort.close(),
  }
}

const waitAsync = (Atomics as unknown as { waitAsync?: (a: Int32Array, i: number, v: number, timeout: number) => { async: boolean; value: unknown } }).waitAsync
const port = await threadPort()
let hasher: OffloadHasher | null = null
let channelArrived: (() => void) | null = null

port.onMessage((m) => {
  const msg = m as { type?: unknown; channel?: OffloadChannel }
  if (msg.type !== "channel" || msg.channel === undefined) return
  if (hasher === null) {
    hasher = new OffloadHasher(msg.channel)
    port.post({ type: "ready" })
    void loop(hasher)
  } else hasher.update(msg.channel)
  channelArrived?.()
})

async function loop(h: OffloadHasher): Promise<void> {
  for (;;) {
    const bell = h.bell
    const state = h.run()
    if (state === HasherState.Stopped) {
      port.post({ type: "stopped", hashed: h.hashed })
      port.close()
      return
    }
    if (state === HasherState.NeedChannel) {
      const arrived = new Promise<void>((resolve) => (channelArrived = resolve))
      port.post({ type: "need", version: h.wantVersion })
      await arrived
      channelArrived = null
      continue
    }
    // Idle: sleep until the host rings (urgent jobs, stop) or the poll period ends (routine jobs
    // are published without a ring: offload.ts).
    if (!h.sleep()) continue
    const poll = h.pollMillis
    if (waitAsync !== undefined) {
      const w = waitAsync(h.ctl, h.bellIndex, bell, poll > 0 ? poll : Number.POSITIVE_INFINITY)
      if (w.async) await w.value
    } else {
      // No waitAsync (older browsers): a bounded blocking wait, then a turn for messages.
      Atomics.wait(h.ctl, h.bellIndex, bell, poll > 0 ? Math.min(poll, 50) : 50)
      await new Promise((resolve) => setTimeout(resolve, 0))
    }
    h.woke()
  }
}
