/** Asserting what a call throws, and that a refused call changed nothing. */
import { expect } from "vitest"
import { SksmError } from "../../src/errors.ts"
import type { Engine } from "./internals.ts"
import { checkCounters } from "./recount.ts"

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

/** Everything observable of an engine: contents of every space, stats, memory, ksm_stat, pins. */
export function observe(engine: Engine): unknown {
  return {
    contents: engine.spaces().map((s) => Buffer.from(s.read(0, s.size)).toString("base64")),
    stats: engine.stats(),
    memory: engine.memory(),
    ksm: engine.spaces().map((s) => s.ksmStat()),
    pins: engine.spaces().map((s) => s.pinnedPages),
  }
}

/** `fn` throws a typed error tagged `tag` (any SksmError when null), and nothing observable changes. */
export function rejects(engine: Engine, tag: string | null, fn: () => unknown): void {
  const before = observe(engine)
  if (tag === null) expect(thrown(fn)).toBeInstanceOf(SksmError)
  else expectTag(fn, tag)
  expect(observe(engine), `a refused call (${tag ?? "any error"}) changed state`).toEqual(before)
  checkCounters(engine)
}
