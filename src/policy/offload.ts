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
 * The ring: a SharedArrayBuffer of ctl words (head, tail, stop, bell, ...) and 3 words per job (frame, gen,
 * version). `version` is the pool's sharedVersion when the job was queued: the store or the
 * digest arrays were replaced since, a hashing thread must fetch the new ones first.
 *
 * The doorbell costs the host a cross-thread wake (Atomics.notify: ~25 µs here, a sixth of a
 * 100-page batch at the kernel defaults), so the host rings only when it must. A thread about to
 * wait says so (SLEEP = 1, then looks at the ring once more: seq-cst, so either it sees the new
 * head or the host sees SLEEP and rings); the host rings a sleeping thread when a batch waits for
 * a digest (urgent), on stop and prefault requests, or always when POLL is 0; otherwise a
 * sleeping thread looks at the ring by itself every POLL ms (the scanner sets POLL to its
 * sleepMillis while its loop runs: the pages a batch needs were queued a batch or more earlier).
 */
import { Unsupported } from "../errors.ts"
import type { FramePool, StorePrefaulter } from "../memory/frames.ts"
import { fullChecksumKey, keyedFullChecksum, keyedSampledKey, sampledKeyParams } from "../core/checksum.ts"
import { compareBytes } from "../platform.ts"

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
/** ctl word: 1 while the thread waits for the bell or is about to (thread sets; the host clears it when it rings). */
const SLEEP = 6
/** ctl word: how long (ms) a sleeping thread waits before looking at the ring by itself; 0: until rung (host writes). */
const POLL = 7
const CTL_WORDS = 8
/** Bytes of a shrink's store the hashing thread fills (copies or touches) per job it takes, so hashing goes on meanwhile. */
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
  /** Equality certificates (FrameDigests.rep and repGen, Int32). */
  readonly rep: SharedArrayBuffer
  readonly repGen: SharedArrayBuffer
  /** The job ring: ctl words then jobs. */
  readonly ring: SharedArrayBuffer
  readonly ringJobs: number
  /** 128 bits of key material of the engine's two page hashes. */
  readonly material: Uint32Array
  /** A fresh store to fill (see StorePrefaulter), or null; `spareSeq` numbers the request. */
  readonly spare: SharedArrayBuffer | null
  readonly spareSeq: number
  /** Bytes of `store` to copy into `spare` (the rest of it is only touched). */
  readonly spareCopy: number
  /** Then frames of `store` to copy into `spare` elsewhere (Int32 pairs from, to: compaction's moves), or null. */
  readonly spareMoves: SharedArrayBuffer | null
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
  #spareCopy = 0
  #spareMoves: Int32Array | null = null

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

  prefault(store: SharedArrayBuffer, copyBytes: number, moves: Int32Array | null): void {
    this.#spare = store
    this.#spareCopy = copyBytes
    this.#spareMoves = moves
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
      rep: d.rep.buffer as SharedArrayBuffer,
      repGen: d.repGen.buffer as SharedArrayBuffer,
      ring: this.#ring,
      ringJobs: this.#cap,
      material: this.#material.slice(),
      spare: this.#spare,
      spareSeq: this.#spareSeq,
      spareCopy: this.#spareCopy,
      spareMoves: this.#spareMoves === null ? null : (this.#spareMoves.buffer as SharedArrayBuffer),
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

  // The thread's pace: jobs per ms while it had work the whole time (a moving average), and the last note.
  #rate = 0
  #lastAt = -1
  #lastDone = 0
  #lastBacklog = 0

  /** Note the thread's progress at `now` (ms; the scanner notes after each batch). */
  noteProgress(now: number): void {
    const done = this.done
    const backlog = this.#head - done
    // Only intervals the thread was busy throughout say how fast it goes.
    if (this.#lastAt >= 0 && this.#lastBacklog > 0 && backlog > 0 && now > this.#lastAt) {
      const r = (done - this.#lastDone) / (now - this.#lastAt)
      this.#rate = this.#rate === 0 ? r : 0.75 * this.#rate + 0.25 * r
    }
    this.#lastAt = now
    this.#lastDone = done
    this.#lastBacklog = backlog
  }

  /** About how long (ms) the thread takes to do `jobs` more of what is queued, at its noted pace; 0 before it was measured. */
  millisFor(jobs: number): number {
    return this.#rate > 0 ? Math.min(jobs, this.backlog) / this.#rate : 0
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

  /**
   * Publish the jobs queued since the last call. A sleeping thread is woken if `urgent` (a batch
   * waits for one of them) or if it does not look by itself ({@link pollMillis} 0); otherwise it
   * finds them within pollMillis.
   */
  flush(urgent: boolean): void {
    if (this.#head === this.#published) return
    this.#published = this.#head
    const ctl = this.#ctl
    Atomics.store(ctl, HEAD, this.#head)
    // After the store (seq-cst): a thread that set SLEEP before it is rung here; one that sets it later sees the head.
    if ((urgent || Atomics.load(ctl, POLL) === 0) && Atomics.compareExchange(ctl, SLEEP, 1, 0) === 1) this.#ringBell()
  }

  /**
   * How long a sleeping hashing thread waits before looking at the ring by itself (ms; 0: only
   * when rung). The scanner keeps it at its sleepMillis while its loop runs, 0 otherwise.
   */
  set pollMillis(ms: number) {
    Atomics.store(this.#ctl, POLL, Math.min(Math.max(0, Math.floor(ms)), 0x7fffffff))
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
    this.#spareMoves = null
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
  #rep: Int32Array = new Int32Array(0)
  #repGen: Int32Array = new Int32Array(0)
  #version = -1
  // The thread's own index by full checksum (direct-mapped, lossy): per slot the first frame
  // hashed with that sum and the second found equal to it (the one ksm keeps when they pair, so
  // it stays while the content is merged), each with the generation of its job. A frame hashed
  // later with that sum is compared with the second (else the first) and gets a certificate.
  #idxSum: Uint32Array = new Uint32Array(0)
  #idxFirst: Int32Array = new Int32Array(0)
  #idxFirstGen: Int32Array = new Int32Array(0)
  #idxRep: Int32Array = new Int32Array(0)
  #idxRepGen: Int32Array = new Int32Array(0)
  #idxMask = 0
  /** Bytes of the store, to compare frames with (one view, no allocation per compare). */
  #bytes: Uint8Array = new Uint8Array(0)
  /** Frames compared for a certificate, and certificates made, all time. */
  compared = 0
  certified = 0
  #wpp: number
  /** The full checksum of an all-zero page: only a page with this sum can be all zeros. */
  readonly #zeroSum: number
  /** The store to fill (from the channel), what to copy into it, its request number, and how far the filling got. */
  #spare: Uint8Array | null = null
  #spareSrc: Uint8Array = new Uint8Array(0)
  #spareCopy = 0
  /** The request's moves (pairs from, to) and how many are done. */
  #spareMoves: Int32Array = new Int32Array(0)
  #moved = 0
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

  /** Bytes filled per job taken (see {@link PREFAULT_CHUNK}). */
  readonly #chunk: number

  /** `chunkBytes`: how much of a shrink's store to fill per job taken (tests use less). @default 1 MiB */
  constructor(ch: OffloadChannel, chunkBytes = PREFAULT_CHUNK) {
    this.#chunk = Math.max(OS_PAGE, chunkBytes)
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
    // The store the request was made over (the channel came after it): a store replaced since voids the copy on the host's side.
    this.#spareSrc = new Uint8Array(ch.store)
    this.#spareCopy = Math.min(ch.spareCopy, ch.store.byteLength, ch.spare.byteLength)
    this.#spareMoves = ch.spareMoves === null ? new Int32Array(0) : new Int32Array(ch.spareMoves)
    this.#moved = 0
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
    this.#rep = new Int32Array(ch.rep)
    this.#repGen = new Int32Array(ch.repGen)
    this.#bytes = new Uint8Array(ch.store)
    this.#version = ch.version
    // The index: about two slots per frame of the store (the first time, or when it grew), at most 2^21.
    const want = Math.min(1 << 21, 1 << Math.ceil(Math.log2(Math.max(1024, 2 * (this.#words.length / this.#wpp)))))
    if (want > this.#idxSum.length) {
      this.#idxSum = new Uint32Array(want)
      this.#idxFirst = new Int32Array(want).fill(-1)
      this.#idxFirstGen = new Int32Array(want)
      this.#idxRep = new Int32Array(want).fill(-1)
      this.#idxRepGen = new Int32Array(want)
      this.#idxMask = want - 1
    }
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

  /**
   * Call when {@link run} returned Idle, just before waiting on the bell: marks the thread
   * asleep, then looks at the ring once more. False (and not asleep) if work or a stop arrived
   * meanwhile: run again instead of waiting. Call {@link woke} after the wait.
   */
  sleep(): boolean {
    const ctl = this.#ctl
    Atomics.store(ctl, SLEEP, 1)
    if (Atomics.load(ctl, HEAD) === this.#tail && Atomics.load(ctl, STOP) === 0 && Atomics.load(ctl, PF_REQ) === this.#pfDone) return true
    Atomics.store(ctl, SLEEP, 0)
    return false
  }

  /** The wait after {@link sleep} ended (rung or timed out). */
  woke(): void {
    Atomics.store(this.#ctl, SLEEP, 0)
  }

  /** How long to wait on the bell before looking at the ring unasked (ms), or 0: until rung. */
  get pollMillis(): number {
    return Atomics.load(this.#ctl, POLL)
  }

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
  #jobRep = 0
  #jobRepGen = 0

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
    this.#certify(f, sum, start)
    return 1
  }

  /**
   * The kernel's compare, done here: look up frame `f`'s sum in the index, compare `f` with the
   * frame found, and on equal bytes give the job a certificate (FrameDigests.rep). The host checks
   * both frames' generations before it trusts it, so a frame written meanwhile only costs a miss.
   */
  #certify(f: number, sum: number, start: number): void {
    const slot = sum & this.#idxMask
    const gen = this.#jobGen
    let rep = 0
    let repGen = 0
    const first = this.#idxFirst[slot]!
    if (this.#idxSum[slot] !== sum || first < 0) this.#idxStart(slot, sum, f, gen)
    else if (first === f) this.#idxFirstGen[slot] = gen
    else if (this.#idxRep[slot] === f) this.#idxRepGen[slot] = gen
    else {
      const second = this.#idxRep[slot]!
      const r = second >= 0 ? second : first
      const rGen = second >= 0 ? this.#idxRepGen[slot]! : this.#idxFirstGen[slot]!
      const ps = this.#wpp << 2
      this.compared++
      if ((r + 1) * ps <= this.#bytes.length && compareBytes(this.#bytes, start << 2, this.#bytes, r * ps, ps) === 0) {
        rep = r + 1
        repGen = rGen
        this.certified++
        if (second < 0) {
          this.#idxRep[slot] = f
          this.#idxRepGen[slot] = gen
        }
      } else this.#idxStart(slot, sum, f, gen)
    }
    this.#jobRep = rep
    this.#jobRepGen = repGen
  }

  /** Slot `slot` starts over with `f` (a new sum, or bytes that differ from what it held). */
  #idxStart(slot: number, sum: number, f: number, gen: number): void {
    this.#idxSum[slot] = sum
    this.#idxFirst[slot] = f
    this.#idxFirstGen[slot] = gen
    this.#idxRep[slot] = -1
  }

  /**
   * Fill the next chunk of the store of request `req`: copy it from the current store below the
   * request's copy limit, touch it (one write per OS page) above, so the first-touch faults and
   * the copy happen here, not on the host. True while some is left; false once done (published).
   */
  #prefaultChunk(req: number): boolean {
    const u8 = this.#spare
    if (u8 !== null && this.#spareSeq === req) {
      const pos = this.#pfPos
      if (pos < u8.length) {
        const end = Math.min(u8.length, pos + this.#chunk)
        const src = this.#spareSrc
        const copyEnd = Math.min(end, this.#spareCopy)
        if (pos < copyEnd) u8.set(src.subarray(pos, copyEnd), pos)
        for (let i = Math.max(pos, copyEnd); i < end; i += OS_PAGE) u8[i] = 0
        this.#pfPos = end
        return true
      }
      // Then the moves, after the prefix (which holds stale bytes at their destinations).
      const moves = this.#spareMoves
      if (this.#moved < moves.length) {
        const ps = this.#wpp << 2
        const from = this.#spareSrc
        const stop = Math.min(moves.length, this.#moved + 2 * Math.max(1, Math.floor(this.#chunk / ps)))
        for (let i = this.#moved; i < stop; i += 2) {
          const f = moves[i]! * ps
          const t = moves[i + 1]! * ps
          if (f + ps <= from.length && t + ps <= u8.length) u8.set(from.subarray(f, f + ps), t)
        }
        this.#moved = stop
        return true
      }
    }
    // Done (or superseded by a newer request whose store has not come yet: the next take asks).
    this.#spare = null
    this.#spareSrc = new Uint8Array(0)
    this.#spareMoves = new Int32Array(0)
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
    this.#rep[f] = this.#jobRep
    this.#repGen[f] = this.#jobRepGen
    Atomics.store(this.#gen, f, this.#jobGen)
    this.hashed++
  }
}
