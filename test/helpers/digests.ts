/** The offload protocol's invariant, checked from outside: no digest the host would use is stale. */
import { ZERO_FRAME } from "../../src/memory/frames.ts"
import type { AddressSpace, Engine } from "./internals.ts"

/**
 * Every digest the host would use (core.digested) for a page of `spaces` equals a fresh hash of
 * its frame's bytes, its zero flag says exactly whether the frame is all zeros, and its equality
 * certificate, when the host would take it, names a frame with the same bytes. Returns the first page whose digest is stale, as text, or null.
 */
export function staleDigest(engine: Engine, spaces: Iterable<AddressSpace>): string | null {
  const { pool, core } = engine
  const d = pool.digests
  if (d === null) return "digests are off while an offloading scanner is the engine's"
  const wpp = pool.pageSize >>> 2
  for (const space of spaces) {
    for (let p = 0; p < space.pages; p++) {
      const f = space.frameAt(p)
      if (f === ZERO_FRAME || !core.digested(f)) continue
      if (d.sum[f] !== core.checksum(pool.words, f * wpp, wpp) || d.key[f] !== core.key(pool.words, f * wpp, wpp)) return `${space.name}[${p}] (frame ${f}): a stale digest passes as valid`
      if (d.zero[f] !== (pool.isZero(f) ? 1 : 0)) return `${space.name}[${p}] (frame ${f}): the zero flag says ${d.zero[f]}, the bytes say otherwise`
      // A certificate the host would take (its frame's generation is the one it names) names equal bytes.
      const r = d.rep[f]! - 1
      if (r >= 0 && r < pool.writeGen!.length && d.repGen[f] === pool.writeGen![r] && pool.compare(f, r) !== 0) return `${space.name}[${p}] (frame ${f}): a certificate says it equals frame ${r}, the bytes differ`
    }
  }
  return null
}
