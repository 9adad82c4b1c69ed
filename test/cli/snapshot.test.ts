/** `sksm snapshot` end to end: save/ls/du/restore/rm/gc over images of known duplicate structure, a demo fleet, --json, errors. */
import { randomBytes } from "node:crypto"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { oneLine, sksm } from "./spawn.ts"

const PS = 4096
const tmp = mkdtempSync(join(tmpdir(), "sksm-snapshot-cli-"))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

/** 16 pages shared by both images (8 distinct contents, each twice), private pages, zero pages, a partial last page. */
const common = Buffer.concat(Array.from({ length: 16 }, (_, i) => Buffer.alloc(PS, (i % 8) + 1)))
const a = Buffer.concat([common, randomBytes(3 * PS), Buffer.alloc(5 * PS), Buffer.from("tail")]) // 25 pages (last partial)
const b = Buffer.concat([common, randomBytes(2 * PS)]) // 18 pages
const A = join(tmp, "a.img")
const B = join(tmp, "b.img")
writeFileSync(A, a)
writeFileSync(B, b)

const snap = (store: string, ...args: string[]) => sksm(["snapshot", ...args, "--store", store])

describe("sksm snapshot over image files", () => {
  it("saves each distinct page once, lists, reports du, restores byte-exact, removes and collects", async () => {
    const store = join(tmp, "store1")
    const s1 = await snap(store, "save", "pair", A, B, "--json")
    expect(s1.stderr).toBe("")
    expect(s1.code).toBe(0)
    const r1 = JSON.parse(s1.stdout) as Record<string, number>
    // Non-zero: a 16 + 3 + 1 (the tail page), b 16 + 2. Distinct: 8 common + 3 + 1 + 2 = 14.
    expect(r1).toMatchObject({ name: "pair", pages: 25 + 18, nonZeroPages: 20 + 18, newPages: 14, newBytes: 14 * PS, logicalBytes: a.length + b.length })

    // Saving a again writes nothing new.
    const s2 = await snap(store, "save", "a-again", A, "--json")
    expect(JSON.parse(s2.stdout)).toMatchObject({ newPages: 0, nonZeroPages: 20 })

    const ls = await snap(store, "ls", "--json")
    const list = JSON.parse(ls.stdout) as { name: string; kind: string; spaces: number; logicalBytes: number }[]
    expect(list.map((s) => [s.name, s.kind, s.spaces, s.logicalBytes])).toEqual([
      ["a-again", "images", 1, 25 * PS],
      ["pair", "images", 2, 43 * PS],
    ])
    const lsText = await snap(store, "ls")
    expect(lsText.stdout).toMatch(/^pair\s+images\s+2\s+172 KiB\s+152 KiB/m)

    const du = JSON.parse((await snap(store, "du", "--json")).stdout) as Record<string, number>
    expect(du).toMatchObject({ snapshots: 2, storedPages: 14, storedBytes: 14 * PS, logicalBytes: 68 * PS, nonZeroBytes: 58 * PS, unreferencedPages: 0 })
    expect(du["dedupRatio"]).toBeCloseTo(58 / 14, 5)
    const duText = await snap(store, "du")
    expect(duText.stdout).toMatch(/dedup ratio\s+4\.14x/)
    expect(duText.stdout).toMatch(/stored\s+56\.0 KiB\s+14 distinct pages/)

    const out = join(tmp, "out1")
    mkdirSync(out)
    const rs = await snap(store, "restore", "pair", "--out", out, "--json")
    expect(rs.stderr).toBe("")
    expect(JSON.parse(rs.stdout)).toMatchObject({ name: "pair", kind: "images", bytes: a.length + b.length })
    expect(readFileSync(join(out, "a.img")).equals(a)).toBe(true)
    expect(readFileSync(join(out, "b.img")).equals(b)).toBe(true)
    // Existing files are not overwritten without --force.
    const again = await snap(store, "restore", "pair", "--out", out)
    expect(again.code).toBe(1)
    expect(oneLine(again.stderr)).toBe(true)
    expect(again.stderr).toMatch(/a\.img exists \(pass --force to overwrite\)/)
    expect((await snap(store, "restore", "pair", "--out", out, "--force")).code).toBe(0)

    // rm pair: b's private pages become unreferenced; gc frees exactly them.
    expect((await snap(store, "rm", "pair")).stdout).toMatch(/removed pair/)
    expect(JSON.parse((await snap(store, "du", "--json")).stdout)).toMatchObject({ snapshots: 1, unreferencedPages: 2 })
    const gc = JSON.parse((await snap(store, "gc", "--json")).stdout) as Record<string, number>
    expect(gc["pagesFreed"]).toBe(2)
    expect(gc["bytesFreed"]).toBeGreaterThanOrEqual(2 * PS)
    expect(JSON.parse((await snap(store, "du", "--json")).stdout)).toMatchObject({ snapshots: 1, storedPages: 12, unreferencedPages: 0 })
    // What is left still restores byte-exact.
    const out2 = join(tmp, "out2")
    mkdirSync(out2)
    expect((await snap(store, "restore", "a-again", "--out", out2)).code).toBe(0)
    expect(readFileSync(join(out2, "a.img")).equals(a)).toBe(true)
  })

  it("honours --page-size and --replace", async () => {
    const store = join(tmp, "store2")
    const s = JSON.parse((await snap(store, "save", "big", A, "--page-size", "16384", "--json")).stdout) as Record<string, number>
    expect(s["pages"]).toBe(Math.ceil(a.length / 16384))
    const dup = await snap(store, "save", "big", B)
    expect(dup.code).toBe(1)
    expect(dup.stderr).toMatch(/^sksm: a snapshot named "big" already exists \(pass --replace to overwrite it\)\n$/)
    expect((await snap(store, "save", "big", B, "--replace")).code).toBe(0)
    const out = join(tmp, "out3")
    mkdirSync(out)
    expect((await snap(store, "restore", "big", "--out", out)).code).toBe(0)
    expect(readFileSync(join(out, "b.img")).equals(b)).toBe(true)
  })

  it("--compress deflate stores the pages deflated and restores byte-exact; du reports the compression", async () => {
    const store = join(tmp, "store-z")
    const text = Buffer.from("compressible ".repeat(8 * PS / 13 + 1).slice(0, 8 * PS))
    const T = join(tmp, "text.img")
    writeFileSync(T, text)
    expect((await snap(store, "save", "z", T, A, "--compress", "deflate")).code).toBe(0)
    const du = JSON.parse((await snap(store, "du", "--json")).stdout) as Record<string, number>
    expect(du["compressionRatio"]).toBeGreaterThan(1.5)
    expect(du["compressedBytes"]).toBeLessThan(du["storedBytes"]!)
    expect((await snap(store, "du")).stdout).toMatch(/compressed\s+[\d.]+ KiB\s+stored pages as deflated on disk/)
    const out = join(tmp, "out-z")
    mkdirSync(out)
    expect((await snap(store, "restore", "z", "--out", out)).code).toBe(0)
    expect(readFileSync(join(out, "text.img")).equals(text)).toBe(true)
    expect(readFileSync(join(out, "a.img")).equals(a)).toBe(true)
    const bad = await snap(store, "save", "y", A, "--compress", "zstd")
    expect(bad.code).toBe(2)
    expect(oneLine(bad.stderr)).toBe(true)
  })

  it("fails in one line: exit 1 for failures, 2 for bad usage", async () => {
    const store = join(tmp, "store3")
    const cases: [string[], number, RegExp][] = [
      [["restore", "nope", "--out", tmp], 1, /no snapshot named "nope"/],
      [["rm", "nope"], 1, /no snapshot named "nope"/],
      [["save", "x", join(tmp, "missing.img")], 1, /missing\.img: no such file or directory/],
      [["save", "x", tmp], 1, /is a directory/],
      [["save", "bad name", A], 2, /a snapshot name is 1 to 128 characters/],
      [["save", "x"], 2, /needs image FILEs or --demo N/],
      [["save", "x", A, "--page-size", "3000"], 2, /--page-size must be a power of two/],
      [["save", "x", A, "--demo", "2"], 2, /not both/],
      [["frob"], 2, /no such subcommand: snapshot frob/],
      [["ls", "--frob"], 2, /unknown option --frob for "sksm snapshot ls"/],
      [["restore"], 2, /needs a NAME/],
    ]
    // One store each: a store has one writer process at a time (the others would get StoreUnavailable).
    const runs = await Promise.all(cases.map(([args], i) => snap(`${store}-${i}`, ...args)))
    runs.forEach((r, i) => {
      const [args, code, re] = cases[i]!
      expect(r.code, args.join(" ")).toBe(code)
      expect(oneLine(r.stderr), r.stderr).toBe(true)
      expect(r.stderr).toMatch(re)
    })
    const noSub = await sksm(["snapshot"])
    expect(noSub.code).toBe(2)
    expect(oneLine(noSub.stderr)).toBe(true)
    // A store another live process holds: one line, exit 1.
    const locked = join(tmp, "store-locked")
    mkdirSync(locked)
    writeFileSync(join(locked, "LOCK"), String(process.pid))
    const l = await snap(locked, "ls")
    expect(l.code).toBe(1)
    expect(oneLine(l.stderr), l.stderr).toBe(true)
    expect(l.stderr).toMatch(new RegExp(`is open in process ${process.pid}`))
    const out = join(tmp, "out4")
    mkdirSync(out)
    await snap(store, "save", "ok", A)
    const r = await snap(store, "restore", "ok", "--out", join(out, "nodir"))
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/no such directory/)
  })

  it("has --help with defaults and examples", async () => {
    const [h1, h2] = await Promise.all([sksm(["snapshot", "--help"]), sksm(["snapshot", "save", "--help"])])
    for (const h of [h1, h2]) {
      expect(h.code).toBe(0)
      expect(h.stdout).toMatch(/sksm snapshot: a deduplicated/)
      expect(h.stdout).toMatch(/default 4096/)
      expect(h.stdout).toMatch(/Examples/)
    }
    expect((await sksm(["--help"])).stdout).toMatch(/snapshot\s+Hibernate memory images/)
  })
})

describe("sksm snapshot over the demo's interpreters", () => {
  it("hibernates a fleet, then resumes an instance from disk in a new process that carries on", async () => {
    const store = join(tmp, "store-demo")
    const s = await snap(store, "save", "fleet", "--demo", "2", "--json")
    expect(s.stderr).toBe("")
    expect(s.code).toBe(0)
    const r = JSON.parse(s.stdout) as Record<string, number>
    expect(r["pages"]).toBe(2 * 4096)
    // The two interpreters share the framework: far fewer pages stored than non-zero pages saved.
    expect(r["newPages"]).toBeLessThan(0.75 * r["nonZeroPages"]!)
    const rs = await snap(store, "restore", "fleet", "--instance", "1")
    expect(rs.stderr).toBe("")
    expect(rs.code).toBe(0)
    expect(rs.stdout).toMatch(/^ {2}same {2}router-1 next=11 routes=831/m)
    expect(rs.stdout).toMatch(/^ {2}next {2}router-1 next=12 /m)
    expect(rs.stdout).toMatch(/carries on exactly where the hibernated one stopped/)
    const js = JSON.parse((await snap(store, "restore", "fleet", "--json")).stdout) as Record<string, unknown>
    expect(js).toMatchObject({ kind: "quickjs", instances: 2, instance: 0, app: "counter", carriesOn: true })
    const bad = await snap(store, "restore", "fleet", "--instance", "2")
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--instance must be an integer from 0 to 1/)
  })
})
