/**
 * Argument checks shared by every public call. Cold code: plain and explicit.
 * Each throws before anything changes.
 */
import { InvalidArgument, OutOfBounds } from "../errors.ts"

/** A safe, non-negative integer or InvalidArgument / OutOfBounds. */
export function checkInt(name: string, value: unknown): number {
  if (typeof value !== "number") throw new InvalidArgument(`${name} must be a number, got ${typeof value}`)
  if (!Number.isSafeInteger(value)) throw new InvalidArgument(`${name} must be a safe integer, got ${String(value)}`)
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
  if ((addr as number) % pageSize !== 0) throw new InvalidArgument(`addr ${String(addr)} is not page-aligned (${pageSize})`)
  if ((length as number) % pageSize !== 0) throw new InvalidArgument(`length ${String(length)} is not a multiple of the page size (${pageSize})`)
}

/** A Uint8Array (any backing buffer), else InvalidArgument. */
export function checkBytes(name: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new InvalidArgument(`${name} must be a Uint8Array`)
  return value
}

/** A boolean, else InvalidArgument. */
export function checkBool(name: string, value: unknown): boolean {
  if (typeof value !== "boolean") throw new InvalidArgument(`${name} must be a boolean, got ${typeof value}`)
  return value
}

/** An integer in [lo, hi], else InvalidArgument. */
export function checkIntIn(name: string, value: unknown, lo: number, hi: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < lo || value > hi) {
    throw new InvalidArgument(`${name} must be an integer from ${lo} to ${hi}, got ${String(value)}`)
  }
  return value
}
