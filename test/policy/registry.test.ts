/**
 * The policy registry: everything that depends on the set of policies is derived from it (the
 * names, option validation, defaults, the Effect configuration schema), so a policy's own
 * options are accepted for that policy, refused for the others with a message naming the
 * owner, and reach the Effect layer without being listed anywhere else.
 */
import { ConfigProvider, Effect, Layer } from "effect"
import { describe, expect, it } from "vitest"
import { KsmdConfig } from "../../src/effect.ts"
import { DEFAULT_TUNABLES, POLICIES, POLICY_NAMES, resolveScannerOptions } from "../../src/policy/registry.ts"
import { COMMON_KEYS } from "../../src/policy/options.ts"
import { Ksmd, SksmEngine } from "../../src/effect.ts"
import { Engine } from "../helpers/internals.ts"

describe("policy registry", () => {
  it("names every policy, default first, and builds each one through engine.scanner", () => {
    expect(POLICY_NAMES).toEqual(Object.keys(POLICIES))
    expect(POLICY_NAMES[0]).toBe("ksm")
    const engine = new Engine()
    for (const name of POLICY_NAMES) expect(engine.scanner({ policy: name }).policy).toBe(name)
    expect(() => engine.scanner({ policy: "ksmd" as never })).toThrow(/policy must be one of "ksm", "tracked"/)
  })

  it("defaults come from the common tunables and every policy's own option specs", () => {
    for (const name of POLICY_NAMES) {
      for (const [key, spec] of Object.entries(POLICIES[name].options)) expect((DEFAULT_TUNABLES as Record<string, unknown>)[key]).toBe(spec.default)
    }
    for (const key of COMMON_KEYS) expect(DEFAULT_TUNABLES).toHaveProperty(key)
  })

  it("a policy's own option is validated by its spec, refused for other policies, and fixed ones refused by set()", () => {
    for (const name of POLICY_NAMES) {
      for (const [key, spec] of Object.entries(POLICIES[name].options as Record<string, { kind: string; min?: number; max?: number; fixed?: boolean }>)) {
        if (spec.kind !== "int") continue
        expect(() => resolveScannerOptions({ policy: name, [key]: spec.max! + 1 })).toThrow(new RegExp(`${key} must be an integer from ${spec.min} to ${spec.max}`))
        expect(resolveScannerOptions({ policy: name, [key]: spec.min }).params.own).toMatchObject({ [key]: spec.min })
        for (const other of POLICY_NAMES.filter((n) => n !== name)) {
          expect(() => resolveScannerOptions({ policy: other, [key]: spec.min })).toThrow(`${key} applies to the "${name}" policy only`)
        }
        const ksmd = new Engine().scanner({ policy: name })
        if (spec.fixed === true) expect(() => ksmd.set({ [key]: spec.min })).toThrow(`${key} is fixed when the scanner is created`)
        else {
          ksmd.set({ [key]: spec.min })
          expect(ksmd.tunables[key]).toBe(spec.min)
        }
      }
    }
  })

  it("the Effect configuration schema carries every policy's own options, validated by the same specs", async () => {
    const fields = Object.keys((KsmdConfig as unknown as { fields: Record<string, unknown> }).fields ?? {})
    for (const name of POLICY_NAMES) for (const key of Object.keys(POLICIES[name].options)) expect(fields).toContain(key)
    const engine = new Engine()
    const provider = ConfigProvider.fromUnknown({ ksmd: { run: false, policy: "tracked", stablePasses: 3, rangePages: 16 } })
    const tunables = await Effect.runPromise(
      Effect.gen(function*() {
        const ksmd = yield* Ksmd
        return yield* ksmd.tunables
      }).pipe(Effect.provide(Ksmd.layer.pipe(Layer.provide(SksmEngine.fromEngine(engine)), Layer.provide(ConfigProvider.layer(provider))))),
    )
    expect(tunables).toMatchObject({ stablePasses: 3, rangePages: 16 })
  })
})
