/** Manifests: round trip, and every kind of damage is SnapshotCorrupt. */
import { describe, expect, it } from "vitest"
import { SnapshotCorrupt } from "../../src/snapshot/index.ts"
import { decodeManifest, encodeManifest, type Manifest } from "../../src/snapshot/manifest.ts"

const m: Manifest = {
  name: "snap",
  createdAt: "2026-01-01T00:00:00.000Z",
  pageSize: 4096,
  meta: { a: [1, "x"] },
  spaces: [
    { name: "one", domain: "d", scope: "d", size: 8 * 4096, mergeAny: true, pages: Uint32Array.from([0, 3, 7]), ids: ["00".repeat(16), "ab".repeat(16), "0123456789abcdef".repeat(2)] },
    { name: "two", domain: "e", scope: "*", size: 4096, mergeAny: false, pages: new Uint32Array(0), ids: [] },
  ],
}

describe("manifest", () => {
  it("round-trips", () => {
    expect(decodeManifest("snap", encodeManifest(m))).toEqual(m)
  })

  it("detects a flipped byte anywhere, truncation, and a manifest of another name", () => {
    const bytes = encodeManifest(m)
    for (let i = 0; i < bytes.length; i += 7) {
      const b = bytes.slice()
      b[i]! ^= 0x40
      expect(() => decodeManifest("snap", b)).toThrow(SnapshotCorrupt)
    }
    expect(() => decodeManifest("snap", bytes.subarray(0, bytes.length - 1))).toThrow(SnapshotCorrupt)
    expect(() => decodeManifest("other", bytes)).toThrow(/names another snapshot/)
  })
})
