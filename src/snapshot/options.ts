/**
 * The snapshot layer's input checks (it sees the engine only through the public API, so it has
 * its own): an options object is read once, field by field, into a plain copy; unknown keys are
 * refused (a typo must not pass silently). Every failure is the engine's InvalidArgument.
 */
import { InvalidArgument } from "../index.ts"

/** Read `options` once into a frozen copy holding only `keys`; undefined reads as {}. */
export function readOptions<K extends string>(where: string, options: unknown, keys: readonly K[]): Readonly<Partial<Record<K, unknown>>> {
  if (options === undefined) return Object.freeze({}) as Readonly<Partial<Record<K, unknown>>>
  if (typeof options !== "object" || options === null || Array.isArray(options)) throw new InvalidArgument(`${where}: options must be an object, got ${show(options)}`)
  const own = Object.keys(options)
  const unknown = own.filter((k) => !(keys as readonly string[]).includes(k))
  if (unknown.length > 0) throw new InvalidArgument(`${where}: unknown option ${JSON.stringify(unknown[0])} (known: ${keys.join(", ")})`)
  const out: Partial<Record<K, unknown>> = {}
  for (const k of own) out[k as K] = (options as Record<string, unknown>)[k]
  return Object.freeze(out)
}

/** A short description of a value for error messages. */
export function show(x: unknown): string {
  if (typeof x === "string") return JSON.stringify(x.length > 40 ? `${x.slice(0, 40)}...` : x)
  if (typeof x === "bigint") return `${x}n`
  if (x === null || typeof x !== "object") return String(x)
  return Array.isArray(x) ? "an array" : "an object"
}

/** `value` if it is a boolean, `fallback` if undefined, else InvalidArgument. */
export function optBool(where: string, name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== "boolean") throw new InvalidArgument(`${where}: ${name} must be a boolean, got ${show(value)}`)
  return value
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/

/** A snapshot name: 1 to 128 of A-Z a-z 0-9 . _ -, not starting with "." or "-" (it names a file). */
export function checkName(where: string, name: unknown): string {
  if (typeof name !== "string" || !NAME.test(name)) throw new InvalidArgument(`${where}: a snapshot name is 1 to 128 characters of A-Z a-z 0-9 . _ - not starting with . or -, got ${show(name)}`)
  return name
}
