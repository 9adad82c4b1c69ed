/**
 * The command line's rough edges, each pinned: negative numbers for numeric flags, `sksm help
 * --help`, the permission hint when already root, the progress bar at 80 columns, chart ticks
 * and overlapping series, and the load note of `sksm bench`.
 */
import { spawn } from "node:child_process"
import { describe, expect, it } from "vitest"
import { loadLine } from "../../src/cli/bench.ts"
import { niceTicks, OVERLAP_MARK, svgChart, terminalChart } from "../../src/cli/chart.ts"
import { bytes, Progress } from "../../src/cli/format.ts"
import { rootMissing } from "../../src/cli/sources.ts"
import { canDropPrivileges, oneLine, sksm } from "./spawn.ts"

describe.concurrent("usage", () => {
  it("--top -1 is a range error naming the flag, not the parser's 'ambiguous'", async () => {
    for (const args of [["estimate", "--top", "-1", "x.raw"], ["estimate", "--max-page-sharing", "-5", "x.raw"], ["demo", "--instances", "-2"]]) {
      const r = await sksm(args)
      expect(r.code).toBe(2)
      expect(oneLine(r.stderr)).toBe(true)
      expect(r.stderr).not.toMatch(/ambiguous/)
      expect(r.stderr).toMatch(new RegExp(`${args[1]} must be an integer .*got "${args[2]}"`))
    }
  })

  it("sksm help --help explains help; sksm help -x is a usage error", async () => {
    const [a, b, c] = await Promise.all([sksm(["help", "--help"]), sksm(["help", "-h"]), sksm(["help", "-x"])])
    expect(a.code).toBe(0)
    expect(a.stdout).toMatch(/^sksm help: show the help of a command/)
    expect(a.stdout).toMatch(/Usage: sksm help \[COMMAND\]/)
    expect(b.stdout).toBe(a.stdout)
    expect(c.code).toBe(2)
    expect(c.stderr).toMatch(/unknown option -x for "sksm help"/)
  })
})

describe("the permission hint says what is missing when already root", () => {
  const full = "CapEff:\t000001ffffffffff\n"
  const noPtrace = "CapEff:\t000001fffff7ffff\n"
  it("names the missing capability, ptrace_scope 3, a user namespace, or a security policy", () => {
    expect(rootMissing(noPtrace, "", "0 0 4294967295")).toMatch(/lacks CAP_SYS_PTRACE/)
    expect(rootMissing(full, "3\n", "0 0 4294967295")).toMatch(/ptrace_scope=3/)
    expect(rootMissing(full, "1\n", "0 100000 65536")).toMatch(/user namespace \(uid_map "0 100000 65536"\)/)
    expect(rootMissing(full, "", "0 0 4294967295")).toMatch(/AppArmor, SELinux or seccomp/)
  })

  it.runIf(canDropPrivileges())("end to end: root without CAP_SYS_PTRACE reading another user's process", async () => {
    const target = spawn("setpriv", ["--reuid", "65534", "--regid", "65534", "--clear-groups", "sleep", "30"], { stdio: "ignore" })
    try {
      await new Promise((r) => setTimeout(r, 300))
      const r = await sksm(["estimate", "--pid", String(target.pid)], { prefix: ["setpriv", "--bounding-set=-sys_ptrace"] })
      expect(r.code).toBe(1)
      expect(oneLine(r.stderr)).toBe(true)
      expect(r.stderr).toMatch(/permission denied although running as root: this process lacks CAP_SYS_PTRACE/)
      expect(r.stderr).not.toMatch(/needs root/)
    } finally {
      target.kill()
    }
  })
})

describe("the progress bar", () => {
  it("keeps its rate whole at 80 columns and narrower", () => {
    for (const columns of [80, 60, 40]) {
      const lines: string[] = []
      const p = new Progress("reading", 987 * 1024 ** 3, true, { columns, write: (s: string) => lines.push(s) })
      p.advance(123.4 * 1024 ** 3)
      const drawn = lines.filter((l) => l !== "\r\x1b[K").map((l) => l.replace(/^\r/, "").replace(/\x1b\[K$/, ""))
      expect(drawn.length).toBeGreaterThan(0)
      for (const l of drawn) {
        expect(l.length).toBeLessThan(columns)
        expect(l).toMatch(/\d+(\.\d+)? [KMGT]?i?B\/s$/)
        expect(l).toContain(`${bytes(123.4 * 1024 ** 3)} / ${bytes(987 * 1024 ** 3)}`)
      }
    }
  })
})

describe("charts", () => {
  const opts = { title: "t", xLabel: "time", yLabel: "saved", formatX: (x: number) => `${x} ms`, formatY: (y: number) => bytes(y), yBytes: true }
  it("use round ticks with the maximum below the top", () => {
    expect(niceTicks(92.7 * 2 ** 20, true)).toEqual([0, 25, 50, 75, 100].map((v) => v * 2 ** 20))
    expect(niceTicks(124 * 2 ** 20, true)).toEqual([0, 50, 100, 150].map((v) => v * 2 ** 20))
    expect(niceTicks(100)).toEqual([0, 25, 50, 75, 100, 125])
    expect(niceTicks(0.3)).toEqual([0, 0.1, 0.2, 0.3, 0.4])
    const svg = svgChart([{ name: "a", mark: "a", color: "red", points: [[0, 0], [10, 92.7 * 2 ** 20]] }], opts)
    expect(svg).toContain(">100 MiB<")
    expect(svg).not.toMatch(/92\.7|30\.9/)
  })

  it("show where series overlap instead of hiding one, and keep the top row free", () => {
    const a = { name: "a", mark: "a", color: "red", points: [[0, 0], [50, 0], [60, 80 * 2 ** 20]] as [number, number][] }
    const b = { name: "b", mark: "b", color: "blue", points: [[0, 0], [90, 0], [100, 40 * 2 ** 20]] as [number, number][] }
    const text = terminalChart([a, b], opts, 40, 10)
    const rows = text.split("\n").slice(1, 11)
    const zeroRow = rows[9]!
    expect(zeroRow).toContain(OVERLAP_MARK)
    expect(zeroRow).toMatch(/^\s+0 B \|/)
    expect(text).toContain(`${OVERLAP_MARK} several`)
    // b's rise is visible, and a's maximum is below the top row.
    expect(rows.some((r) => r.includes("b"))).toBe(true)
    expect(rows[0]!.split("|")[1]!.trim()).toBe("")
    expect(rows[0]).toMatch(/100 MiB \|/)
  })
})

describe("sksm bench's load note", () => {
  it("prints the load average, and a note when it exceeds the cores", () => {
    expect(loadLine(0.5, 2)).toBe("load average 0.50 (1 min) on 2 cores")
    expect(loadLine(4.72, 2)).toMatch(/^load average 4\.72 \(1 min\) on 2 cores: the machine is loaded .*may FAIL/)
  })

  it("end to end: the line comes before and after the run", async () => {
    const r = await sksm(["bench", "--no-write", "no-such-bench"])
    expect(r.stdout.match(/^sksm bench: (at the end, )?load average [\d.]+ \(1 min\) on \d+ cores?/gm)).toHaveLength(2)
  })
})

