/**
 * SnapshotStore: hibernate address spaces to disk, each distinct page stored once.
 *
 * A page is stored under its content id: HMAC-SHA-256 over (dedup scope, page bytes) with a
 * secret key kept in the store's header, truncated to 128 bits. The key makes ids unguessable
 * (no one can probe for a page's presence from outside, nor craft a collision), the scope (the
 * space's merge domain) keeps one tenant's pages from deduplicating against another's. Zero
 * pages are never stored. A snapshot is a manifest: page -> content id for every non-zero page.
 *
 * Saving reads the spaces synchronously, in the call (a consistent point in time; the host may
 * write again as soon as save() returns its promise), keeps copies of the pages the store does
 * not hold yet, then writes them and commits the manifest. Everything the store does on the
 * backend is serialised; reference counts (snapshots and in-flight saves) decide what gc frees.
 */
import { createHmac, randomBytes } from "node:crypto"
import { type AddressSpace, Engine, InvalidArgument, type MissingPageHandler, PageCategory } from "../index.ts"
import { type ContentId, idFromBytes, type SnapshotBackend, type StoredPage } from "./backend.ts"
import { SnapshotCorrupt, SnapshotExists, SnapshotNotFound, StoreIOError, StoreUnavailable } from "./errors.ts"
import { decodeManifest, encodeManifest, type Manifest, type ManifestSpace } from "./manifest.ts"
import { checkName, optBool, readOptions, show } from "./options.ts"
import { PackBackend } from "./pack.ts"

/** Options of {@link SnapshotStore.open}. */
export interface SnapshotStoreOptions {
  /**
   * Deduplicate pages across merge domains too (one scope for the whole store). Only for a
   * single tenant: with it, whether a page exists in the store tells one domain about another.
   * Applies to saves made while it is set; restores verify with the scope each space was saved
   * with. @default false
   */
  readonly crossDomain?: boolean
  /** Pack-file backend: size at which a pack file is closed and a new one started. @default 256 MiB */
  readonly packBytes?: number
  /**
   * Pack-file backend: compress each stored page with raw deflate when that makes it smaller
   * (see PackBackendOptions.compress). Stores written either way open either way. @default "none"
   */
  readonly compress?: "none" | "deflate"
}

/** Options of {@link SnapshotStore.save}. */
export interface SaveOptions {
  /** The snapshot's name: 1 to 128 of A-Z a-z 0-9 . _ - (not starting with . or -). */
  readonly name: string
  /** Any JSON value kept with the snapshot (at most 1 MiB as JSON); list() returns it. */
  readonly meta?: unknown
  /** Overwrite a snapshot of that name (atomically) instead of failing with SnapshotExists. @default false */
  readonly replace?: boolean
  /**
   * Track writes: after this save the store write-protects the spaces (`writeProtect`), and the
   * next tracked save of the same space object hashes only the pages `pagemapScan` reports
   * WRITTEN. The store then owns the spaces' write protection: do not use writeProtect or
   * pagemapScan's wpMatching on them yourself. A space is tracked by one store at a time
   * (another store's tracked save hashes it in full). @default false
   */
  readonly track?: boolean
}

/** What a save did. */
export interface SaveReport {
  readonly name: string
  /** Pages over all spaces (their sizes / page size). */
  readonly pages: number
  /** Non-zero pages the manifest lists. */
  readonly nonZeroPages: number
  /** Pages hashed (all non-zero pages, or only the written ones of a tracked save). */
  readonly hashedPages: number
  /** Pages written to the backend (the rest were already stored). */
  readonly newPages: number
  /** Payload bytes written to the backend. */
  readonly newBytes: number
}

/** Options of {@link SnapshotStore.restore}. */
export interface RestoreOptions {
  /**
   * Merge each restored space (`space.merge()`) once its pages are written, so identical pages
   * share frames, within the snapshot and with spaces already in the engine (restoring many
   * snapshots of one image costs its distinct pages once). This merges every identical page,
   * not only those that were merged when saved. @default true
   */
  readonly merge?: boolean
  /**
   * Lazy restore: return the spaces at once, their non-zero pages missing (userfaultfd's MISSING
   * mode, see `AddressSpace.registerMissing`). The first access to a page reads it from the store
   * synchronously (one read and the integrity check: tens of microseconds); a background filler
   * reads the rest in address order, a chunk per event-loop turn, then merges (with `merge`).
   * restore() then resolves to a {@link LazyRestore} instead of the spaces.
   *
   * When to use: resume instances sooner than their images can be read (the first access waits
   * for one page, not for the image), or restore a fleet that touches little of its memory
   * before the fill catches up. Gotchas: the backend must read pages synchronously (the
   * pack-file backend does; RedisBackend does not: InvalidArgument, restore eagerly); a corrupt
   * page is found only when it is read, so a fault on it throws PageFetchFailed whose `cause` is
   * SnapshotCorrupt, and `done` rejects (the spaces are not disposed: the host decides);
   * close() waits for the fills in progress; dispose a space to stop its fill.
   * @default false
   */
  readonly lazy?: boolean
}

/** A lazy restore in progress: what `restore(name, engine, { lazy: true })` resolves to. */
export interface LazyRestore {
  /** The restored spaces (names, domains, sizes as saved, in order), usable now. */
  readonly spaces: readonly AddressSpace[]
  /**
   * Settles when the background fill is over: resolves once every page of every space not
   * disposed meanwhile is in memory (and merged, with `merge`); rejects with the fill's first
   * error (SnapshotCorrupt, StoreIOError, OutOfMemory), leaving the spaces as they are (their
   * unfilled pages still fault in on access). Ignoring it never makes an unhandled rejection.
   */
  readonly done: Promise<void>
  /** Pages not in memory yet, over all the spaces (0 once `done` resolves). */
  readonly missingPages: number
}

/** One space of a snapshot, as list() describes it. */
export interface SnapshotSpaceInfo {
  readonly name: string
  readonly domain: string
  readonly size: number
  readonly nonZeroPages: number
}

/** A committed snapshot. */
export interface SnapshotInfo {
  readonly name: string
  /** ISO time of the save. */
  readonly createdAt: string
  readonly meta: unknown
  readonly pageSize: number
  readonly spaces: readonly SnapshotSpaceInfo[]
  /** Sum of the spaces' sizes. */
  readonly logicalBytes: number
  /** Bytes of the non-zero pages. */
  readonly nonZeroBytes: number
}

/** What the store holds (stats()). */
export interface StoreStats {
  readonly snapshots: number
  /** Snapshots whose manifest failed its check at open (restore throws SnapshotCorrupt; delete removes them). */
  readonly damaged: readonly string[]
  /** Sum of the sizes of every space of every snapshot. */
  readonly logicalBytes: number
  /** Of those, the bytes of non-zero pages (zero pages cost nothing). */
  readonly nonZeroBytes: number
  /** Distinct pages stored. */
  readonly storedPages: number
  /** Their payload bytes (uncompressed). */
  readonly storedBytes: number
  /** What those payloads occupy as stored: less than storedBytes when the backend compresses. */
  readonly compressedBytes: number
  /** storedBytes / compressedBytes (1 without compression). */
  readonly compressionRatio: number
  /** Stored pages no snapshot references (gc() frees them). */
  readonly unreferencedPages: number
  /** Bytes the backend occupies in all (record headers, index, manifests and garbage included). */
  readonly diskBytes: number
  /** nonZeroBytes / storedBytes: how many times each stored byte is used (1 when nothing is shared). */
  readonly dedupRatio: number
  /** logicalBytes / diskBytes: what the store saves over plain images, zero pages included. */
  readonly ratio: number
}

/** What gc() did. */
export interface GcReport {
  readonly pagesFreed: number
  /** Bytes the backend occupies less than before. */
  readonly bytesFreed: number
}

interface CatalogEntry {
  readonly info: SnapshotInfo
  /** Distinct content ids the snapshot references. */
  readonly ids: readonly ContentId[]
}

interface Tracking {
  readonly store: SnapshotStore
  /** Page -> content id of the last committed tracked save (non-zero pages only). */
  ids: Map<number, ContentId>
}

const HEADER_FORMAT = "sksm-snapshot-store"
const HEADER_VERSION = 1
const CROSS_DOMAIN_SCOPE = "*"
const META_LIMIT = 1 << 20
/** Pages read from a space per readInto call. */
const READ_PAGES = 256
/** Pages per backend write or read. */
const IO_PAGES = 4096
/** Pages the lazy-restore filler reads and installs per event-loop turn (1 MiB of 4 KiB pages). */
const FILL_PAGES = 256

/** The index of `page` in the ascending list `pages`, or -1. */
function indexOfPage(pages: Uint32Array, page: number): number {
  let lo = 0
  let hi = pages.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const p = pages[mid]!
    if (p === page) return mid
    if (p < page) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** Which store tracks a space's writes (one at a time: the WRITTEN bits are one resource). */
const tracking = new WeakMap<AddressSpace, Tracking>()

/** What list() says of a snapshot, from its manifest. */
function infoOf(m: Manifest): SnapshotInfo {
  let logical = 0
  let nonZero = 0
  for (const s of m.spaces) {
    logical += s.size
    nonZero += s.pages.length
  }
  return Object.freeze({
    name: m.name,
    createdAt: m.createdAt,
    meta: m.meta,
    pageSize: m.pageSize,
    spaces: Object.freeze(m.spaces.map((s) => Object.freeze({ name: s.name, domain: s.domain, size: s.size, nonZeroPages: s.pages.length }))),
    logicalBytes: logical,
    nonZeroBytes: nonZero * m.pageSize,
  })
}

function isZero(words: Uint32Array): boolean {
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false
  return true
}

/**
 * A deduplicated, crash-safe store of address-space snapshots: each distinct page once on disk,
 * content-addressed by a keyed hash scoped by merge domain.
 *
 * When to use: hibernate idle instances (save, dispose, later restore into any engine with the
 * same page size), keep checkpoints of one instance (repeat saves write only changed pages), or
 * ship the memory of a fleet of similar instances at the cost of their distinct pages.
 *
 * ```ts
 * const store = await SnapshotStore.open("/var/lib/app/snapshots")
 * await store.save(space, { name: "vm-1", meta: { image: "alpine" } })
 * space.dispose()
 * const [back] = await store.restore("vm-1", engine)
 * await store.close()
 * ```
 *
 * Gotchas: one process writes a store directory at a time (open() fails with StoreUnavailable
 * while another live process has it). save() reads the spaces during the call, synchronously;
 * its promise resolves once the snapshot is durable. restore() creates new spaces (names and
 * domains as saved; the engine's page size must match). A corrupt page is a SnapshotCorrupt,
 * never memory. Deleting snapshots frees nothing until gc(). `restore(name, engine, { lazy: true })`
 * returns before the pages are read: they fault in on first access or from a background filler.
 */
export class SnapshotStore {
  readonly #backend: SnapshotBackend
  readonly #key: Uint8Array
  readonly #crossDomain: boolean
  readonly #catalog = new Map<string, CatalogEntry>()
  readonly #damaged = new Set<string>()
  /** Content id -> references: committed snapshots plus in-flight saves. */
  readonly #refs = new Map<ContentId, number>()
  #queue: Promise<unknown> = Promise.resolve()
  #closed = false
  readonly #prefixes = new Map<string, Uint8Array>()
  /** Background fills of lazy restores in progress (close() waits for them). */
  readonly #fills = new Set<Promise<void>>()

  private constructor(backend: SnapshotBackend, key: Uint8Array, crossDomain: boolean) {
    this.#backend = backend
    this.#key = key
    this.#crossDomain = crossDomain
  }

  /**
   * Open the store in directory `dir` (created if missing, mode 0700) with the pack-file backend,
   * recovering from any crash: a torn write, an uncommitted save, an interrupted gc.
   */
  static async open(dir: string, options?: SnapshotStoreOptions): Promise<SnapshotStore> {
    const o = readOptions("SnapshotStore.open()", options, ["crossDomain", "packBytes", "compress"])
    if (typeof dir !== "string" || dir.length === 0) throw new InvalidArgument(`SnapshotStore.open(): dir must be a non-empty path, got ${show(dir)}`)
    const crossDomain = optBool("SnapshotStore.open()", "crossDomain", o.crossDomain, false)
    const packBytes = o.packBytes === undefined ? {} : { packBytes: o.packBytes as number }
    const compress = o.compress === undefined ? {} : { compress: o.compress as "none" | "deflate" }
    const backend = await PackBackend.open(dir, { ...packBytes, ...compress })
    return SnapshotStore.withBackend(backend, { crossDomain }).catch(async (e: unknown) => {
      await backend.close()
      throw e
    })
  }

  /**
   * A store over any {@link SnapshotBackend} (the seam for other storage, e.g. a fleet store).
   * The store takes the backend over: close() closes it.
   */
  static async withBackend(backend: SnapshotBackend, options?: Pick<SnapshotStoreOptions, "crossDomain">): Promise<SnapshotStore> {
    const o = readOptions("SnapshotStore.withBackend()", options, ["crossDomain"])
    const crossDomain = optBool("SnapshotStore.withBackend()", "crossDomain", o.crossDomain, false)
    const initial = new TextEncoder().encode(JSON.stringify({ format: HEADER_FORMAT, version: HEADER_VERSION, key: randomBytes(32).toString("base64"), createdAt: new Date().toISOString() }))
    const raw = await backend.header(initial)
    let key: Uint8Array
    try {
      const h = JSON.parse(new TextDecoder().decode(raw)) as Record<string, unknown>
      if (h["format"] !== HEADER_FORMAT || h["version"] !== HEADER_VERSION || typeof h["key"] !== "string") throw new Error("not a store header")
      key = new Uint8Array(Buffer.from(h["key"], "base64"))
      if (key.length !== 32) throw new Error("bad key")
    } catch (cause) {
      throw new StoreIOError(`the store's HEADER is not a version ${HEADER_VERSION} sksm snapshot store header`, { cause })
    }
    const store = new SnapshotStore(backend, key, crossDomain)
    for (const name of await backend.manifestNames()) {
      const bytes = await backend.getManifest(name)
      if (bytes === undefined) continue
      try {
        store.#add(decodeManifest(name, bytes))
      } catch (e) {
        if (!(e instanceof SnapshotCorrupt)) throw e
        store.#damaged.add(name)
      }
    }
    return store
  }

  #add(m: Manifest): void {
    const ids = new Set<ContentId>()
    for (const s of m.spaces) for (const id of s.ids) ids.add(id)
    for (const id of ids) this.#refs.set(id, (this.#refs.get(id) ?? 0) + 1)
    this.#catalog.set(m.name, { info: infoOf(m), ids: [...ids] })
  }

  /** Drop snapshot `name` from the catalog (if listed), releasing its references. */
  #drop(name: string): void {
    const entry = this.#catalog.get(name)
    if (entry === undefined) return
    this.#catalog.delete(name)
    this.#unref(entry.ids)
  }

  #unref(ids: Iterable<ContentId>): void {
    for (const id of ids) {
      const n = (this.#refs.get(id) ?? 0) - 1
      if (n <= 0) this.#refs.delete(id)
      else this.#refs.set(id, n)
    }
  }

  #live(): void {
    if (this.#closed) throw new StoreUnavailable("the snapshot store is closed")
  }

  /**
   * A public call's body: the store must be open, and whatever the body throws before it returns
   * its promise (a bad argument) becomes that promise's rejection, as async callers expect.
   */
  #call<T>(body: () => Promise<T>): Promise<T> {
    try {
      this.#live()
      return body()
    } catch (e) {
      return Promise.reject(e)
    }
  }

  /** Run `op` after every earlier operation (the backend sees one call at a time). */
  #serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      this.#live()
      return op()
    })
    this.#queue = run.catch(() => undefined)
    return run
  }

  #prefix(scope: string): Uint8Array {
    let p = this.#prefixes.get(scope)
    if (p === undefined) {
      const s = new TextEncoder().encode(scope)
      p = new Uint8Array(4 + s.length)
      new DataView(p.buffer).setUint32(0, s.length, true)
      p.set(s, 4)
      this.#prefixes.set(scope, p)
    }
    return p
  }

  /** The content id of `page` in dedup scope `scope`. */
  #idOf(scope: string, page: Uint8Array): ContentId {
    return idFromBytes(createHmac("sha256", this.#key).update(this.#prefix(scope)).update(page).digest(), 0)
  }

  /**
   * Save `spaces` (one space or several, restored together) as snapshot `options.name`. The
   * spaces are read now, synchronously; the promise resolves when the snapshot is committed
   * (durable). Only pages the store does not hold yet are written. Throws InvalidArgument
   * (bad options, a disposed space, mixed page sizes) and SnapshotExists before reading
   * anything; StoreIOError if the storage fails (the snapshot is then absent; nothing leaks
   * past the next gc()).
   */
  save(spaces: AddressSpace | readonly AddressSpace[], options: SaveOptions): Promise<SaveReport> {
    return this.#call(() => {
      return this.#save(spaces, options)
    })
  }

  #save(spacesArg: AddressSpace | readonly AddressSpace[], options: SaveOptions): Promise<SaveReport> {
    const where = "SnapshotStore.save()"
    const o = readOptions(where, options, ["name", "meta", "replace", "track"])
    const name = checkName(where, o.name)
    const replace = optBool(where, "replace", o.replace, false)
    const track = optBool(where, "track", o.track, false)
    let meta: unknown = null
    if (o.meta !== undefined) {
      let json: string | undefined
      try {
        json = JSON.stringify(o.meta)
      } catch (cause) {
        throw new InvalidArgument(`${where}: meta must be JSON-serialisable`, { cause })
      }
      if (json === undefined) throw new InvalidArgument(`${where}: meta must be JSON-serialisable, got ${show(o.meta)}`)
      if (json.length > META_LIMIT) throw new InvalidArgument(`${where}: meta is ${json.length} characters of JSON, at most ${META_LIMIT}`)
      meta = JSON.parse(json)
    }
    const spaces: AddressSpace[] = Array.isArray(spacesArg) ? [...(spacesArg as readonly AddressSpace[])] : [spacesArg as AddressSpace]
    if (spaces.length === 0) throw new InvalidArgument(`${where}: no space to save`)
    if (new Set(spaces).size !== spaces.length) throw new InvalidArgument(`${where}: a space is listed twice`)
    let pageSize = 0
    for (const s of spaces) {
      if (typeof s !== "object" || s === null || typeof (s as AddressSpace).pagemapScan !== "function") throw new InvalidArgument(`${where}: not an address space: ${show(s)}`)
      if (s.disposed) throw new InvalidArgument(`${where}: space ${JSON.stringify(s.name)} is disposed`)
      if (pageSize !== 0 && s.pageSize !== pageSize) throw new InvalidArgument(`${where}: the spaces have different page sizes (${pageSize}, ${s.pageSize})`)
      pageSize = s.pageSize
    }
    if (!replace && (this.#catalog.has(name) || this.#damaged.has(name))) throw new SnapshotExists(name)

    // Capture: read and hash now, synchronously; copy only pages the store lacks.
    const fresh = new Map<ContentId, Uint8Array>()
    const mspaces: ManifestSpace[] = []
    const newTracking: [AddressSpace, Map<number, ContentId>][] = []
    let hashed = 0
    let totalPages = 0
    const buf = new Uint8Array(READ_PAGES * pageSize)
    const words = new Uint32Array(buf.buffer)
    const pageWords = pageSize >>> 2
    for (const space of spaces) {
      const scope = this.#crossDomain ? CROSS_DOMAIN_SCOPE : space.domain
      const pages = space.pages
      totalPages += pages
      const t = tracking.get(space)
      const previous = track && t !== undefined && t.store === this ? t.ids : null
      // Another store tracking this space: hash in full, leave its protection alone.
      const owner = track && (t === undefined || t.store === this)
      // Pages to hash: every present page, or (tracked) the present pages written since.
      const present = new Uint8Array(pages)
      for (const r of space.pagemapScan({ start: 0, end: space.size, categoryMask: PageCategory.PRESENT, returnMask: PageCategory.PRESENT }).regions) present.fill(1, r.start / pageSize, r.end / pageSize)
      let dirty: Uint8Array | null = null
      if (previous !== null) {
        dirty = new Uint8Array(pages)
        for (const r of space.pagemapScan({ start: 0, end: space.size, categoryMask: PageCategory.WRITTEN, returnMask: PageCategory.WRITTEN, wpMatching: true }).regions) dirty.fill(1, r.start / pageSize, r.end / pageSize)
      }
      const pageList: number[] = []
      const idList: ContentId[] = []
      const ids = new Map<number, ContentId>()
      for (let p0 = 0; p0 < pages; p0 += READ_PAGES) {
        const n = Math.min(READ_PAGES, pages - p0)
        let loaded = false
        for (let i = 0; i < n; i++) {
          const p = p0 + i
          if (present[p] === 0) continue
          let id: ContentId | undefined
          if (dirty !== null && dirty[p] === 0) {
            const prev = previous!.get(p)
            if (prev === undefined) continue // zero at the last save and not written since
            if (this.#backend.hasPage(prev) || fresh.has(prev)) id = prev
          }
          if (id === undefined) {
            if (!loaded) {
              space.readInto(p0 * pageSize, buf.subarray(0, n * pageSize))
              loaded = true
            }
            if (isZero(words.subarray(i * pageWords, (i + 1) * pageWords))) continue
            const page = buf.subarray(i * pageSize, (i + 1) * pageSize)
            id = this.#idOf(scope, page)
            hashed++
            if (!this.#backend.hasPage(id) && !fresh.has(id)) fresh.set(id, page.slice())
          }
          pageList.push(p)
          idList.push(id)
          ids.set(p, id)
        }
      }
      if (owner) newTracking.push([space, ids])
      mspaces.push({ name: space.name, domain: space.domain, scope, size: space.size, mergeAny: space.mergeAny, pages: Uint32Array.from(pageList), ids: idList })
    }
    const manifest: Manifest = { name, createdAt: new Date().toISOString(), pageSize, meta, spaces: mspaces }
    // Tracking: protect now (same turn as the capture), so the next save sees every later write.
    for (const [space, ids] of newTracking) {
      const t = tracking.get(space)
      if (t === undefined) {
        space.writeProtect(0, space.size, true)
        tracking.set(space, { store: this, ids })
      } else t.ids = ids
    }
    // Pin what the manifest references until it is committed (gc must not free it meanwhile).
    const pinned = new Set<ContentId>()
    for (const s of mspaces) for (const id of s.ids) pinned.add(id)
    for (const id of pinned) this.#refs.set(id, (this.#refs.get(id) ?? 0) + 1)
    let nonZero = 0
    for (const s of mspaces) nonZero += s.pages.length

    return this.#serial(async () => {
      if (!replace && (this.#catalog.has(name) || this.#damaged.has(name))) throw new SnapshotExists(name)
      const toWrite: StoredPage[] = []
      let newBytes = 0
      for (const [id, bytes] of fresh) {
        if (this.#backend.hasPage(id)) continue
        toWrite.push({ id, bytes })
        newBytes += bytes.length
      }
      for (let i = 0; i < toWrite.length; i += IO_PAGES) await this.#backend.putPages(toWrite.slice(i, i + IO_PAGES))
      await this.#backend.putManifest(name, encodeManifest(manifest))
      this.#drop(name)
      this.#damaged.delete(name)
      // The pins become the snapshot's references.
      const ids = [...pinned]
      pinned.clear()
      this.#catalog.set(name, { info: infoOf(manifest), ids })
      return Object.freeze({ name, pages: totalPages, nonZeroPages: nonZero, hashedPages: hashed, newPages: toWrite.length, newBytes })
    }).catch((e: unknown) => {
      this.#unref(pinned)
      // The WRITTEN bits this save consumed are gone: the next tracked save hashes in full.
      for (const [space] of newTracking) {
        if (tracking.get(space)?.store !== this) continue
        tracking.delete(space)
        if (!space.disposed) space.writeProtect(0, space.size, false)
      }
      throw e
    })
  }

  /**
   * Restore snapshot `name` into `engine`: new spaces (names, domains, sizes as saved), byte-exact,
   * merged (see {@link RestoreOptions.merge}), in the order they were saved. Every page is checked
   * against its content id first: a mismatch or a missing page throws SnapshotCorrupt naming the
   * snapshot, space and page, and the spaces created so far are disposed. With `lazy: true` it
   * resolves at once to a {@link LazyRestore}: the spaces are usable while their pages arrive (on
   * first access, or from a background filler); see {@link RestoreOptions.lazy}.
   */
  restore(name: string, engine: Engine, options: RestoreOptions & { readonly lazy: true }): Promise<LazyRestore>
  restore(name: string, engine: Engine, options?: RestoreOptions & { readonly lazy?: false }): Promise<AddressSpace[]>
  restore(name: string, engine: Engine, options?: RestoreOptions): Promise<AddressSpace[] | LazyRestore>
  restore(name: string, engine: Engine, options?: RestoreOptions): Promise<AddressSpace[] | LazyRestore> {
    return this.#call<AddressSpace[] | LazyRestore>(() => {
      const where = "SnapshotStore.restore()"
      checkName(where, name)
      if (!(engine instanceof Engine)) throw new InvalidArgument(`${where}: engine must be an sksm Engine, got ${show(engine)}`)
      const o = readOptions(where, options, ["merge", "lazy"])
      const merge = optBool(where, "merge", o.merge, true)
      const lazy = optBool(where, "lazy", o.lazy, false)
      if (lazy && typeof this.#backend.readPageSync !== "function") throw new InvalidArgument(`${where}: lazy restore needs a backend that reads pages synchronously (readPageSync); this one does not: restore eagerly`)
      return lazy ? this.#serial(() => this.#restoreLazy(name, engine, merge)) : this.#serial(() => this.#restore(name, engine, merge))
    })
  }

  /** The manifest of snapshot `name`, checked against `engine`'s page size. */
  async #manifestFor(name: string, engine: Engine): Promise<Manifest> {
    const bytes = await this.#backend.getManifest(name)
    if (bytes === undefined) throw new SnapshotNotFound(name)
    const m = decodeManifest(name, bytes)
    if (m.pageSize !== engine.pageSize) throw new InvalidArgument(`SnapshotStore.restore(): snapshot ${JSON.stringify(name)} has ${m.pageSize}-byte pages, the engine ${engine.pageSize}-byte pages`)
    return m
  }

  /** Whether `bytes` are the page of content id `id` in space `s` (scope and page size). */
  #verify(s: ManifestSpace, pageSize: number, id: ContentId, bytes: Uint8Array | undefined): bytes is Uint8Array {
    return bytes !== undefined && bytes.length === pageSize && this.#idOf(s.scope, bytes) === id
  }

  /** The error for page `k` of space `si` whose bytes failed {@link #verify} (`held`: the backend returned some). */
  #corrupt(m: Manifest, si: number, k: number, held: boolean): SnapshotCorrupt {
    const s = m.spaces[si]!
    return new SnapshotCorrupt(m.name, si, s.pages[k]!, held ? `its bytes do not match content id ${s.ids[k]}` : `content id ${s.ids[k]} is missing from the store`)
  }

  async #restore(name: string, engine: Engine, merge: boolean): Promise<AddressSpace[]> {
    const m = await this.#manifestFor(name, engine)
    return this.#makeSpaces(m, engine, async (space, s, si) => {
      for (let k = 0; k < s.pages.length; k += IO_PAGES) {
        const end = Math.min(s.pages.length, k + IO_PAGES)
        const want = [...new Set(s.ids.slice(k, end))]
        const got = await this.#backend.getPages(want)
        const verified = new Map<ContentId, Uint8Array>()
        want.forEach((id, i) => {
          const b = got[i]
          if (this.#verify(s, m.pageSize, id, b)) verified.set(id, b)
        })
        for (let i = k; i < end; i++) {
          const page = verified.get(s.ids[i]!)
          if (page === undefined) throw this.#corrupt(m, si, i, got[want.indexOf(s.ids[i]!)] !== undefined)
          if (space.disposed) throw new StoreUnavailable("a restored space was disposed during restore")
          space.write(s.pages[i]! * m.pageSize, page)
        }
      }
    }, merge)
  }

  /**
   * Create the spaces of manifest `m` in `engine`, each filled by `fill` (or registered missing)
   * before the next is made, then mergeAny as saved, then merged if `merge`; if anything throws,
   * every space made so far is disposed and the error rethrown.
   */
  async #makeSpaces(m: Manifest, engine: Engine, fill: (space: AddressSpace, s: Manifest["spaces"][number], si: number) => Promise<void> | void, merge: boolean): Promise<AddressSpace[]> {
    const made: AddressSpace[] = []
    try {
      for (let si = 0; si < m.spaces.length; si++) {
        const s = m.spaces[si]!
        const space = engine.createSpace({ size: s.size, name: s.name, domain: s.domain })
        made.push(space)
        await fill(space, s, si)
        if (s.mergeAny) space.setMergeAny(true)
      }
      if (merge) for (const space of made) space.merge()
      return made
    } catch (e) {
      for (const space of made) space.dispose()
      throw e
    }
  }

  /**
   * Lazy restore: the spaces, registered missing (each manifest page), returned at once; the
   * pages the snapshot references stay referenced until the fill is over (a delete and gc
   * meanwhile frees none of them).
   */
  async #restoreLazy(name: string, engine: Engine, merge: boolean): Promise<LazyRestore> {
    const m = await this.#manifestFor(name, engine)
    const backend = this.#backend
    // Read once: the fault handlers call this, never the backend's property again.
    const read = backend.readPageSync!
    // Merged (if asked) by the fill once every page is in, not here.
    const made = await this.#makeSpaces(m, engine, (space, s, si) => {
      space.registerMissing(this.#faultHandler(m, si, (id) => read.call(backend, id)), s.pages)
    }, false)
    const ids = new Set<ContentId>()
    for (const s of m.spaces) for (const id of s.ids) ids.add(id)
    for (const id of ids) this.#refs.set(id, (this.#refs.get(id) ?? 0) + 1)
    const done: Promise<void> = this.#fill(m, made, merge).finally(() => {
      this.#unref(ids)
      this.#fills.delete(done)
    })
    this.#fills.add(done)
    done.catch(() => undefined) // handled: the host may ignore `done`
    const spaces = Object.freeze([...made])
    return Object.freeze({
      spaces,
      done,
      get missingPages(): number {
        let n = 0
        for (const space of spaces) n += space.missingPages
        return n
      },
    })
  }

  /**
   * The MISSING-fault handler of space `si` of `m`: read the page synchronously, verify it as
   * restore does, hand it over. Runs inside the host's access (the engine is busy meanwhile).
   */
  #faultHandler(m: Manifest, si: number, read: (id: ContentId) => Uint8Array | undefined): MissingPageHandler {
    const s = m.spaces[si]!
    return {
      fill: (pageIndex: number, page: Uint8Array): void => {
        if (this.#closed) throw new StoreUnavailable("the snapshot store is closed")
        const k = indexOfPage(s.pages, pageIndex)
        if (k < 0) throw new Error(`page ${pageIndex} is not in the manifest`) // registered pages are the manifest's
        const bytes = read(s.ids[k]!)
        if (!this.#verify(s, m.pageSize, s.ids[k]!, bytes)) throw this.#corrupt(m, si, k, bytes !== undefined)
        page.set(bytes)
      },
    }
  }

  /**
   * The background filler of a lazy restore: for each space in order, the pages still missing,
   * in address order, FILL_PAGES per event-loop turn (one backend read through the queue, then
   * verify and install); skips what faults filled first; stops for a disposed space; merges at
   * the end like an eager restore.
   */
  async #fill(m: Manifest, spaces: readonly AddressSpace[], merge: boolean): Promise<void> {
    const ps = m.pageSize
    for (let si = 0; si < m.spaces.length; si++) {
      const s = m.spaces[si]!
      const space = spaces[si]!
      let k = 0
      while (k < s.pages.length && !space.disposed && space.missingPages > 0) {
        const chunk: number[] = []
        for (; k < s.pages.length && chunk.length < FILL_PAGES; k++) if (space.isMissing(s.pages[k]! * ps)) chunk.push(k)
        if (chunk.length === 0) continue
        const want = [...new Set(chunk.map((i) => s.ids[i]!))]
        const got = await this.#serial(() => this.#backend.getPages(want))
        if (space.disposed) break
        const byId = new Map(want.map((id, i) => [id, got[i]]))
        for (const i of chunk) {
          const bytes = byId.get(s.ids[i]!)
          if (!this.#verify(s, ps, s.ids[i]!, bytes)) throw this.#corrupt(m, si, i, bytes !== undefined)
          space.copyMissing(s.pages[i]! * ps, bytes)
        }
        await nextTurn()
      }
    }
    if (merge) for (const space of spaces) if (!space.disposed) space.merge()
  }

  /** The committed snapshots, by name (the state after the operations that have completed). */
  list(): SnapshotInfo[] {
    this.#live()
    return [...this.#catalog.values()].map((e) => e.info).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  /** Delete snapshot `name` (durably); its pages stay on disk until gc(). SnapshotNotFound if absent. */
  delete(name: string): Promise<void> {
    return this.#call(() => {
      checkName("SnapshotStore.delete()", name)
      return this.#serial(async () => {
        if (!this.#catalog.has(name) && !this.#damaged.has(name)) throw new SnapshotNotFound(name)
        await this.#backend.deleteManifest(name)
        this.#drop(name)
        this.#damaged.delete(name)
      })
    })
  }

  /**
   * Free every stored page that no snapshot (and no save in flight) references, and compact the
   * storage. Pages of damaged snapshots are not protected (they cannot be restored anyway).
   */
  gc(): Promise<GcReport> {
    return this.#call(() => {
      return this.#serial(async () => {
        const before = (await this.#backend.usage()).totalBytes
        const pagesFreed = await this.#backend.retainPages(new Set(this.#refs.keys()))
        const after = (await this.#backend.usage()).totalBytes
        return Object.freeze({ pagesFreed, bytesFreed: Math.max(0, before - after) })
      })
    })
  }

  /** Logical bytes, stored bytes and the dedup ratio (after the operations queued before it). */
  stats(): Promise<StoreStats> {
    return this.#call(() => {
      return this.#serial(async () => {
        const u = await this.#backend.usage()
        const compressedBytes = u.storedBytes ?? u.pageBytes
        let logicalBytes = 0
        let nonZeroBytes = 0
        for (const { info } of this.#catalog.values()) {
          logicalBytes += info.logicalBytes
          nonZeroBytes += info.nonZeroBytes
        }
        let unreferencedPages = 0
        for (const id of this.#backend.pageIds()) if (!this.#refs.has(id)) unreferencedPages++
        return Object.freeze({
          snapshots: this.#catalog.size,
          damaged: Object.freeze([...this.#damaged].sort()),
          logicalBytes,
          nonZeroBytes,
          storedPages: u.pages,
          storedBytes: u.pageBytes,
          compressedBytes,
          compressionRatio: compressedBytes === 0 ? 1 : u.pageBytes / compressedBytes,
          unreferencedPages,
          diskBytes: u.totalBytes,
          dedupRatio: u.pageBytes === 0 ? 1 : nonZeroBytes / u.pageBytes,
          ratio: u.totalBytes === 0 ? 1 : logicalBytes / u.totalBytes,
        })
      })
    })
  }

  /**
   * Re-read the committed snapshots from the backend (after the operations queued before it): for
   * a store shared by several hosts (a fleet backend), list(), stats() and delete() then see the
   * snapshots other hosts have committed, replaced or deleted since this store opened.
   */
  refresh(): Promise<void> {
    return this.#call(() => {
      return this.#serial(async () => {
        const names = new Set(await this.#backend.manifestNames())
        for (const name of [...this.#catalog.keys()]) if (!names.has(name)) this.#drop(name)
        for (const name of [...this.#damaged]) if (!names.has(name)) this.#damaged.delete(name)
        for (const name of names) {
          const bytes = await this.#backend.getManifest(name)
          if (bytes === undefined) {
            this.#drop(name)
            this.#damaged.delete(name)
            continue
          }
          let m: Manifest
          try {
            m = decodeManifest(name, bytes)
          } catch (e) {
            if (!(e instanceof SnapshotCorrupt)) throw e
            this.#drop(name)
            this.#damaged.add(name)
            continue
          }
          if (this.#catalog.get(name)?.info.createdAt === m.createdAt) continue
          this.#drop(name)
          this.#damaged.delete(name)
          this.#add(m)
        }
      })
    })
  }

  /**
   * Finish the queued operations and the background fills of lazy restores (their spaces need
   * the store until then: dispose a space to stop its fill), then release the storage (and its
   * lock). Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return
    while (this.#fills.size > 0) await Promise.allSettled([...this.#fills])
    await this.#queue
    if (this.#closed) return
    this.#closed = true
    await this.#backend.close()
  }
}
