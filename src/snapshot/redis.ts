/**
 * RedisBackend: a fleet backend for sksm/snapshot. Hosts that share one Redis (a single server or
 * a Redis Cluster) share one store: a page saved by any host is stored once for all of them.
 * Needs the optional package `ioredis` (npm install ioredis@6), loaded on first use.
 *
 * Keys (namespace `ns`, default "sksm"):
 * - `ns:p:<id>`: a page (its raw bytes) under its content id; no hash tag, so a cluster spreads
 *   pages over its nodes. Written with SET NX after an EXISTS: two hosts store a page once and
 *   its bytes cross the network once.
 * - `{ns}:h` (header: the hashing key), `{ns}:m` (hash: name -> manifest), `{ns}:s` (sorted set:
 *   save leases, score = expiry), `{ns}:l` (the gc lock, with a PX lease), `{ns}:e` (gc epoch):
 *   one hash tag, one slot, so Lua scripts change them atomically in a cluster too.
 *
 * Protocol (gc safe with concurrent savers on any number of hosts): a save takes a lease
 * (`{ns}:s`, refused while the gc lock is held), writes its missing pages, checks that every page
 * its manifest references exists, and commits the manifest in a script that succeeds only if the
 * lease is still valid. gc takes the lock only when no valid save lease exists, bumps the epoch,
 * marks (every manifest's pages are live), sweeps (SCAN each master, UNLINK the pages not live,
 * re-checking its lock before each batch), then releases the lock and bumps the epoch again.
 * So no page a save relies on can be swept between its check and its commit. A host's local
 * index of pages (hasPage) is a hint: it is trusted at commit only if the epoch has not moved
 * since it was built; otherwise every referenced page is checked again, and a save that relied
 * on a page another host's gc has freed fails with StoreIOError (save again) rather than commit a
 * manifest with a missing page. Lease times come from the Redis server's clock (TIME in the
 * scripts); leases are renewed while held, and a crashed host's lease expires after `leaseMs`.
 */
import { randomBytes } from "node:crypto"
import type { BackendUsage, ContentId, SnapshotBackend, StoredPage } from "./backend.ts"
import { SnapshotCorrupt, StoreIOError, StoreUnavailable } from "./errors.ts"
import { InvalidArgument } from "../index.ts"
import { decodeManifest } from "./manifest.ts"
import { optBool, readOptions, show } from "./options.ts"

/** One Redis server: a single node, or a seed node of a cluster. */
export interface RedisNode {
  readonly host: string
  readonly port: number
}

/** Options of {@link RedisBackend.open}. */
export interface RedisBackendOptions {
  /** The server (one node), or any nodes of the cluster (with `cluster: true`). */
  readonly nodes: readonly RedisNode[]
  /** Connect to a Redis Cluster. @default false */
  readonly cluster?: boolean
  /** Key namespace: several stores may share one Redis under different namespaces. @default "sksm" */
  readonly namespace?: string
  /** Bytes of pages kept in the local LRU cache in front of Redis (0: none). @default 64 MiB */
  readonly cacheBytes?: number
  /** How long a save lease or the gc lock lives without renewal (a crashed host's lease expires). @default 30000 */
  readonly leaseMs?: number
  /** How long a save waits for a gc (and a gc for saves) before StoreUnavailable. @default 120000 */
  readonly waitMs?: number
  /** Password (AUTH), if the servers require one. */
  readonly password?: string
}

const NAMESPACE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/
/** Commands in flight at once (auto-pipelined per node). */
const BATCH = 1024

const NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "

const SCRIPTS = {
  // KEYS: s, l, e. ARGV: saveId, leaseMs. -> epoch, or -1 while a gc holds the lock.
  sksmBegin: { numberOfKeys: 3, lua: `${NOW} if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) return tonumber(redis.call('GET', KEYS[3]) or '0')` },
  // KEYS: s. ARGV: saveId, leaseMs. -> 1 renewed, 0 lost.
  sksmRenew: { numberOfKeys: 1, lua: `${NOW} local s = redis.call('ZSCORE', KEYS[1], ARGV[1]) if not s or tonumber(s) <= now then redis.call('ZREM', KEYS[1], ARGV[1]) return 0 end redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) return 1` },
  // KEYS: s, l, m. ARGV: saveId, name, manifest. -> 1 committed, 0 lease lost.
  sksmCommit: { numberOfKeys: 3, lua: `${NOW} local s = redis.call('ZSCORE', KEYS[1], ARGV[1]) redis.call('ZREM', KEYS[1], ARGV[1]) if not s or tonumber(s) <= now or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end redis.call('HSET', KEYS[3], ARGV[2], ARGV[3]) return 1` },
  // KEYS: s, l, e. ARGV: gcId, leaseMs. -> the new epoch, -1 while saves hold leases, -2 while another gc runs.
  sksmGcBegin: { numberOfKeys: 3, lua: `${NOW} redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) if redis.call('ZCARD', KEYS[1]) > 0 then return -1 end if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return -2 end return redis.call('INCR', KEYS[3])` },
  // KEYS: l. ARGV: gcId, leaseMs. -> 1 renewed, 0 lost.
  sksmGcRenew: { numberOfKeys: 1, lua: `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end return 0` },
  // KEYS: l, e. ARGV: gcId. -> the new epoch.
  sksmGcEnd: { numberOfKeys: 2, lua: `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return redis.call('INCR', KEYS[2])` },
} as const

// The client is typed loosely on purpose: ioredis is an optional peer, its types are not part of
// this module's declarations.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Client = any

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

function io(what: string, cause: unknown): StoreIOError | StoreUnavailable {
  if (cause instanceof StoreIOError || cause instanceof StoreUnavailable) return cause
  const msg = cause instanceof Error ? cause.message : String(cause)
  return new StoreIOError(`redis: ${what}: ${msg}`, { cause })
}

async function loadIoredis(): Promise<{ Redis: Client; Cluster: Client }> {
  try {
    const specifier = "ioredis"
    const m = (await import(specifier)) as { Redis?: Client; Cluster?: Client; default?: Client }
    const Redis = m.Redis ?? m.default
    const Cluster = m.Cluster ?? m.default?.Cluster
    if (Redis === undefined || Cluster === undefined) throw new Error("unexpected ioredis module shape")
    return { Redis, Cluster }
  } catch (cause) {
    throw new StoreUnavailable("RedisBackend needs the ioredis package: npm install ioredis@6", { cause })
  }
}

/**
 * A {@link SnapshotBackend} on Redis (one server or a Redis Cluster), shared by every host that
 * opens it with the same namespace, with a local LRU cache of pages in front.
 *
 * ```ts
 * const backend = await RedisBackend.open({ nodes: [{ host: "10.0.0.5", port: 6379 }] })
 * const store = await SnapshotStore.withBackend(backend)
 * ```
 *
 * Gotchas: each host's store lists the snapshots committed when it opened plus its own, until
 * `store.refresh()` (restore() of another host's snapshot works by name at any time). stats() and gc() scan every
 * page key (O(pages)); saves wait while a gc sweeps. The servers must keep data durably
 * (appendonly) for "durable" to mean what it means for the pack files.
 */
export class RedisBackend implements SnapshotBackend {
  readonly #client: Client
  readonly #cluster: boolean
  readonly #pagePrefix: string
  readonly #k: { h: string; m: string; s: string; l: string; e: string }
  readonly #leaseMs: number
  readonly #waitMs: number
  readonly #cacheBytes: number
  /** Page ids known to exist; accurate as of epoch #indexEpoch (-1: a hint only). */
  #index = new Set<ContentId>()
  #indexEpoch = -1
  readonly #cache = new Map<ContentId, Uint8Array>()
  #cached = 0
  /** The save lease held (between the first putPages of a save and its putManifest). */
  #lease: { id: string; timer: NodeJS.Timeout; lost: boolean } | null = null
  #closed = false

  private constructor(client: Client, cluster: boolean, ns: string, leaseMs: number, waitMs: number, cacheBytes: number) {
    this.#client = client
    this.#cluster = cluster
    this.#pagePrefix = `${ns}:p:`
    const t = `{${ns}}`
    this.#k = { h: `${t}:h`, m: `${t}:m`, s: `${t}:s`, l: `${t}:l`, e: `${t}:e` }
    this.#leaseMs = leaseMs
    this.#waitMs = waitMs
    this.#cacheBytes = cacheBytes
  }

  /** Connect (StoreIOError if no server answers; StoreUnavailable if ioredis is not installed). */
  static async open(options: RedisBackendOptions): Promise<RedisBackend> {
    const where = "RedisBackend.open()"
    const o = readOptions(where, options, ["nodes", "cluster", "namespace", "cacheBytes", "leaseMs", "waitMs", "password"])
    if (!Array.isArray(o.nodes) || o.nodes.length === 0) throw new InvalidArgument(`${where}: nodes must be a non-empty array of { host, port }, got ${show(o.nodes)}`)
    const nodes = (o.nodes as unknown[]).map((n) => {
      const r = readOptions(`${where} nodes[]`, n, ["host", "port"])
      if (typeof r.host !== "string" || r.host.length === 0) throw new InvalidArgument(`${where}: a node's host must be a non-empty string, got ${show(r.host)}`)
      if (typeof r.port !== "number" || !Number.isInteger(r.port) || r.port < 1 || r.port > 65535) throw new InvalidArgument(`${where}: a node's port must be an integer in 1..65535, got ${show(r.port)}`)
      return { host: r.host, port: r.port }
    })
    const cluster = optBool(where, "cluster", o.cluster, false)
    const ns = o.namespace === undefined ? "sksm" : o.namespace
    if (typeof ns !== "string" || !NAMESPACE.test(ns)) throw new InvalidArgument(`${where}: namespace must be 1 to 64 of A-Z a-z 0-9 . _ - not starting with . or -, got ${show(ns)}`)
    const int = (name: string, v: unknown, d: number, min: number): number => {
      if (v === undefined) return d
      if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) throw new InvalidArgument(`${where}: ${name} must be an integer >= ${min}, got ${show(v)}`)
      return v
    }
    const cacheBytes = int("cacheBytes", o.cacheBytes, 64 << 20, 0)
    const leaseMs = int("leaseMs", o.leaseMs, 30_000, 100)
    const waitMs = int("waitMs", o.waitMs, 120_000, 0)
    if (o.password !== undefined && typeof o.password !== "string") throw new InvalidArgument(`${where}: password must be a string`)
    const password = o.password as string | undefined
    const { Redis, Cluster } = await loadIoredis()
    const base = { lazyConnect: true, maxRetriesPerRequest: 2, ...(password === undefined ? {} : { password }) }
    const client: Client = cluster
      ? new Cluster(nodes, { lazyConnect: true, enableAutoPipelining: true, clusterRetryStrategy: (n: number) => (n > 3 ? null : 100 * n), redisOptions: base })
      : new Redis({ ...base, ...nodes[0]!, enableAutoPipelining: true, retryStrategy: (n: number) => (n > 3 ? null : 100 * n) })
    client.on("error", () => undefined) // surfaced through the commands' rejections
    for (const [name, def] of Object.entries(SCRIPTS)) client.defineCommand(name, def)
    const b = new RedisBackend(client, cluster, ns, leaseMs, waitMs, cacheBytes)
    try {
      await client.connect()
      await b.#buildIndex()
    } catch (e) {
      client.disconnect()
      throw io("connect", e)
    }
    return b
  }

  #pageKey(id: ContentId): string {
    return this.#pagePrefix + id
  }

  /** The master connections (one for a single server). */
  #masters(): Client[] {
    return this.#cluster ? this.#client.nodes("master") : [this.#client]
  }

  /** Every page key, node by node (SCAN). */
  async #scanPages(each: (node: Client, keys: string[]) => Promise<void>): Promise<void> {
    for (const node of this.#masters()) {
      let cursor = "0"
      do {
        const [next, keys] = (await node.scan(cursor, "MATCH", `${this.#pagePrefix}*`, "COUNT", 1000)) as [string, string[]]
        cursor = next
        if (keys.length > 0) await each(node, keys)
      } while (cursor !== "0")
    }
  }

  async #epoch(): Promise<number> {
    return Number((await this.#client.get(this.#k.e)) ?? "0")
  }

  async #buildIndex(): Promise<void> {
    const before = await this.#epoch()
    const locked = (await this.#client.exists(this.#k.l)) === 1
    const index = new Set<ContentId>()
    await this.#scanPages(async (_n, keys) => {
      for (const k of keys) index.add(k.slice(this.#pagePrefix.length))
    })
    const after = await this.#epoch()
    this.#index = index
    this.#indexEpoch = !locked && before === after ? after : -1
  }

  #live(): void {
    if (this.#closed) throw new StoreUnavailable("the Redis backend is closed")
  }

  async #all<T, R>(items: readonly T[], f: (x: T) => Promise<R>): Promise<R[]> {
    const out: R[] = []
    for (let i = 0; i < items.length; i += BATCH) out.push(...(await Promise.all(items.slice(i, i + BATCH).map(f))))
    return out
  }

  #remember(id: ContentId, bytes: Uint8Array): void {
    if (this.#cacheBytes === 0 || bytes.length > this.#cacheBytes) return
    this.#forget(id)
    this.#cache.set(id, bytes)
    this.#cached += bytes.length
    for (const [k, v] of this.#cache) {
      if (this.#cached <= this.#cacheBytes) break
      this.#cache.delete(k)
      this.#cached -= v.length
    }
  }

  #forget(id: ContentId): void {
    const old = this.#cache.get(id)
    if (old === undefined) return
    this.#cache.delete(id)
    this.#cached -= old.length
  }

  /** Take a save lease (waiting while a gc runs); a changed epoch makes the local index stale. */
  async #takeLease(): Promise<void> {
    if (this.#lease !== null) return
    const id = randomBytes(12).toString("hex")
    const deadline = Date.now() + this.#waitMs
    let epoch: number
    for (;;) {
      epoch = Number(await this.#client.sksmBegin(this.#k.s, this.#k.l, this.#k.e, id, this.#leaseMs))
      if (epoch >= 0) break
      if (Date.now() >= deadline) throw new StoreUnavailable(`a gc holds the Redis store ${JSON.stringify(this.#k.l)}; a save waited ${this.#waitMs} ms`)
      await sleep(50)
    }
    const lease = {
      id,
      lost: false,
      timer: setInterval(() => {
        this.#client.sksmRenew(this.#k.s, id, this.#leaseMs).then(
          (r: unknown) => {
            if (Number(r) !== 1) lease.lost = true
          },
          () => undefined,
        )
      }, Math.max(50, Math.floor(this.#leaseMs / 3))),
    }
    lease.timer.unref()
    this.#lease = lease
    if (epoch !== this.#indexEpoch) {
      // A gc ran since the index was built: from now on it holds only what this lease confirms.
      this.#index = new Set()
      this.#indexEpoch = epoch
    }
  }

  async #dropLease(): Promise<void> {
    const lease = this.#lease
    if (lease === null) return
    this.#lease = null
    clearInterval(lease.timer)
    try {
      await this.#client.zrem(this.#k.s, lease.id)
    } catch {
      // it expires by itself
    }
  }

  async header(initial: Uint8Array): Promise<Uint8Array> {
    this.#live()
    try {
      await this.#client.set(this.#k.h, Buffer.from(initial), "NX")
      const got = (await this.#client.getBuffer(this.#k.h)) as Buffer | null
      if (got === null) throw new Error("the header vanished")
      return new Uint8Array(got)
    } catch (e) {
      throw io("header", e)
    }
  }

  hasPage(id: ContentId): boolean {
    return this.#index.has(id)
  }

  pageIds(): Iterable<ContentId> {
    return this.#index
  }

  async putPages(pages: readonly StoredPage[]): Promise<void> {
    this.#live()
    try {
      await this.#takeLease()
      const exists = await this.#all(pages, (p) => this.#client.exists(this.#pageKey(p.id)) as Promise<number>)
      const missing = pages.filter((_p, i) => exists[i] !== 1)
      await this.#all(missing, (p) => this.#client.set(this.#pageKey(p.id), Buffer.from(p.bytes.buffer, p.bytes.byteOffset, p.bytes.byteLength), "NX"))
      for (const p of pages) {
        this.#index.add(p.id)
        this.#remember(p.id, p.bytes)
      }
    } catch (e) {
      await this.#dropLease()
      throw io("put pages", e)
    }
  }

  async getPages(ids: readonly ContentId[]): Promise<(Uint8Array | undefined)[]> {
    this.#live()
    const out: (Uint8Array | undefined)[] = new Array(ids.length)
    const fetch: number[] = []
    ids.forEach((id, i) => {
      const c = this.#cache.get(id)
      if (c === undefined) fetch.push(i)
      else {
        this.#cache.delete(id)
        this.#cache.set(id, c)
        out[i] = c
      }
    })
    try {
      const got = await this.#all(fetch, (i) => this.#client.getBuffer(this.#pageKey(ids[i]!)) as Promise<Buffer | null>)
      fetch.forEach((i, j) => {
        const b = got[j]
        if (b === null || b === undefined) return
        const bytes = new Uint8Array(b)
        out[i] = bytes
        this.#remember(ids[i]!, bytes)
      })
    } catch (e) {
      throw io("get pages", e)
    }
    return out
  }

  async retainPages(live: ReadonlySet<ContentId>): Promise<number> {
    this.#live()
    await this.#dropLease()
    const id = randomBytes(12).toString("hex")
    const deadline = Date.now() + this.#waitMs
    let renew: NodeJS.Timeout | undefined
    let held = false
    try {
      for (;;) {
        const r = Number(await this.#client.sksmGcBegin(this.#k.s, this.#k.l, this.#k.e, id, this.#leaseMs))
        if (r >= 0) break
        if (Date.now() >= deadline) throw new StoreUnavailable(`gc waited ${this.#waitMs} ms for ${r === -1 ? "saves in flight" : "another gc"} on the Redis store`)
        await sleep(50)
      }
      held = true
      renew = setInterval(() => void this.#client.sksmGcRenew(this.#k.l, id, this.#leaseMs).catch(() => undefined), Math.max(50, Math.floor(this.#leaseMs / 3)))
      renew.unref()
      // Mark: every committed manifest's pages (and whatever the caller holds) are live.
      const keep = new Set(live)
      const all = (await this.#client.hgetallBuffer(this.#k.m)) as Record<string, Buffer>
      for (const [name, bytes] of Object.entries(all)) {
        try {
          for (const s of decodeManifest(name, new Uint8Array(bytes)).spaces) for (const x of s.ids) keep.add(x)
        } catch (e) {
          if (!(e instanceof SnapshotCorrupt)) throw e
        }
      }
      // Sweep, re-checking the lock before each batch.
      let dropped = 0
      const index = new Set<ContentId>()
      await this.#scanPages(async (node, keys) => {
        const victims: string[] = []
        for (const k of keys) {
          const pid = k.slice(this.#pagePrefix.length)
          if (keep.has(pid)) index.add(pid)
          else victims.push(k)
        }
        if (victims.length === 0) return
        if (Number(await this.#client.sksmGcRenew(this.#k.l, id, this.#leaseMs)) !== 1) throw new StoreIOError("redis: gc lost its lock (lease expired); nothing more was swept")
        const n = await Promise.all(victims.map((k) => node.unlink(k) as Promise<number>))
        for (let i = 0; i < victims.length; i++) {
          dropped += n[i]!
          this.#forget(victims[i]!.slice(this.#pagePrefix.length))
        }
      })
      held = false
      const epoch = Number(await this.#client.sksmGcEnd(this.#k.l, this.#k.e, id))
      // No save could commit during the sweep: the scan is the whole truth as of the new epoch.
      this.#index = index
      this.#indexEpoch = epoch
      return dropped
    } catch (e) {
      throw io("gc", e)
    } finally {
      if (renew !== undefined) clearInterval(renew)
      if (held) await this.#client.sksmGcEnd(this.#k.l, this.#k.e, id).catch(() => undefined)
    }
  }

  async putManifest(name: string, bytes: Uint8Array): Promise<void> {
    this.#live()
    try {
      await this.#takeLease()
      // Every page the manifest references must exist now (the lease keeps them until commit).
      const ids = new Set<ContentId>()
      for (const s of decodeManifest(name, bytes).spaces) for (const id of s.ids) ids.add(id)
      const check = [...ids].filter((id) => !this.#index.has(id))
      const exists = await this.#all(check, (id) => this.#client.exists(this.#pageKey(id)) as Promise<number>)
      const gone = check.filter((_id, i) => exists[i] !== 1)
      for (let i = 0; i < check.length; i++) if (exists[i] === 1) this.#index.add(check[i]!)
      if (gone.length > 0) throw new StoreIOError(`redis: ${gone.length} page(s) snapshot ${JSON.stringify(name)} relies on were freed by a gc on another host (e.g. ${gone[0]}); save it again`)
      if (this.#lease!.lost) throw new StoreIOError(`redis: the save lease of snapshot ${JSON.stringify(name)} expired; save it again`)
      const ok = Number(await this.#client.sksmCommit(this.#k.s, this.#k.l, this.#k.m, this.#lease!.id, name, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)))
      if (ok !== 1) throw new StoreIOError(`redis: the save lease of snapshot ${JSON.stringify(name)} expired before its commit; save it again`)
    } catch (e) {
      throw io("commit manifest", e)
    } finally {
      await this.#dropLease()
    }
  }

  async getManifest(name: string): Promise<Uint8Array | undefined> {
    this.#live()
    try {
      const b = (await this.#client.hgetBuffer(this.#k.m, name)) as Buffer | null
      return b === null ? undefined : new Uint8Array(b)
    } catch (e) {
      throw io("get manifest", e)
    }
  }

  async manifestNames(): Promise<string[]> {
    this.#live()
    try {
      return ((await this.#client.hkeys(this.#k.m)) as string[]).sort()
    } catch (e) {
      throw io("list manifests", e)
    }
  }

  async deleteManifest(name: string): Promise<void> {
    this.#live()
    try {
      await this.#client.hdel(this.#k.m, name)
    } catch (e) {
      throw io("delete manifest", e)
    }
  }

  /** Scans every page key (O(pages)). */
  async usage(): Promise<BackendUsage> {
    this.#live()
    try {
      let pages = 0
      let pageBytes = 0
      await this.#scanPages(async (node, keys) => {
        const lens = await Promise.all(keys.map((k) => node.strlen(k) as Promise<number>))
        for (const n of lens) {
          if (n > 0) pages++
          pageBytes += n
        }
      })
      const names = (await this.#client.hkeys(this.#k.m)) as string[]
      const mlens = await this.#all(names, (n) => this.#client.hstrlen(this.#k.m, n) as Promise<number>)
      const header = Number(await this.#client.strlen(this.#k.h))
      return { pages, pageBytes, totalBytes: pageBytes + header + mlens.reduce((a, n) => a + n, 0) }
    } catch (e) {
      throw io("usage", e)
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#dropLease()
    this.#cache.clear()
    try {
      await this.#client.quit()
    } catch {
      this.#client.disconnect()
    }
  }
}
