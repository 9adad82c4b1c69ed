/**
 * The embedded backend of sksm/snapshot: pages in append-only pack files, an append-only index
 * of where each page is, manifests as files committed by rename. No server, no native module.
 *
 * Layout of a store directory:
 * - `HEADER`: the store's header (its hashing key), written once, mode 0600.
 * - `LOCK`: the writer's pid while a process has the store open.
 * - `packs/NNNNNNNN.pack`: records `magic u32 "SKPG" | length u32 | id 16 bytes | page bytes`, or
 *   with `compress: "deflate"`, `magic u32 "SKPZ" | length u32 | id 16 bytes | raw deflate of the page`
 *   (only when that is smaller than the page; readers take both, whatever the option).
 * - `index.log`: 32-byte entries `id 16 | pack u32 | offset u32 | length u32 | crc32 of the first 28`;
 *   `length` is the record's payload length in bits 0-26 and, for a deflated record, log2 of the
 *   page size in bits 27-31 (0 for a plain record, so indexes written before compression read as is).
 * - `snapshots/<name>.snap`: one manifest per snapshot (format in manifest.ts).
 *
 * Crash safety, by ordering: pack bytes are fsynced before the index entries that point at them,
 * and index entries before the manifest that needs them; a manifest is written to a temporary
 * file, fsynced, renamed over its name, and the directory fsynced. open() then recovers: the
 * index is cut at its first torn entry, every pack is cut to the end of its last indexed record
 * (a torn or unindexed tail), packs no entry points at are deleted, temporary files removed.
 * gc compacts by copying live records to new packs, committing a new index by rename, then
 * deleting the old packs; a crash at any step leaves either the old or the new index, and open()
 * removes the packs the surviving one does not use.
 */
import { closeSync, constants, openSync, readSync } from "node:fs"
import { type FileHandle, mkdir, open, readdir, readFile, rename, stat, truncate, unlink } from "node:fs/promises"
import { join } from "node:path"
import { crc32, deflateRawSync, inflateRawSync } from "node:zlib"
import { InvalidArgument, SksmError } from "../index.ts"
import { type BackendUsage, type ContentId, idFromBytes, idToBytes, type SnapshotBackend, type StoredPage } from "./backend.ts"
import { StoreIOError, StoreUnavailable } from "./errors.ts"

const RECORD_MAGIC = 0x47504b53 // "SKPG" little-endian
const RECORD_MAGIC_DEFLATE = 0x5a504b53 // "SKPZ" little-endian
const LENGTH_BITS = 27
const LENGTH_MASK = (1 << LENGTH_BITS) - 1
/** Bytes of a record header: magic, length, id. */
export const RECORD_HEADER_BYTES = 24
/** Bytes of one index entry. */
export const INDEX_ENTRY_BYTES = 32
const DEFAULT_PACK_BYTES = 256 * 1024 * 1024
const MAX_PACK_BYTES = 0xffffffff
/** Reads are coalesced up to this many bytes. */
const READ_CHUNK = 4 * 1024 * 1024
const PACK_NAME = /^(\d{8})\.pack$/

/** Options of {@link PackBackend.open}. */
export interface PackBackendOptions {
  /**
   * A pack file is closed for appends once it reaches this size (bytes); a new one starts.
   * Smaller packs make gc's compaction cheaper, larger ones mean fewer files. @default 256 MiB
   */
  readonly packBytes?: number
  /**
   * Compress each page record with raw deflate (node:zlib, level 1) when that makes it smaller.
   * Measured on interpreter heaps (bench/snapshot.ts): about 3x fewer bytes on disk, at the cost
   * of deflate's CPU on every new page. Stores written either way open either way.
   * @default "none"
   */
  readonly compress?: "none" | "deflate"
}

interface Location {
  readonly pack: number
  readonly offset: number
  /** Payload bytes of the record as stored. */
  readonly length: number
  /** Bytes of the page (= length for a plain record). */
  readonly raw: number
}

/** The index's length field of a location (see the layout above). */
function lengthField(loc: Location): number {
  return loc.raw === loc.length ? loc.length : ((Math.log2(loc.raw) << LENGTH_BITS) | loc.length) >>> 0
}

function locationOf(pack: number, offset: number, field: number): Location {
  const length = field & LENGTH_MASK
  const log = field >>> LENGTH_BITS
  return { pack, offset, length, raw: log === 0 ? length : 2 ** log }
}

/**
 * The page of the record of `id` at byte `at` of `buf` (read from its pack at `loc`), or undefined
 * when the record is short or its header does not match. A damaged deflate stream comes back as
 * its stored bytes: the store's check then names the page.
 */
function decodeRecord(buf: Uint8Array, bv: DataView, at: number, id: ContentId, loc: Location): Uint8Array | undefined {
  if (at + RECORD_HEADER_BYTES + loc.length > buf.length) return undefined
  const deflated = loc.raw !== loc.length
  if (bv.getUint32(at, true) !== (deflated ? RECORD_MAGIC_DEFLATE : RECORD_MAGIC) || bv.getUint32(at + 4, true) !== loc.length || idFromBytes(buf, at + 8) !== id) return undefined
  const payload = buf.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + loc.length)
  if (!deflated) return payload.slice()
  try {
    const page = inflateRawSync(payload, { maxOutputLength: loc.raw })
    return new Uint8Array(page.buffer, page.byteOffset, page.length)
  } catch {
    return payload.slice()
  }
}

/** Write the index entry of `id` at `loc` into `entries` at byte `e` (see the layout above). */
function writeEntry(entries: Uint8Array, ev: DataView, e: number, id: ContentId, loc: Location): void {
  idToBytes(id, entries, e)
  ev.setUint32(e + 16, loc.pack, true)
  ev.setUint32(e + 20, loc.offset, true)
  ev.setUint32(e + 24, lengthField(loc), true)
  ev.setUint32(e + 28, crc32(entries.subarray(e, e + 28)), true)
}

interface OpenPack {
  readonly no: number
  readonly fh: FileHandle
  size: number
}

const packFile = (no: number) => `${String(no).padStart(8, "0")}.pack`

/** Run one filesystem step; system errors become StoreIOError naming the step. */
async function io<T>(what: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step()
  } catch (cause) {
    if (cause instanceof SksmError) throw cause
    throw new StoreIOError(`${what}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
  }
}

const isMissing = (e: unknown) => typeof e === "object" && e !== null && (e as { code?: unknown }).code === "ENOENT"

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY)
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

async function writeAll(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, position + done)
    if (bytesWritten <= 0) throw new Error("write made no progress")
    done += bytesWritten
  }
}

async function readAt(fh: FileHandle, length: number, position: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length)
  let done = 0
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done)
    if (bytesRead === 0) return buf.subarray(0, done)
    done += bytesRead
  }
  return buf
}

/** Write a whole file durably under `name` in `dir`: temporary file, fsync, rename, directory fsync. */
async function commitFile(dir: string, name: string, bytes: Uint8Array, mode = 0o644): Promise<void> {
  const tmp = join(dir, `${name}.tmp`)
  const fh = await open(tmp, "w", mode)
  try {
    await writeAll(fh, bytes, 0)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(tmp, join(dir, name))
  await fsyncDir(dir)
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as { code?: unknown }).code === "EPERM"
  }
}

/**
 * Pack files with an index, in one directory: the embedded default of {@link SnapshotStore}.
 *
 * When to use: one host, one writer process per directory (a LOCK file holds the pid; a lock
 * left by a dead process is taken over). Gotchas: a store on a network filesystem without
 * working fsync and rename is not crash safe; the index lives in memory (about 100 bytes per
 * stored page).
 */
export class PackBackend implements SnapshotBackend {
  readonly dir: string
  readonly #packBytes: number
  readonly #compress: boolean
  readonly #index = new Map<ContentId, Location>()
  /** Size of each pack file as written (open() cuts it back to the last indexed record). */
  readonly #packs = new Map<number, number>()
  #indexFh: FileHandle | null = null
  #indexSize = 0
  #current: OpenPack | null = null
  /** The next append starts a new pack (after a failed append, and for compaction). */
  #freshPack = false
  #closed = false
  /** Pack number -> file descriptor of readPageSync (closed by gc's compaction and by close()). */
  readonly #syncFds = new Map<number, number>()
  /** What open() repaired, for tests and tools. */
  readonly recovered: { indexBytesCut: number; packBytesCut: number; packsRemoved: number; tempFilesRemoved: number } = { indexBytesCut: 0, packBytesCut: 0, packsRemoved: 0, tempFilesRemoved: 0 }

  private constructor(dir: string, packBytes: number, compress: boolean) {
    this.dir = dir
    this.#packBytes = packBytes
    this.#compress = compress
  }

  /** Open (creating if needed) the store directory `dir`, take its writer lock, and recover it. */
  static async open(dir: string, options: PackBackendOptions = {}): Promise<PackBackend> {
    const packBytes = options.packBytes ?? DEFAULT_PACK_BYTES
    if (typeof packBytes !== "number" || !Number.isSafeInteger(packBytes) || packBytes < 4096 || packBytes > MAX_PACK_BYTES) {
      throw new InvalidArgument(`packBytes must be an integer from 4096 to ${MAX_PACK_BYTES}, got ${String(packBytes)}`)
    }
    const compress = options.compress ?? "none"
    if (compress !== "none" && compress !== "deflate") throw new InvalidArgument(`compress must be "none" or "deflate", got ${typeof compress === "string" ? JSON.stringify(compress) : String(compress)}`)
    const b = new PackBackend(dir, packBytes, compress === "deflate")
    await io(`create ${dir}`, async () => {
      await mkdir(dir, { recursive: true, mode: 0o700 })
      await mkdir(join(dir, "packs"), { recursive: true })
      await mkdir(join(dir, "snapshots"), { recursive: true })
    })
    await b.#lock()
    try {
      await b.#recover()
    } catch (e) {
      await b.close()
      throw e
    }
    return b
  }

  async #lock(): Promise<void> {
    const path = join(this.dir, "LOCK")
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fh = await open(path, "wx")
        await fh.writeFile(String(process.pid))
        await fh.close()
        return
      } catch (e) {
        if ((e as { code?: unknown }).code !== "EEXIST") throw new StoreIOError(`lock ${path}: ${(e as Error).message}`, { cause: e })
      }
      const pid = Number(await readFile(path, "utf8").catch(() => "0"))
      if (Number.isSafeInteger(pid) && pid > 0 && isAlive(pid)) {
        throw new StoreUnavailable(`${this.dir} is open in process ${pid}${pid === process.pid ? " (this one: close the other SnapshotStore first)" : ""}`)
      }
      await unlink(path).catch(() => undefined) // stale: its process is gone
    }
    throw new StoreUnavailable(`${this.dir}: could not take the writer lock`)
  }

  async #recover(): Promise<void> {
    const dir = this.dir
    let dirty = false
    // The index: whole, checksummed entries up to the first torn one.
    const indexPath = join(dir, "index.log")
    const raw = await io("read index.log", () => readFile(indexPath).catch((e) => (isMissing(e) ? new Uint8Array(0) : Promise.reject(e))))
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength)
    let good = 0
    while (good + INDEX_ENTRY_BYTES <= raw.length) {
      if (crc32(raw.subarray(good, good + 28)) !== view.getUint32(good + 28, true)) break
      const id = idFromBytes(raw, good)
      this.#index.set(id, locationOf(view.getUint32(good + 16, true), view.getUint32(good + 20, true), view.getUint32(good + 24, true)))
      good += INDEX_ENTRY_BYTES
    }
    if (good < raw.length) {
      this.recovered.indexBytesCut = raw.length - good
      await io("cut the torn tail of index.log", () => truncate(indexPath, good))
      dirty = true
    }
    this.#indexSize = good
    // Packs: cut each to its last indexed record; remove those nothing points at.
    const ends = new Map<number, number>()
    for (const loc of this.#index.values()) ends.set(loc.pack, Math.max(ends.get(loc.pack) ?? 0, loc.offset + RECORD_HEADER_BYTES + loc.length))
    const packsDir = join(dir, "packs")
    for (const name of await io("list packs", () => readdir(packsDir))) {
      const m = PACK_NAME.exec(name)
      const path = join(packsDir, name)
      if (m === null) {
        if (name.endsWith(".tmp")) await io(`remove ${name}`, () => unlink(path)), this.recovered.tempFilesRemoved++, (dirty = true)
        continue
      }
      const no = Number(m[1])
      const end = ends.get(no)
      if (end === undefined) {
        await io(`remove unused pack ${name}`, () => unlink(path))
        this.recovered.packsRemoved++
        dirty = true
        continue
      }
      const size = (await io(`stat ${name}`, () => stat(path))).size
      if (size > end) {
        await io(`cut the tail of ${name}`, () => truncate(path, end))
        this.recovered.packBytesCut += size - end
        dirty = true
      }
      this.#packs.set(no, Math.min(size, end))
    }
    // Entries whose pack or bytes are missing: the page is not held (a later save rewrites it).
    for (const [id, loc] of this.#index) {
      const size = this.#packs.get(loc.pack)
      if (size === undefined || loc.offset + RECORD_HEADER_BYTES + loc.length > size) this.#index.delete(id)
    }
    for (const name of await io("list snapshots", () => readdir(join(dir, "snapshots")))) {
      if (!name.endsWith(".snap")) {
        await io(`remove ${name}`, () => unlink(join(dir, "snapshots", name)))
        this.recovered.tempFilesRemoved++
        dirty = true
      }
    }
    for (const name of ["HEADER.tmp", "index.log.tmp"]) {
      await unlink(join(dir, name)).then(
        () => ((this.recovered.tempFilesRemoved++), (dirty = true)),
        () => undefined,
      )
    }
    if (dirty) {
      await io("fsync the store directory", async () => {
        await fsyncDir(packsDir)
        await fsyncDir(join(dir, "snapshots"))
        await fsyncDir(dir)
      })
    }
  }

  #live(): void {
    if (this.#closed) throw new StoreUnavailable(`the store at ${this.dir} is closed`)
  }

  async header(initial: Uint8Array): Promise<Uint8Array> {
    this.#live()
    const path = join(this.dir, "HEADER")
    return io("read HEADER", async () => {
      try {
        return new Uint8Array(await readFile(path))
      } catch (e) {
        if (!isMissing(e)) throw e
      }
      await commitFile(this.dir, "HEADER", initial, 0o600)
      return initial
    })
  }

  hasPage(id: ContentId): boolean {
    return this.#index.has(id)
  }

  pageIds(): Iterable<ContentId> {
    return this.#index.keys()
  }

  /** The pack to append to, opened (and created) on first use. */
  async #appendPack(need: number): Promise<OpenPack> {
    const cur = this.#current
    if (cur !== null && (cur.size === 0 || cur.size + need <= this.#packBytes)) return cur
    if (cur !== null) {
      this.#current = null
      await cur.fh.sync()
      await cur.fh.close()
    }
    let no = 0
    for (const n of this.#packs.keys()) no = Math.max(no, n)
    const last = this.#packs.get(no)
    if (this.#freshPack || last === undefined || last + need > this.#packBytes) no++
    this.#freshPack = false
    const fh = await open(join(this.dir, "packs", packFile(no)), "a+")
    // The file's directory entry is durable before any index entry points into it.
    await fsyncDir(join(this.dir, "packs"))
    const size = (await fh.stat()).size
    if (size !== (this.#packs.get(no) ?? 0)) await fh.truncate(this.#packs.get(no) ?? 0)
    if (!this.#packs.has(no)) this.#packs.set(no, 0)
    const pack = { no, fh, size: this.#packs.get(no)! }
    this.#current = pack
    return pack
  }

  /** A page as a record payload: deflated when asked and smaller (and the page size a power of two). */
  #encode(page: StoredPage): { id: ContentId; bytes: Uint8Array; raw: number } {
    const raw = page.bytes.length
    if (this.#compress && raw >= 2 && (raw & (raw - 1)) === 0 && raw <= 2 ** 31) {
      const z = deflateRawSync(page.bytes, { level: 1 })
      if (z.length < raw) return { id: page.id, bytes: new Uint8Array(z.buffer, z.byteOffset, z.length), raw }
    }
    return { id: page.id, bytes: page.bytes, raw }
  }

  async putPages(plain: readonly StoredPage[]): Promise<void> {
    this.#live()
    if (plain.length === 0) return
    const entries = new Uint8Array(plain.length * INDEX_ENTRY_BYTES)
    const ev = new DataView(entries.buffer)
    let placed: [ContentId, Location][] = []
    try {
      await io("append to a pack", async () => {
        placed = await this.#appendRecords(plain)
        placed.forEach(([id, loc], k) => writeEntry(entries, ev, k * INDEX_ENTRY_BYTES, id, loc))
        // Durable before any index entry points at it (a pack left behind was synced by #appendPack).
        await this.#current!.fh.sync()
        const fh = await this.#indexHandle()
        await writeAll(fh, entries, this.#indexSize)
        await fh.sync()
      })
    } catch (e) {
      // The files' state is unknown: appends restart in a fresh pack; open() cuts the orphans.
      const cur = this.#current
      this.#current = null
      await cur?.fh.close().catch(() => undefined)
      this.#freshPack = true
      this.#indexFh?.close().catch(() => undefined)
      this.#indexFh = null
      throw e
    }
    this.#indexSize += entries.length
    for (const [id, loc] of placed) this.#index.set(id, loc)
  }

  async #indexHandle(): Promise<FileHandle> {
    if (this.#indexFh !== null) return this.#indexFh
    const path = join(this.dir, "index.log")
    const existed = await stat(path).then(() => true, () => false)
    const fh = await open(path, existed ? "r+" : "w+")
    if (!existed) await fsyncDir(this.dir)
    // A failed append may have left bytes past the committed size: cut them.
    await fh.truncate(this.#indexSize)
    this.#indexFh = fh
    return fh
  }

  /** Read records by location, coalescing neighbours; verifies each record's header against its id. */
  async #read(ids: readonly ContentId[]): Promise<(Uint8Array | undefined)[]> {
    const out: (Uint8Array | undefined)[] = new Array(ids.length).fill(undefined)
    const wanted: { i: number; id: ContentId; loc: Location }[] = []
    ids.forEach((id, i) => {
      const loc = this.#index.get(id)
      if (loc !== undefined) wanted.push({ i, id, loc })
    })
    wanted.sort((a, b) => a.loc.pack - b.loc.pack || a.loc.offset - b.loc.offset)
    const handles = new Map<number, FileHandle>()
    try {
      let k = 0
      while (k < wanted.length) {
        const first = wanted[k]!.loc
        let end = first.offset + RECORD_HEADER_BYTES + first.length
        let m = k + 1
        while (m < wanted.length) {
          const l = wanted[m]!.loc
          if (l.pack !== first.pack || l.offset > end || l.offset + RECORD_HEADER_BYTES + l.length - first.offset > READ_CHUNK) break
          end = Math.max(end, l.offset + RECORD_HEADER_BYTES + l.length)
          m++
        }
        let fh = handles.get(first.pack)
        if (fh === undefined) {
          const opened = await open(join(this.dir, "packs", packFile(first.pack)), "r").catch((e) => (isMissing(e) ? null : Promise.reject(e)))
          if (opened === null) {
            k = m
            continue
          }
          fh = opened
          handles.set(first.pack, fh)
        }
        const buf = await readAt(fh, end - first.offset, first.offset)
        const bv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
        for (let n = k; n < m; n++) {
          const { i, id, loc } = wanted[n]!
          out[i] = decodeRecord(buf, bv, loc.offset - first.offset, id, loc)
        }
        k = m
      }
    } finally {
      for (const fh of handles.values()) await fh.close().catch(() => undefined)
    }
    return out
  }

  /**
   * Read one page synchronously (a lazy restore's page fault): one pread of its record, `undefined`
   * when the page is not held or its record is unreadable; unverified, like getPages. Reads only
   * records the index already points at, so it is safe while another call is in flight.
   */
  readPageSync(id: ContentId): Uint8Array | undefined {
    this.#live()
    const loc = this.#index.get(id)
    if (loc === undefined) return undefined
    try {
      let fd = this.#syncFds.get(loc.pack)
      if (fd === undefined) {
        fd = openSync(join(this.dir, "packs", packFile(loc.pack)), "r")
        this.#syncFds.set(loc.pack, fd)
      }
      const n = RECORD_HEADER_BYTES + loc.length
      const buf = new Uint8Array(n)
      let done = 0
      while (done < n) {
        const r = readSync(fd, buf, done, n - done, loc.offset + done)
        if (r === 0) break
        done += r
      }
      return decodeRecord(buf.subarray(0, done), new DataView(buf.buffer, 0, done), 0, id, loc)
    } catch (cause) {
      if (isMissing(cause)) return undefined
      throw new StoreIOError(`read page ${id}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
    }
  }

  #closeSyncFds(): void {
    for (const fd of this.#syncFds.values()) {
      try {
        closeSync(fd)
      } catch {
        // already closed: nothing to release
      }
    }
    this.#syncFds.clear()
  }

  async getPages(ids: readonly ContentId[]): Promise<(Uint8Array | undefined)[]> {
    this.#live()
    return io("read pages", () => this.#read(ids))
  }

  async retainPages(live: ReadonlySet<ContentId>): Promise<number> {
    this.#live()
    const dirtyPacks = new Set<number>()
    let dropped = 0
    for (const [id, loc] of this.#index) if (!live.has(id)) dirtyPacks.add(loc.pack), dropped++
    // Packs nothing points at any more (e.g. a pack left by a failed append) go too.
    const used = new Set<number>()
    for (const loc of this.#index.values()) used.add(loc.pack)
    for (const no of this.#packs.keys()) if (!used.has(no)) dirtyPacks.add(no)
    if (dirtyPacks.size === 0) return 0
    await io("compact packs", async () => {
      const cur = this.#current
      this.#current = null
      await cur?.fh.close()
      // Copy the live records of the dirty packs into new packs (numbered above every old one).
      const moving = [...this.#index].filter(([id, loc]) => live.has(id) && dirtyPacks.has(loc.pack))
      const newIndex = new Map(this.#index)
      for (const [id, loc] of this.#index) if (!live.has(id)) newIndex.delete(id)
      const oldPacks = new Map(this.#packs)
      // this.#index changes only once the new index is committed: a failure leaves it as it was.
      // Appends go to fresh packs, numbered above every old one; the index is rewritten whole below.
      this.#freshPack = true
      for (let k = 0; k < moving.length; k += 1024) {
        const batch = moving.slice(k, k + 1024)
        const bytes = await this.#read(batch.map(([id]) => id))
        const pages: StoredPage[] = []
        batch.forEach(([id], n) => {
          const b = bytes[n]
          if (b !== undefined) pages.push({ id, bytes: b })
          else newIndex.delete(id) // unreadable: not held any more (a later save rewrites it)
        })
        for (const [id, loc] of await this.#appendRecords(pages)) newIndex.set(id, loc)
      }
      if (this.#current !== null) await (this.#current as OpenPack).fh.sync()
      await fsyncDir(join(this.dir, "packs"))
      // Commit the new index whole.
      const entries = new Uint8Array(newIndex.size * INDEX_ENTRY_BYTES)
      const ev = new DataView(entries.buffer)
      let e = 0
      for (const [id, loc] of newIndex) {
        writeEntry(entries, ev, e, id, loc)
        e += INDEX_ENTRY_BYTES
      }
      await this.#indexFh?.close()
      this.#indexFh = null
      await commitFile(this.dir, "index.log", entries)
      this.#indexSize = entries.length
      this.#index.clear()
      for (const [id, loc] of newIndex) this.#index.set(id, loc)
      // Sync reads open packs by number again (an old pack is about to go, its number may return).
      this.#closeSyncFds()
      // The old packs are unreferenced now: remove them.
      for (const no of dirtyPacks) {
        if (!oldPacks.has(no)) continue
        await unlink(join(this.dir, "packs", packFile(no))).catch((e2) => (isMissing(e2) ? undefined : Promise.reject(e2)))
        this.#packs.delete(no)
      }
      await fsyncDir(join(this.dir, "packs"))
    })
    return dropped
  }

  /**
   * Append records to packs (not synced, no index entry: the caller does both); returns where each
   * page went. One write per run of records that fits in the current pack and in READ_CHUNK.
   */
  async #appendRecords(plain: readonly StoredPage[]): Promise<[ContentId, Location][]> {
    const pages = plain.map((p) => this.#encode(p))
    const placed: [ContentId, Location][] = []
    let i = 0
    while (i < pages.length) {
      const pack = await this.#appendPack(RECORD_HEADER_BYTES + pages[i]!.bytes.length)
      let bytes = 0
      let j = i
      while (j < pages.length) {
        const rec = RECORD_HEADER_BYTES + pages[j]!.bytes.length
        if (j > i && (pack.size + bytes + rec > this.#packBytes || bytes + rec > READ_CHUNK)) break
        bytes += rec
        j++
      }
      const buf = new Uint8Array(bytes)
      const bv = new DataView(buf.buffer)
      let at = 0
      for (let k = i; k < j; k++) {
        const p = pages[k]!
        bv.setUint32(at, p.raw === p.bytes.length ? RECORD_MAGIC : RECORD_MAGIC_DEFLATE, true)
        bv.setUint32(at + 4, p.bytes.length, true)
        idToBytes(p.id, buf, at + 8)
        buf.set(p.bytes, at + RECORD_HEADER_BYTES)
        placed.push([p.id, { pack: pack.no, offset: pack.size + at, length: p.bytes.length, raw: p.raw }])
        at += RECORD_HEADER_BYTES + p.bytes.length
      }
      await writeAll(pack.fh, buf, pack.size)
      pack.size += bytes
      this.#packs.set(pack.no, pack.size)
      i = j
    }
    return placed
  }

  async putManifest(name: string, bytes: Uint8Array): Promise<void> {
    this.#live()
    await io(`commit manifest ${name}`, () => commitFile(join(this.dir, "snapshots"), `${name}.snap`, bytes))
  }

  async getManifest(name: string): Promise<Uint8Array | undefined> {
    this.#live()
    return io(`read manifest ${name}`, () => readFile(join(this.dir, "snapshots", `${name}.snap`)).then((b) => new Uint8Array(b), (e) => (isMissing(e) ? undefined : Promise.reject(e))))
  }

  async manifestNames(): Promise<string[]> {
    this.#live()
    const names = await io("list snapshots", () => readdir(join(this.dir, "snapshots")))
    return names.filter((n) => n.endsWith(".snap")).map((n) => n.slice(0, -5)).sort()
  }

  async deleteManifest(name: string): Promise<void> {
    this.#live()
    await io(`delete manifest ${name}`, async () => {
      await unlink(join(this.dir, "snapshots", `${name}.snap`)).catch((e) => (isMissing(e) ? undefined : Promise.reject(e)))
      await fsyncDir(join(this.dir, "snapshots"))
    })
  }

  async usage(): Promise<BackendUsage> {
    this.#live()
    let pageBytes = 0
    let storedBytes = 0
    for (const loc of this.#index.values()) {
      pageBytes += loc.raw
      storedBytes += loc.length
    }
    let totalBytes = this.#indexSize
    for (const size of this.#packs.values()) totalBytes += size
    totalBytes += await io("measure the store", async () => {
      let n = (await stat(join(this.dir, "HEADER")).catch(() => ({ size: 0 }))).size
      for (const name of await readdir(join(this.dir, "snapshots"))) n += (await stat(join(this.dir, "snapshots", name))).size
      return n
    })
    return { pages: this.#index.size, pageBytes, storedBytes, totalBytes }
  }

  /** Bytes of every pack file on disk (tests use it to see that gc left no garbage). */
  async packFileBytes(): Promise<number> {
    let n = 0
    for (const name of await readdir(join(this.dir, "packs"))) n += (await stat(join(this.dir, "packs", name))).size
    return n
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#closeSyncFds()
    await this.#current?.fh.close().catch(() => undefined)
    this.#current = null
    await this.#indexFh?.close().catch(() => undefined)
    this.#indexFh = null
    await unlink(join(this.dir, "LOCK")).catch(() => undefined)
  }
}
