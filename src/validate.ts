/**
 * Validation: the one module every layer checks its arguments with. Cold code, plain and explicit;
 * each check throws a typed error before anything changes.
 *
 * The caller's objects are untrusted. The rules, applied everywhere:
 * - Numbers are tested with `typeof` before any arithmetic, so a BigInt, Symbol or object with a
 *   `valueOf` is refused without running the caller's code.
 * - Byte arrays are read through the intrinsic TypedArray accessors (captured at load time, so a
 *   later change to the prototypes cannot reach them) into a private view: a lying `length`, a
 *   replaced `subarray`, a Proxy or an object that only inherits from Uint8Array.prototype is
 *   refused or ignored, and no method of the caller's object is ever called.
 * - Options objects are read exactly once, key by key, into a frozen snapshot that is validated
 *   and then used alone; unknown keys are refused with the nearest valid one. A getter or Proxy
 *   trap of the caller's that throws while being read is wrapped in InvalidArgument (its error as
 *   `cause`); nothing has changed at that point.
 */
import { InvalidArgument, OutOfBounds } from "./errors.ts"

// Intrinsics, captured once (prototype poisoning after load cannot redirect them).
const U8 = Uint8Array
const apply = Reflect.apply
const ownKeys = Object.keys
const freeze = Object.freeze
const isArray = Array.isArray
const TypedArrayProto = Object.getPrototypeOf(Uint8Array.prototype) as object
const getter = (proto: object, key: PropertyKey): ((this: unknown) => unknown) => Object.getOwnPropertyDescriptor(proto, key)!.get!
const taTag = getter(TypedArrayProto, Symbol.toStringTag)
const taBuffer = getter(TypedArrayProto, "buffer")
const taByteOffset = getter(TypedArrayProto, "byteOffset")
const taByteLength = getter(TypedArrayProto, "byteLength")

/**
 * A value as text for an error message. Never throws and never runs the caller's code for
 * objects (String() would call toString, and throws on some values).
 */
export function show(value: unknown): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value)
    case "number":
    case "boolean":
    case "undefined":
      return String(value)
    case "bigint":
      return `${value}n`
    case "symbol":
      return "a symbol"
    case "function":
      return "a function"
    default:
      return value === null ? "null" : isArrayish(value) ? "an array" : "an object"
  }
}

/** Array.isArray that never throws (it throws on a revoked Proxy). */
function isArrayish(value: unknown): boolean {
  try {
    return isArray(value)
  } catch {
    return false
  }
}

/** A safe, non-negative integer or InvalidArgument / OutOfBounds. */
export function checkInt(name: string, value: unknown): number {
  if (typeof value !== "number") throw new InvalidArgument(`${name} must be a number, got ${typeof value}`)
  if (!Number.isSafeInteger(value)) throw new InvalidArgument(`${name} must be a safe integer, got ${show(value)}`)
  if (value < 0) throw new OutOfBounds(`${name} must not be negative, got ${value}`)
  return value
}

/** An integer in [lo, hi], else InvalidArgument. */
export function checkIntIn(name: string, value: unknown, lo: number, hi: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < lo || value > hi) {
    throw new InvalidArgument(`${name} must be an integer from ${lo} to ${hi}, got ${show(value)}`)
  }
  return value
}

/** A boolean, else InvalidArgument. */
export function checkBool(name: string, value: unknown): boolean {
  if (typeof value !== "boolean") throw new InvalidArgument(`${name} must be a boolean, got ${typeof value}`)
  return value
}

/** A non-empty string, else InvalidArgument. */
export function checkName(name: string, value: unknown): string {
  if (typeof value !== "string" || value.length === 0) throw new InvalidArgument(`${name} must be a non-empty string, got ${show(value)}`)
  return value
}

/** `[addr, addr+length)` lies inside `[0, size)`; returns `length`. */
export function checkRange(addr: unknown, length: unknown, size: number): number {
  const a = checkInt("addr", addr)
  const l = checkInt("length", length)
  if (a > size || l > size - a) throw new OutOfBounds(`range [${a}, ${a + l}) exceeds the space size ${size}`)
  return l
}

/**
 * `[addr, addr+length)` inside the space, `length` defaulting to the rest of the space. The
 * default is computed only once `addr` is known to be a valid offset (a parameter default
 * `size - addr` would coerce whatever the caller passed). Returns the length.
 */
export function checkRangeToEnd(addr: unknown, length: unknown, size: number): number {
  const a = checkInt("addr", addr)
  if (a > size) throw new OutOfBounds(`addr ${a} is beyond the space size ${size}`)
  return checkRange(a, length === undefined ? size - a : length, size)
}

/** Page-aligned range, as madvise and UFFDIO_WRITEPROTECT require. */
export function checkAlignedRange(addr: unknown, length: unknown, size: number, pageSize: number): void {
  checkRange(addr, length, size)
  if ((addr as number) % pageSize !== 0) throw new InvalidArgument(`addr ${show(addr)} is not page-aligned (${pageSize})`)
  if ((length as number) % pageSize !== 0) throw new InvalidArgument(`length ${show(length)} is not a multiple of the page size (${pageSize})`)
}

/**
 * A Uint8Array (a Buffer is one; ArrayBuffer or SharedArrayBuffer backed), returned as a private
 * view of the same bytes made from the intrinsic accessors: the caller's own `length`,
 * `subarray` or any other property is never read or called. Proxies and objects that only
 * inherit from Uint8Array.prototype are InvalidArgument. A view of a detached (transferred)
 * buffer is refused rather than read as empty: using one is always a caller's bug.
 */
export function checkBytes(name: string, value: unknown): Uint8Array {
  // The toStringTag getter answers "Uint8Array" only for a real Uint8Array (brand check).
  if (typeof value !== "object" || value === null || apply(taTag, value, []) !== "Uint8Array") {
    throw new InvalidArgument(`${name} must be a Uint8Array`)
  }
  const buffer = apply(taBuffer, value, []) as ArrayBufferLike
  const offset = apply(taByteOffset, value, []) as number
  const length = apply(taByteLength, value, []) as number
  if (length === 0) {
    try {
      return new U8(buffer, offset, 0)
    } catch {
      throw new InvalidArgument(`${name} is a view of a detached ArrayBuffer`)
    }
  }
  return new U8(buffer, offset, length)
}

/** Levenshtein distance, case-insensitive (cold; option names are short). */
function distance(a: string, b: string): number {
  const x = a.toLowerCase()
  const y = b.toLowerCase()
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j)
  for (let i = 1; i <= x.length; i++) {
    const cur = [i]
    for (let j = 1; j <= y.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (x[i - 1] === y[j - 1] ? 0 : 1))
    prev = cur
  }
  return prev[y.length]!
}

/** The valid name nearest to `key`. */
export function nearest(key: string, valid: readonly string[]): string | undefined {
  let best: string | undefined
  let bestD = Number.POSITIVE_INFINITY
  for (const v of valid) {
    const d = distance(key, v)
    if (d < bestD) {
      bestD = d
      best = v
    }
  }
  return best
}

/** What {@link readOptions} does with a key it does not know. */
export interface ReadOptionsRules {
  /** Explain a key that is valid elsewhere (e.g. another policy's tunable); undefined: unknown. */
  readonly explain?: (key: string) => string | undefined
}

/**
 * Read an options object once into a frozen snapshot of `keys`. `value` undefined reads as `{}`.
 * Unknown own keys are InvalidArgument naming the nearest valid key ("unknown option 'pagesize'
 * of X; did you mean 'pageSize'?"). Each known key is read exactly once; the snapshot holds only
 * keys whose value is not undefined. A throwing getter or Proxy trap becomes InvalidArgument.
 */
export function readOptions(what: string, value: unknown, keys: readonly string[], rules: ReadOptionsRules = {}): Readonly<Record<string, unknown>> {
  if (value === undefined) return freeze({})
  if (typeof value !== "object" || value === null || isArrayish(value)) {
    throw new InvalidArgument(`${what} must be an object { ${keys.join(", ")} }, got ${show(value)}`)
  }
  const obj = value as Record<string, unknown>
  let own: string[]
  try {
    own = ownKeys(obj)
  } catch (cause) {
    throw new InvalidArgument(`${what}: listing its keys threw (${errorText(cause)})`, { cause })
  }
  for (const k of own) {
    if (keys.includes(k)) continue
    const why = rules.explain?.(k)
    if (why !== undefined) throw new InvalidArgument(why)
    throw new InvalidArgument(`unknown option '${k}' of ${what}; did you mean '${nearest(k, keys)}'?`)
  }
  const out: Record<string, unknown> = {}
  for (const k of keys) {
    let v: unknown
    try {
      v = obj[k]
    } catch (cause) {
      throw new InvalidArgument(`${what}: reading option '${k}' threw (${errorText(cause)})`, { cause })
    }
    if (v !== undefined) out[k] = v
  }
  return freeze(out)
}

/**
 * An array of non-empty strings, copied once (its length and each element read exactly once).
 * A Proxy's throwing trap becomes InvalidArgument.
 */
export function readStringArray(name: string, value: unknown): readonly string[] {
  if (!isArrayish(value)) throw new InvalidArgument(`${name} must be an array of non-empty strings, got ${show(value)}`)
  const out: string[] = []
  try {
    const n = (value as unknown[]).length
    for (let i = 0; i < n; i++) out.push((value as unknown[])[i] as string)
  } catch (cause) {
    throw new InvalidArgument(`${name}: reading it threw (${errorText(cause)})`, { cause })
  }
  for (const d of out) if (typeof d !== "string" || d.length === 0) throw new InvalidArgument(`${name} must be an array of non-empty strings, got an element ${show(d)}`)
  return freeze(out)
}

/** A caller's function, else InvalidArgument. */
export function checkFunction(name: string, value: unknown): (...args: never[]) => unknown {
  if (typeof value !== "function") throw new InvalidArgument(`${name} must be a function, got ${show(value)}`)
  return value as (...args: never[]) => unknown
}

/** The message of something the caller's code threw, without running more of its code. */
export function errorText(e: unknown): string {
  let isError = false
  try {
    isError = e instanceof Error
  } catch {
    // A revoked Proxy throws on instanceof.
  }
  if (isError) {
    try {
      const m = Object.getOwnPropertyDescriptor(e, "message")?.value
      return typeof m === "string" ? m : show(e)
    } catch {
      return show(e)
    }
  }
  return show(e)
}
