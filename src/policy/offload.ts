/**
 * Hashing off the host's thread: both ends of the job ring between a scanner (host side,
 * {@link HashOffload}) and a hashing thread ({@link OffloadHasher}). One file owns the protocol.
 *
 * The protocol is the kernel's write-protect, compare, remap, split across two threads:
 * 1. host: before handing page `pi` (frame `f`) out, write-protect it (revokeWrite), so any later write
 *    faults, and every fault that makes a mapping of `f` writable bumps `writeGen[f]` (so does
 *    freeing `f`); the job carries `writeGen[f]` as it is now;
 * 2. worker: hash frame `f` in the shared store, publish `sum[f]`, `key[f]`, `zero[f]`, then
 *    `Atomics.store(gen, f, jobGen)` (the release that makes the sums visible);
 * 3. host, later: a digest is used only while `Atomics.load(gen, f) === writeGen[f]`: no write
 *    could have reached `f` since the host protected it, so the bytes hashed are the bytes there.
 * Merges still compare bytes on the host at the moment they remap (MergeCore), so nothing
 * different is ever merged whatever a digest says; the protocol makes digests exact, so the
 * scanner takes the decisions the in-thread scanner takes.
 *
 * The ring: a SharedArrayBuffer of ctl words (head, tail, stop, bell) and 3 words per job (frame, gen,
 * version). `version` is the pool's sharedVersion when the job was queued: the store or the
 * digest arrays were replaced since, a hashing thread must fetch the new ones first.
 */
import { Unsupported } from "../errors.ts"
import type { FramePool, StorePrefaulter } from "../memory/frames.ts"
import { fullChecksumKey, keyedFullChecksum, keyedSampledKey, sampledKeyParams } from "../core/checksum.ts"

/** ctl word: jobs queued so far (host writes). */
const HEAD = 0
/** ctl word: jobs done so far (hashing thread writes). */
const TAIL = 1
/** ctl word: the thread should stop (host writes 1). */
const STOP = 2
/** ctl word: rung (incremented, then notified) after every publish and on stop: a thread waits on it. */
const BELL = 3
/** ctl word: the last store-prefault request (host writes its sequence number; the store comes with the channel). */
const PF_REQ = 4
/** ctl word: the last store-prefault request done (hashing thread writes). */
const PF_DONE = 5
const CTL_WORDS = 6
/** Bytes the hashing thread prefaults per job it takes, so hashing goes on meanwhile. */
const PREFAULT_CHUNK = 1 << 20
/** The OS page size the prefault touches (one write per page). */
const OS_PAGE = 4096
/** Words per job: frame, gen, version. */
const JOB = 3

/**
 * What a hashing thread needs, as plain transferable data (every buffer is a
 * SharedArrayBuffer; nothing is copied when it is posted to a worker). `material` is the
 * engine's secret hash key: keep it inside the process.
 */
export interface OffloadChannel {
  /** The pool's sharedVersion these buffers belong to. */
  readonly version: number
  readonly pageSize: number
  /** The frame store. */
  readonly store: SharedArrayBuffer
  /** Digest arrays (FrameDigests): gen (Int32), sum and key (Uint32), one slot per frame. */
  readonly gen: SharedArrayBuffer
  readonly sum: SharedArrayBuffer
  readonly key: SharedArrayBuffer
  /** Digest array `zero` (Uint8): 1 when the frame held only zero bytes. */
  readonly zero: SharedArrayBuffer
  /** The job ring: ctl words then jobs. */
  readonly ring: SharedArrayBuffer
  readonly ringJobs: number
  /** 128 bits of key material of the engine's two page hashes. */
  readonly material: Uint32Array
  /** A fresh store to prefault (see StorePrefaulter), or null; `spareSeq` numbers the request. */
  readonly spare: SharedArrayBuffer | null
  readonly spareSeq: number
}

/** Default ring size in jobs (12 bytes each). */
export const OFFLOAD_RING_JOBS = 1 << 15

/**
 * Host side: queues frames for hashing and tells which digests are on their way; also the pool's
 * {@link StorePrefaulter} (the hashing thread touches a shrink's new store between jobs).
 */
export class HashOffload implements StorePrefaulter {
  readonly #pool: FramePool
  readonly #material: Uint32Array
  readonly #ctl: Int32Array
  readonly #jobs: Int32Array
  readonly #cap: number
  readonly #ring: SharedArrayBuffer
  #head = 0
  #published = 0
  /** Per frame: the writeGen a job was queued with (host only; grows with the pool). */
  #queued: Int32Array = new Int32Array(0)
  #version = -1
  /** Jobs queued, all time. */
  queued = 0
  #spare: SharedArrayBuffer | null = null
  #spareSeq = 0

  constructor(pool: FramePool, material: Uint32Array | null, ringJobs = OFFLOAD_RING_JOBS) {
    if (material === null) throw new Unsupported("offload: an engine with an injected checksum cannot hash on another thread (a function cannot be shared)")
    pool.enableDigests()
    this.#pool = pool
    this.#material = material
    this.#cap = ringJobs
    this.#ring = new SharedArrayBuffer((CTL_WORDS + ringJobs * JOB) * 4)
    this.#ctl = new Int32Array(this.#ring, 0, CTL_WORDS)
    this.#jobs = new Int32Array(this.#ring, CTL_WORDS * 4)
    pool.prefaulter = this
  }

  prefault(store: SharedArrayBuffer): void {
    this.#spare = store
    this.#spareSeq++
    Atomics.store(this.#ctl, PF_REQ, this.#spareSeq)
    this.#ringBell()
  }

  prefaulted(store: SharedArrayBuffer): boolean {
    return store === this.#spare && Atomics.load(this.#ctl, PF_DONE) === this.#spareSeq
  }

  /** The buffers a hashing thread works on now (call again when its version is older than a job's). */
  channel(): OffloadChannel {
    const pool = this.#pool
    const d = pool.digests
    if (d === null) throw new Unsupported("offload: digests were disabled (the scanner was detached)")
    return {
      version: pool.sharedVersion,
      pageSize: pool.pageSize,
      store: pool.bytes.buffer as SharedArrayBuffer,
      gen: d.gen.buffer as SharedArrayBuffer,
      sum: d.sum.buffer as SharedArrayBuffer,
      key: d.key.buffer as SharedArrayBuffer,
      zero: d.zero.buffer as SharedArrayBuffer,
      ring: this.#ring,
      ringJobs: this.#cap,
      material: this.#material.slice(),
      spare: this.#spare,
      spareSeq: this.#spareSeq,
    }
  }

  /** Jobs that can be queued now. */
  room(): number {
    return this.#cap - (this.#head - Atomics.load(this.#ctl, TAIL))
  }

  /** Jobs done, all time (the ring's tail): progress of the hashing thread. */
  get done(): number {
    return Atomics.load(this.#ctl, TAIL)
  }

  /** Jobs queued and not yet done. */
  get backlog(): number {
    return this.#head - Atomics.load(this.#ctl, TAIL)
  }

  /** Whether frame `f` was queued at its current writeGen (its digest is done or on its way). */
  queuedNow(f: number): boolean {
    this.#sync()
    return f < this.#queued.length && this.#queued[f] === this.#pool.writeGen![f]
  }

  /**
   * Queue frame `f` for hashing. The caller made sure no page maps it writable (step 1 of the
   * protocol) and that {@link room} is positive.
   */
  push(f: number): void {
    this.#sync()
    const gen = this.#pool.writeGen![f]!
    if (f >= this.#queued.length) {
      const q = new Int32Array(Math.max(f + 1, this.#pool.capacity))
      q.set(this.#queued)
      this.#queued = q
    }
    this.#queued[f] = gen
    const j = (this.#head % this.#cap) * JOB
    this.#jobs[j] = f
    this.#jobs[j + 1] = gen
    this.#jobs[j + 2] = this.#version
    this.#head++
    this.queued++
  }

  /** Publish the jobs queued since the last call and wake the hashing thread. */
  flush(): void {
    if (this.#head === this.#published) return
    this.#published = this.#head
    Atomics.store(this.#ctl, HEAD, this.#head)
    this.#ringBell()
  }

  #ringBell(): void {
    Atomics.add(this.#ctl, BELL, 1)
    Atomics.notify(this.#ctl, BELL)
  }

  /** Tell the hashing thread to stop (it returns from its loop). */
  stop(): void {
    Atomics.store(this.#ctl, STOP, 1)
    this.#ringBell()
    if (this.#pool.prefaulter === this) {
      this.#pool.prefaulter = null
      this.#pool.dropSpare()
    }
    this.#spare = null
  }

  /** The store or digest arrays were replaced: digests start over, so queued marks do too. */
  #sync(): void {
    const v = this.#pool.sharedVersion
    if (v === this.#version) return
    this.#version = v
    this.#queued.fill(0)
  }
}

/** Why {@link OffloadHasher.run} returned. */
export const HasherState = {
  /** No job left: wait for the ring's head to move. */
  Idle: 0,
  /** A job needs newer buffers: fetch a channel of at least `wantVersion` first. */
  NeedChannel: 1,
  /** The host asked the thread to stop. */
  Stopped: 2,
} as const

/**
 * The hashing thread's side: computes exactly the engine's checksum and table key of each
 * queued frame, in place in the shared store, and publishes them. `sksm/worker` runs one in a
 * worker thread; use it directly only to host the hashing in a thread of your own. Not thread
 * safe: one hasher per ring.
 */
export class OffloadHasher {
  // The channel's buffers (#takeBuffers); empty until the constructor takes the first channel's.
  #words: Uint32Array = new Uint32Array(0)
  #gen: Int32Array = new Int32Array(0)
  #sum: Uint32Array = new Uint32Array(0)
  #key: Uint32Array = new Uint32Array(0)
  #zero: Uint8Array = new Uint8Array(0)
  #version = -1
  #wpp: number
  /** The full checksum of an all-zero page: only a page with this sum can be all zeros. */
  readonly #zeroSum: number
  /** The store to prefault (from the channel), its request number, and how far the touching got. */
  #spare: Uint8Array | null = null
  #spareSeq = 0
  #pfPos = 0
  /** The last prefault request finished. */
  #pfDone = 0
  readonly #ctl: Int32Array
  readonly #jobs: Int32Array
  readonly #cap: number
  /** The engine's two hashes' key words (the same functions as the engine's, so the same digests). */
  readonly #fullKey: Int32Array
  readonly #sampleKey: Int32Array
  #tail: number
  /** The version a job asked for (after NeedChannel). */
  wantVersion = -1
  /** Frames hashed, all time. */
  hashed = 0

  constructor(ch: OffloadChannel) {
    this.#ctl = new Int32Array(ch.ring, 0, CTL_WORDS)
    this.#jobs = new Int32Array(ch.ring, CTL_WORDS * 4)
    this.#cap = ch.ringJobs
    this.#wpp = ch.pageSize >>> 2
    this.#fullKey = fullChecksumKey(ch.material)
    this.#sampleKey = sampledKeyParams(this.#wpp, ch.material)
    this.#zeroSum = keyedFullChecksum(this.#fullKey, new Uint32Array(this.#wpp), 0, this.#wpp)
    this.#tail = Atomics.load(this.#ctl, TAIL)
    this.#pfDone = Atomics.load(this.#ctl, PF_DONE)
    this.update(ch)
  }

  #takeSpare(ch: OffloadChannel): void {
    if (ch.spare === null || ch.spareSeq <= this.#spareSeq) return
    this.#spare = new Uint8Array(ch.spare)
    this.#spareSeq = ch.spareSeq
    this.#pfPos = 0
  }

  /** Take the buffers of a newer channel (same ring). */
  update(ch: OffloadChannel): void {
    this.#takeSpare(ch)
    if (ch.version < this.#version) return
    this.#takeBuffers(ch)
  }

  #takeBuffers(ch: OffloadChannel): void {
    this.#words = new Uint32Array(ch.store)
    this.#gen = new Int32Array(ch.gen)
    this.#sum = new Uint32Array(ch.sum)
    this.#key = new Uint32Array(ch.key)
    this.#zero = new Uint8Array(ch.zero)
    this.#version = ch.version
  }

  /**
   * The doorbell: read it before {@link run}; when run() returns Idle, wait until ctl[bellIndex]
   * is no longer that value (`Atomics.wait` / `Atomics.waitAsync`). Any publish or stop after
   * the read changes it, so no wake-up is lost.
   */
  get bell(): number {
    return Atomics.load(this.#ctl, BELL)
  }

  /** Index of the doorbell word in {@link ctl}. */
  readonly bellIndex = BELL

  /** The ring's ctl words (see {@link bell}). */
  get ctl(): Int32Array {
    return this.#ctl
  }

  /** Hash queued jobs, at most `limit`; returns a {@link HasherState}. */
  run(limit = Number.POSITIVE_INFINITY): number {
    let done = 0
    for (;;) {
      const r = this.take()
      if (r < 0) return -r - 1
      if (r > 0) this.publish()
      // Publish progress now and then, so the host sees room in the ring.
      if ((++done & 255) === 0) Atomics.store(this.#ctl, TAIL, this.#tail)
      if (done >= limit) {
        Atomics.store(this.#ctl, TAIL, this.#tail)
        return HasherState.Idle
      }
    }
  }

  // The two halves of one job, apart so a test can run host operations between them (the
  // thread reads a frame, the host writes it, the thread publishes what it read).
  #f = -1
  #jobGen = 0
  #jobSum = 0
  #jobKey = 0
  #jobZero = 0

  /**
   * Take the next job and hash its frame (nothing published yet). Returns 1 when a digest is
   * ready to {@link publish}, 0 when the job was dropped (queued against replaced buffers), or
   * `-(state + 1)` for a {@link HasherState} (Idle, NeedChannel, Stopped). For tests of the
   * protocol; {@link run} is the loop.
   */
  take(): number {
    const ctl = this.#ctl
    if (Atomics.load(ctl, STOP) !== 0) {
      Atomics.store(ctl, TAIL, this.#tail)
      return -HasherState.Stopped - 1
    }
    // A store to prefault: a chunk per job, so hashing goes on; the store comes with the channel.
    const pfReq = Atomics.load(ctl, PF_REQ)
    if (pfReq !== this.#pfDone) {
      if (this.#spareSeq < pfReq) {
        Atomics.store(ctl, TAIL, this.#tail)
        this.wantVersion = this.#version
        return -HasherState.NeedChannel - 1
      }
      if (this.#prefaultChunk(pfReq) && this.#tail === Atomics.load(ctl, HEAD)) return 0
    }
    if (this.#tail === Atomics.load(ctl, HEAD)) {
      Atomics.store(ctl, TAIL, this.#tail)
      return -HasherState.Idle - 1
    }
    const j = (this.#tail % this.#cap) * JOB
    const jobs = this.#jobs
    const f = jobs[j]!
    const version = jobs[j + 2]!
    if (version > this.#version) {
      Atomics.store(ctl, TAIL, this.#tail)
      this.wantVersion = version
      return -HasherState.NeedChannel - 1
    }
    this.#tail++
    const wpp = this.#wpp
    // Older jobs were queued against replaced buffers: their digests would land where nobody reads.
    if (version !== this.#version || (f + 1) * wpp > this.#words.length || f >= this.#gen.length) return 0
    this.#f = f
    this.#jobGen = jobs[j + 1]!
    const words = this.#words
    const start = f * wpp
    const sum = keyedFullChecksum(this.#fullKey, words, start, wpp)
    this.#jobSum = sum
    this.#jobKey = keyedSampledKey(this.#sampleKey, words, start)
    // Exact, not hashed: only a page with the zero page's sum is read again (from cache, just hashed).
    let zero = 0
    if (sum === this.#zeroSum) {
      let i = start
      const end = start + wpp
      while (i < end && words[i] === 0) i++
      zero = i === end ? 1 : 0
    }
    this.#jobZero = zero
    return 1
  }

  /**
   * Touch the next chunk of the store of request `req` (one write per OS page: the first-touch
   * fault happens here, not on the host). True while some is left; false once done (published).
   */
  #prefaultChunk(req: number): boolean {
    const u8 = this.#spare
    if (u8 !== null && this.#spareSeq === req) {
      const end = Math.min(u8.length, this.#pfPos + PREFAULT_CHUNK)
      for (let i = this.#pfPos; i < end; i += OS_PAGE) u8[i] = 0
      this.#pfPos = end
      if (end < u8.length) return true
    }
    // Done (or superseded by a newer request whose store has not come yet: the next take asks).
    this.#spare = null
    this.#pfDone = req
    Atomics.store(this.#ctl, PF_DONE, req)
    return false
  }

  /** Publish the digest {@link take} computed: sums and zero flag first, then the gen (the release). */
  publish(): void {
    const f = this.#f
    if (f < 0) return
    this.#f = -1
    this.#sum[f] = this.#jobSum
    this.#key[f] = this.#jobKey
    this.#zero[f] = this.#jobZero
    Atomics.store(this.#gen, f, this.#jobGen)
    this.hashed++
  }
}
