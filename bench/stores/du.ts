/** Bytes a directory occupies on disk (allocated blocks, recursively), as `du -s --block-size=1` counts. */
import { lstatSync, readdirSync } from "node:fs"
import { join } from "node:path"

export function duBytes(dir: string): number {
  let total = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    total += e.isDirectory() ? duBytes(p) : lstatSync(p).blocks * 512
  }
  return total
}
