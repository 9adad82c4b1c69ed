/**
 * The manifest of one snapshot: which content id each non-zero page of each space has (zero pages
 * are implicit), plus the spaces' shapes and the caller's metadata. Binary, checksummed:
 *
 * `"SKSMSNP1" | u32 jsonLength | JSON header | per space: u32 count, count x (u32 page | 16-byte id) | SHA-256 of all before`
 *
 * The JSON header is `{ version: 1, name, createdAt, pageSize, meta, spaces: [{ name, domain,
 * scope, size, mergeAny }] }`. Pages are listed in ascending order.
 */
import { createHash } from "node:crypto"
import { type ContentId, idFromBytes, idToBytes } from "./backend.ts"
import { SnapshotCorrupt } from "./errors.ts"

const MAGIC = new TextEncoder().encode("SKSMSNP1")
const VERSION = 1
const ENTRY = 20
const DIGEST = 32

/** One space of a snapshot. */
export interface ManifestSpace {
  readonly name: string
  readonly domain: string
  /** The dedup scope its content ids were keyed with (its domain, or "*" across domains). */
  readonly scope: string
  readonly size: number
  readonly mergeAny: boolean
  /** Non-zero pages, ascending. */
  readonly pages: Uint32Array
  /** Content id of each page of `pages`. */
  readonly ids: readonly ContentId[]
}

/** A decoded manifest. */
export interface Manifest {
  readonly name: string
  readonly createdAt: string
  readonly pageSize: number
  /** The caller's metadata (JSON). */
  readonly meta: unknown
  readonly spaces: readonly ManifestSpace[]
}

/** Encode a manifest (bytes to commit). */
export function encodeManifest(m: Manifest): Uint8Array {
  const json = new TextEncoder().encode(
    JSON.stringify({
      version: VERSION,
      name: m.name,
      createdAt: m.createdAt,
      pageSize: m.pageSize,
      meta: m.meta,
      spaces: m.spaces.map((s) => ({ name: s.name, domain: s.domain, scope: s.scope, size: s.size, mergeAny: s.mergeAny })),
    }),
  )
  let total = MAGIC.length + 4 + json.length + DIGEST
  for (const s of m.spaces) total += 4 + s.pages.length * ENTRY
  const out = new Uint8Array(total)
  const v = new DataView(out.buffer)
  out.set(MAGIC, 0)
  v.setUint32(MAGIC.length, json.length, true)
  out.set(json, MAGIC.length + 4)
  let at = MAGIC.length + 4 + json.length
  for (const s of m.spaces) {
    v.setUint32(at, s.pages.length, true)
    at += 4
    for (let i = 0; i < s.pages.length; i++) {
      v.setUint32(at, s.pages[i]!, true)
      idToBytes(s.ids[i]!, out, at + 4)
      at += ENTRY
    }
  }
  out.set(createHash("sha256").update(out.subarray(0, at)).digest(), at)
  return out
}

const isInt = (x: unknown, min: number): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= min

/** Decode and verify a manifest; SnapshotCorrupt (space and page -1) if anything is off. */
export function decodeManifest(name: string, bytes: Uint8Array): Manifest {
  const bad = (why: string): never => {
    throw new SnapshotCorrupt(name, -1, -1, `manifest ${why}`)
  }
  if (bytes.length < MAGIC.length + 4 + DIGEST) bad("is truncated")
  for (let i = 0; i < MAGIC.length; i++) if (bytes[i] !== MAGIC[i]) bad("has a wrong magic number")
  const body = bytes.subarray(0, bytes.length - DIGEST)
  const digest = createHash("sha256").update(body).digest()
  for (let i = 0; i < DIGEST; i++) if (digest[i] !== bytes[body.length + i]) bad("fails its checksum")
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const jsonLength = v.getUint32(MAGIC.length, true)
  let at = MAGIC.length + 4 + jsonLength
  if (at > body.length) bad("is truncated")
  let head: Record<string, unknown>
  try {
    head = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(MAGIC.length + 4, at))) as Record<string, unknown>
  } catch {
    return bad("has an unreadable header")
  }
  if (head["version"] !== VERSION) bad(`has version ${String(head["version"])}, this sksm reads ${VERSION}`)
  if (head["name"] !== name) bad(`names another snapshot (${JSON.stringify(head["name"])})`)
  const pageSize = head["pageSize"]
  if (!isInt(pageSize, 1)) return bad("has no page size")
  if (!Array.isArray(head["spaces"])) return bad("lists no spaces")
  const spaces: ManifestSpace[] = []
  for (const raw of head["spaces"] as unknown[]) {
    const s = raw as Record<string, unknown>
    if (typeof s["name"] !== "string" || typeof s["domain"] !== "string" || typeof s["scope"] !== "string" || !isInt(s["size"], pageSize) || s["size"] % pageSize !== 0 || typeof s["mergeAny"] !== "boolean") bad("has a malformed space")
    if (at + 4 > body.length) bad("is truncated")
    const count = v.getUint32(at, true)
    at += 4
    if (at + count * ENTRY > body.length) bad("is truncated")
    const pages = new Uint32Array(count)
    const ids: ContentId[] = new Array(count)
    const limit = (s["size"] as number) / pageSize
    for (let i = 0; i < count; i++) {
      const p = v.getUint32(at, true)
      if (p >= limit || (i > 0 && p <= pages[i - 1]!)) bad("lists pages out of order or out of range")
      pages[i] = p
      ids[i] = idFromBytes(bytes, at + 4)
      at += ENTRY
    }
    spaces.push({ name: s["name"] as string, domain: s["domain"] as string, scope: s["scope"] as string, size: s["size"] as number, mergeAny: s["mergeAny"] as boolean, pages, ids })
  }
  if (at !== body.length) bad("has trailing bytes")
  return { name, createdAt: String(head["createdAt"]), pageSize, meta: head["meta"], spaces }
}
