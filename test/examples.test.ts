/** The programs in examples/ run as their headers say and print what they promise. */
import { describe, expect, it } from "vitest"
import { run } from "./helpers/spawn.ts"

/** Run an example as its header says: npx tsx examples/<name>.ts */
const example = (name: string, env: Record<string, string> = {}) => run("npx", ["tsx", `examples/${name}.ts`], env)

/** stderr minus npm's own configuration warnings. */
const errors = (stderr: string) => stderr.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("npm warn"))

const num = (s: string | undefined) => Number((s ?? "NaN").replace(/,/g, ""))

describe.concurrent("examples run and print what they promise", () => {
  it("jit-host: merges each module's range, then patches unshare only the written pages", async () => {
    const r = await example("jit-host")
    expect(errors(r.stderr)).toEqual([])
    expect(r.code).toBe(0)
    // 6 isolates x 320 code pages: 5 of 6 copies of every code page merge away.
    expect(r.stdout).toMatch(/saved: 1600 pages/)
    expect(r.stdout).toMatch(/patched 3 stdlib pages in isolates 0 and 1: 6 copy-on-write faults/)
    expect(r.stdout).toMatch(/saved: 1594 pages \(was 1600\)/)
    expect(r.stdout).toMatch(/isolate-0 0xe8, isolate-2 0x(?!e8)/)
  })

  it("wasm-hibernate: a QuickJS instance resumes byte-exact and carries on", async () => {
    const r = await example("wasm-hibernate")
    expect(errors(r.stderr)).toEqual([])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/byte-exact: yes/)
    expect(r.stdout).toMatch(/state\.counter\(\) = 43 \(expected 43\)/)
    expect(r.stdout).toMatch(/balance = 123/)
    expect(r.stdout).toMatch(/^OK: /m)
  })

  it("hibernate-to-disk: a fleet saved by a process that is then killed resumes from disk in another", async () => {
    const r = await example("hibernate-to-disk", { FLEET: "3" })
    expect(errors(r.stderr)).toEqual([])
    expect(r.code).toBe(0)
    const saver = /\[saver pid (\d+)\] hibernated 3 interpreters: 48\.0 MiB of linear memory, (\d+) non-zero pages, (\d+) distinct pages written/.exec(r.stdout)
    expect(saver).not.toBeNull()
    // The framework is stored once for the fleet.
    expect(Number(saver![3])).toBeLessThan(0.75 * Number(saver![2]))
    expect(r.stdout).toMatch(/saver process ended: SIGKILL/)
    const resumer = /\[resumer pid (\d+)\] restored 3 spaces from disk/.exec(r.stdout)
    expect(resumer).not.toBeNull()
    expect(resumer![1]).not.toBe(saver![1])
    const would = /would have said: (.+)$/m.exec(r.stdout)?.[1]
    expect(would).toMatch(/^router-1 next=11 /)
    expect(/resumed instance says:\s+(.+)$/m.exec(r.stdout)?.[1]).toBe(would)
    expect(r.stdout).toMatch(/and then:\s+router-1 next=12 /)
    expect(r.stdout).toMatch(/^OK: /m)
  })

  it("worker-scanner: in-thread and worker scanning merge the same pages, the host loop keeps running", async () => {
    const r = await example("worker-scanner", { GUESTS: "4", GUEST_MIB: "8" })
    expect(errors(r.stderr)).toEqual([])
    expect(r.code).toBe(0)
    const rows = [...r.stdout.matchAll(/^(in-thread|worker)\s*: (\d+) pages merged away, converged in [\d.]+ s; host loop p50 \d+ µs, p99 \d+ µs, max \d+ µs over (\d+) iterations/gm)]
    expect(rows.map((m) => m[1])).toEqual(["in-thread", "worker"])
    // 4 guests x 2048 pages, the 1024 image pages of each merge into one copy: 3 x 1024 away.
    for (const m of rows) expect(num(m[2])).toBe(3072)
    expect(r.stdout).toMatch(/^OK: both modes merged the same 3072 pages/m)
  })

  it("emulator-fleet: the background scanner merges the guests over time", async () => {
    const r = await example("emulator-fleet", { EMULATOR_SECONDS: "3", EMULATOR_PAGES_TO_SCAN: "3000" })
    expect(errors(r.stderr)).toEqual([])
    expect(r.code).toBe(0)
    const rows = [...r.stdout.matchAll(/^\s+(\d+) s\s+([\d.]+) MiB\s+(\d+)/gm)]
    expect(rows.length).toBe(3)
    // Savings only grow (guests write private pages, never the image's).
    for (let i = 1; i < rows.length; i++) expect(num(rows[i]![3])).toBeGreaterThanOrEqual(num(rows[i - 1]![3]))
    // The 16 MiB image is the same in 6 guests: 5 of 6 copies of its 3584 non-zero pages merge away.
    const sharing = num(/pages_sharing (\d+)/.exec(r.stdout)?.[1])
    expect(sharing).toBe(5 * 3584)
  })

  it("effect-scanner: the scanner as an Effect service configured from the environment", async () => {
    const r = await example("effect-scanner", { KSMD_PAGES_TO_SCAN: "2000", KSMD_SLEEP_MILLIS: "5", KSMD_POLICY: "tracked" })
    expect(errors(r.stderr)).toEqual([])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/policy tracked, pages_to_scan 2000, sleep 5 ms \(from the environment\)/)
    // 8 workers load one 1024-page runtime image: 7 of 8 copies merge away; the heaps do not.
    expect(r.stdout).toMatch(/^pages_shared 1024, pages_sharing 7168 /m)
    expect(r.stdout).toMatch(/scanner stopped with its scope: no batches after the program ended/)
  })
})
