/**
 * The engine as tests, benchmarks and tools of this repository see it: the public Engine with
 * its internals opened (through `_internals`, never through the package's API). Every space it
 * hands out is typed as the implementation (page table, flags, frame pool), which the
 * invariant checks read.
 */
import { _internals, Engine as PublicEngine, type EngineOptions } from "../../src/engine/engine.ts"
import type { MergeCore } from "../../src/core/merge.ts"
import type { FramePool } from "../../src/memory/frames.ts"
import type { SpaceOptions } from "../../src/memory/space.ts"
import type { MergeableSpace } from "../../src/space/mergeable-space.ts"
import type { OptionSpecs } from "../../src/policy/options.ts"
import type { ScannerOptions } from "../../src/policy/registry.ts"
import type { Scanner as PublicScanner, ScannerBase, Slot } from "../../src/policy/scanner.ts"

/** A scanner with its engine-side interface (counters, rmap items) visible. */
export type Scanner = ScannerBase<Slot, OptionSpecs> & PublicScanner

export type { MergeableSpace as AddressSpace } from "../../src/space/mergeable-space.ts"
export type { EngineOptions } from "../../src/engine/engine.ts"

/** The public Engine, plus read access to its frame pool and merge core. */
export class Engine extends PublicEngine {
  constructor(options?: EngineOptions) {
    super(options)
  }
  get pool(): FramePool {
    return _internals(this).pool
  }
  get core(): MergeCore {
    return _internals(this).core
  }
  override createSpace(options: SpaceOptions): MergeableSpace {
    return super.createSpace(options) as MergeableSpace
  }
  override scanner(options?: ScannerOptions): Scanner {
    return super.scanner(options) as Scanner
  }
  override spaces(): readonly MergeableSpace[] {
    return super.spaces() as readonly MergeableSpace[]
  }
}
