/** Asserting what a call throws. */
import { expect } from "vitest"

/** What `fn` threw; fails the test if it returned. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (e) {
    return e
  }
  return expect.unreachable("expected a throw")
}

/** `fn` throws an Error tagged `tag` (an SksmError's _tag). */
export function expectTag(fn: () => unknown, tag: string): void {
  const e = thrown(fn)
  expect(e, `expected ${tag}`).toBeInstanceOf(Error)
  expect((e as { _tag?: string })._tag).toBe(tag)
}
