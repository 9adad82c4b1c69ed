/**
 * Per-page compressors measured by bench/snapshot-stores.ts: each takes and returns one buffer
 * per page, as a compressing page store would call it. deflate: node:zlib; zstd:
 * @mongodb-js/zstd (async only); lz4: lz4-napi (devDependencies, never runtime ones).
 */
import { compress as zstdCompress, decompress as zstdDecompress } from "@mongodb-js/zstd"
import { compressSync as lz4Compress, uncompressSync as lz4Uncompress } from "lz4-napi"
import { deflateRawSync, inflateRawSync } from "node:zlib"

export interface Codec {
  readonly name: string
  compress(pages: readonly Buffer[]): Promise<Buffer[]>
  decompress(packed: readonly Buffer[]): Promise<Buffer[]>
}

/** Run an async per-page call over `xs`, `window` calls in flight. */
async function windowed(xs: readonly Buffer[], window: number, f: (x: Buffer) => Promise<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = []
  for (let i = 0; i < xs.length; i += window) out.push(...(await Promise.all(xs.slice(i, i + window).map(f))))
  return out
}

const sync = (name: string, c: (p: Buffer) => Buffer, d: (p: Buffer) => Buffer): Codec => ({
  name,
  compress: async (pages) => pages.map(c),
  decompress: async (packed) => packed.map(d),
})

export const CODECS: readonly Codec[] = [
  sync("none", (p) => p, (p) => p),
  sync("deflate level 1 (node:zlib)", (p) => deflateRawSync(p, { level: 1 }), (p) => inflateRawSync(p)),
  sync("deflate level 6 (node:zlib)", (p) => deflateRawSync(p, { level: 6 }), (p) => inflateRawSync(p)),
  { name: "zstd level 3 (@mongodb-js/zstd)", compress: (pages) => windowed(pages, 256, (p) => zstdCompress(p, 3)), decompress: (packed) => windowed(packed, 256, (p) => zstdDecompress(p)) },
  sync("lz4 (lz4-napi)", (p) => lz4Compress(p), (p) => lz4Uncompress(p)),
]
