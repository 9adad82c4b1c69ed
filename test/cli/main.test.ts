/** The `sksm` command line (src/cli/main.ts): help, version, exit codes and one-line errors. */
import { describe, expect, it } from "vitest"
import { oneLine, sksm } from "./spawn.ts"

describe.concurrent("sksm command line", () => {
  it("--help teaches every command with examples and exits 0", async () => {
    const r = await sksm(["--help"])
    expect(r.code).toBe(0)
    for (const word of ["demo", "estimate", "bench", "Examples", "--pid", "npm start"]) expect(r.stdout).toContain(word)
  })

  it("each command has its own help (sksm CMD --help and sksm help CMD)", async () => {
    const [a, b, c] = await Promise.all([sksm(["estimate", "--help"]), sksm(["help", "demo"]), sksm(["bench", "-h"])])
    expect(a.code).toBe(0)
    expect(a.stdout).toMatch(/--max-page-sharing N .*default 256/)
    expect(a.stdout).toMatch(/--use-zero-pages/)
    expect(a.stdout).toMatch(/ptrace/)
    expect(b.stdout).toMatch(/--small/)
    expect(c.stdout).toMatch(/--quick/)
  })

  it("--version prints the package version", async () => {
    const r = await sksm(["--version"])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^sksm \d+\.\d+\.\d+/)
  })

  const bad: [string, string[], RegExp][] = [
    ["unknown command", ["frobnicate"], /no such command: frobnicate/],
    ["unknown top-level flag", ["--frob"], /unknown option --frob/],
    ["help for an unknown command", ["help", "nope"], /no such command: nope/],
    ["demo with a fleet of one", ["demo", "--instances", "1"], /--instances must be an integer from 2 to 32/],
    ["demo with a stray argument", ["demo", "extra"], /unexpected argument extra/],
    ["bench with an unknown flag", ["bench", "--fast"], /unknown option --fast for "sksm bench"/],
  ]
  it("failure, exit 1: demo --out where no directory can be made (no hang, one line)", async () => {
    const r = await sksm(["demo", "--small", "--out", "/proc/sksm-no-such-dir"])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toBe(true)
    expect(r.stderr).toMatch(/cannot create output directory \/proc\/sksm-no-such-dir/)
  })

  it("usage error, exit 2: bench with an unknown bench name, no stack trace", async () => {
    const r = await sksm(["bench", "nosuch"])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/unknown bench "nosuch"; known: word-access/)
    expect(r.stderr).not.toMatch(/\n\s+at /)
  })

  for (const [name, args, message] of bad) {
    it(`usage error, exit 2: ${name}`, async () => {
      const r = await sksm(args)
      expect(r.code).toBe(2)
      expect(oneLine(r.stderr)).toBe(true)
      expect(r.stderr).toMatch(message)
    })
  }
})
