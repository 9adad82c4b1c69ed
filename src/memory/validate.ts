/**
 * Argument checks shared by every public call. Cold code: plain and explicit.
 * Each throws before anything changes.
 */
import { InvalidArgument, OutOfBounds } from "../errors.ts"

/**
 * A value as text for an error message. Never throws: String() itself throws on a view of a
 * detached buffer or an object whose toString throws, and a bad-argument report must not turn
 * into an untyped TypeError.
 */
export function show(value: unknown): string {
  try {
    return String(value)
  } catch {
    return `[unprintable ${typeof value}]`
  }
}

/** A safe, non-negative integer or InvalidArgument / OutOfBounds. */
export function checkInt(name: string, value: unknown): number {
  if (typeof value !== "number") throw new InvalidArgument(`${name} must be a number, got ${typeof value}`)
  if (!Number.isSafeInteger(value)) throw new InvalidArgument(`${name} must be a safe integer, got ${show(value)}`)
  if (value < 0) throw new OutOfBounds(`${name} must not be negative, got ${value}`)
  return value
}

/** `[addr, addr+length)` lies inside `[0, size)`. */
export function checkRange(addr: unknown, length: unknown, size: number): void {
  const a = checkInt("addr", addr)
  const l = checkInt("length", length)
  if (a > size || l > size - a) throw new OutOfBounds(`range [${a}, ${a + l}) exceeds the space size ${size}`)
}

/** Page-aligned range, as madvise and UFFDIO_WRITEPROTECT require. */
export function checkAlignedRange(addr: unknown, length: unknown, size: number, pageSize: number): void {
  checkRange(addr, length, size)
  if ((addr as number) % pageSize !== 0) throw new InvalidArgument(`addr ${show(addr)} is not page-aligned (${pageSize})`)
  if ((length as number) % pageSize !== 0) throw new InvalidArgument(`length ${show(length)} is not a multiple of the page size (${pageSize})`)
}

/**
 * A Uint8Array (ArrayBuffer or SharedArrayBuffer backed; Buffer included), else
 * InvalidArgument. A view whose buffer was detached (transferred) reads as length 0; it is
 * refused rather than treated as an empty range, since using one is always a caller's bug.
 */
export function checkBytes(name: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new InvalidArgument(`${name} must be a Uint8Array`)
  if (value.byteLength === 0 && isDetached(value)) throw new InvalidArgument(`${name} is a view of a detached ArrayBuffer`)
  return value
}

/** A zero-length view is detached when its buffer can no longer be viewed (Node 20 has no `detached` getter). */
function isDetached(view: Uint8Array): boolean {
  if (view.buffer.byteLength !== 0) return false
  try {
    new Uint8Array(view.buffer)
    return false
  } catch {
    return true
  }
}

/** A boolean, else InvalidArgument. */
export function checkBool(name: string, value: unknown): boolean {
  if (typeof value !== "boolean") throw new InvalidArgument(`${name} must be a boolean, got ${typeof value}`)
  return value
}

/** An integer in [lo, hi], else InvalidArgument. */
export function checkIntIn(name: string, value: unknown, lo: number, hi: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < lo || value > hi) {
    throw new InvalidArgument(`${name} must be an integer from ${lo} to ${hi}, got ${show(value)}`)
  }
  return value
}
