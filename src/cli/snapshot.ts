/**
 * `sksm snapshot save|restore|ls|rm|gc|du`: the deduplicated snapshot store (sksm/snapshot) from
 * the command line, over raw memory image files (one space per file) and over the demo's QuickJS
 * interpreters (`save --demo N` hibernates N of them; `restore` resumes one and shows it carries
 * on). The store is a directory (--store, $SKSM_STORE, or ./sksm-snapshots).
 */
import { closeSync, existsSync, fstatSync, openSync, readSync, writeSync } from "node:fs"
import { basename, join, resolve } from "node:path"
import { Engine, InvalidArgument, type AddressSpace } from "../index.ts"
import { SnapshotCorrupt, SnapshotExists, SnapshotNotFound, SnapshotStore, StoreIOError, StoreUnavailable, type SnapshotInfo } from "../snapshot/index.ts"
import { intFlag, parse } from "./args.ts"
import { CliError, fsError, isMissingPackage, missingDependency, usageError } from "./errors.ts"
import { bytes, int, ms, table, Progress } from "./format.ts"

const COMMAND = "snapshot"
const SUBCOMMANDS = ["save", "restore", "ls", "rm", "gc", "du"] as const
const CHUNK = 16 << 20

/** What a snapshot made by the CLI keeps in its meta. */
type Meta =
  | { readonly kind: "images"; readonly files: readonly { readonly name: string; readonly bytes: number }[] }
  | { readonly kind: "quickjs"; readonly instances: readonly { readonly index: number; readonly app: string; readonly probe: string; readonly answer: string }[] }

const common = { store: { type: "string" }, json: { type: "boolean" }, progress: { type: "boolean" } } as const

const say = (s = ""): void => void process.stdout.write(`${s}\n`)

/** Run `sksm snapshot ...` with the arguments after "snapshot". */
export async function snapshot(args: readonly string[]): Promise<void> {
  const [sub, ...rest] = args
  if (sub === undefined) throw usageError(`"sksm snapshot" needs a subcommand: ${SUBCOMMANDS.join(", ")}`, COMMAND)
  if (!(SUBCOMMANDS as readonly string[]).includes(sub)) throw usageError(sub.startsWith("-") ? `unknown option ${sub} for "sksm snapshot" (a subcommand comes first: ${SUBCOMMANDS.join(", ")})` : `no such subcommand: snapshot ${sub}`, COMMAND)
  const cmd = `${COMMAND} ${sub}`
  switch (sub) {
    case "save": {
      const { values, positionals } = parse(cmd, rest, { ...common, "page-size": { type: "string" }, demo: { type: "string" }, replace: { type: "boolean" }, compress: { type: "string" } }, true)
      const [name, ...files] = positionals
      if (name === undefined) throw usageError("snapshot save needs a NAME", cmd)
      const demo = values.demo === undefined ? undefined : intFlag(cmd, "demo", values.demo, 0, 1, 64)
      if (demo === undefined && files.length === 0) throw usageError("snapshot save needs image FILEs or --demo N", cmd)
      if (demo !== undefined && files.length > 0) throw usageError("give image FILEs or --demo N, not both", cmd)
      if (demo !== undefined && values["page-size"] !== undefined) throw usageError("--page-size applies to image files (the interpreters' pages are 4096 bytes)", cmd)
      const pageSize = intFlag(cmd, "page-size", values["page-size"], 4096, 512, 1 << 20)
      if ((pageSize & (pageSize - 1)) !== 0) throw usageError(`--page-size must be a power of two, got "${values["page-size"]}"`, cmd)
      const compress = values.compress ?? "none"
      if (compress !== "none" && compress !== "deflate") throw usageError(`--compress must be none or deflate, got "${compress}"`, cmd)
      await withStore(values.store, (store) => (demo !== undefined ? saveDemo(store, name, demo, values) : saveImages(store, name, files, pageSize, values)), compress)
      return
    }
    case "restore": {
      const { values, positionals } = parse(cmd, rest, { ...common, out: { type: "string" }, force: { type: "boolean" }, instance: { type: "string" } }, true)
      if (positionals.length !== 1) throw usageError(positionals.length === 0 ? "snapshot restore needs a NAME" : `unexpected argument ${positionals[1]} for "sksm snapshot restore"`, cmd)
      await withStore(values.store, (store) => restore(store, positionals[0]!, values))
      return
    }
    case "ls": {
      const { values } = parse(cmd, rest, { store: common.store, json: common.json })
      await withStore(values.store, async (store) => ls(store, values.json === true))
      return
    }
    case "rm": {
      const { values, positionals } = parse(cmd, rest, { store: common.store, json: common.json }, true)
      if (positionals.length === 0) throw usageError("snapshot rm needs at least one NAME", cmd)
      await withStore(values.store, async (store) => {
        for (const n of positionals) await store.delete(n)
        if (values.json === true) say(JSON.stringify({ removed: positionals }))
        else say(`removed ${positionals.join(", ")} (their pages stay on disk until "sksm snapshot gc")`)
      })
      return
    }
    case "gc": {
      const { values } = parse(cmd, rest, { store: common.store, json: common.json })
      await withStore(values.store, async (store) => {
        const r = await store.gc()
        if (values.json === true) say(JSON.stringify(r))
        else say(`gc: freed ${int(r.pagesFreed)} pages, ${bytes(r.bytesFreed)} on disk`)
      })
      return
    }
    case "du": {
      const { values } = parse(cmd, rest, { store: common.store, json: common.json })
      await withStore(values.store, async (store) => {
        const s = await store.stats()
        if (values.json === true) return say(JSON.stringify(s))
        say(`store ${storeDir(values.store)}: ${int(s.snapshots)} snapshot${s.snapshots === 1 ? "" : "s"}${s.damaged.length > 0 ? ` (damaged: ${s.damaged.join(", ")})` : ""}`)
        say(`  logical      ${bytes(s.logicalBytes).padStart(10)}   every space of every snapshot, zero pages included`)
        say(`  non-zero     ${bytes(s.nonZeroBytes).padStart(10)}   of those, non-zero pages`)
        say(`  stored       ${bytes(s.storedBytes).padStart(10)}   ${int(s.storedPages)} distinct pages${s.unreferencedPages > 0 ? ` (${int(s.unreferencedPages)} unreferenced: sksm snapshot gc frees them)` : ""}`)
        if (s.compressionRatio !== 1) say(`  compressed   ${bytes(s.compressedBytes).padStart(10)}   stored pages as deflated on disk (${s.compressionRatio.toFixed(2)}x)`)
        say(`  on disk      ${bytes(s.diskBytes).padStart(10)}   pack files, index and manifests`)
        say(`  dedup ratio  ${`${s.dedupRatio.toFixed(2)}x`.padStart(10)}   non-zero / stored`)
        say(`  ratio        ${`${s.ratio.toFixed(2)}x`.padStart(10)}   logical / on disk`)
      })
      return
    }
  }
}

/** The store's directory: --store, $SKSM_STORE, or ./sksm-snapshots. */
function storeDir(flag: string | undefined): string {
  return resolve(flag ?? process.env["SKSM_STORE"] ?? "sksm-snapshots")
}

/** Open the store, run `op`, close it; the store's typed errors become one-line CLI errors. */
async function withStore(flag: string | undefined, op: (store: SnapshotStore) => Promise<void>, compress: "none" | "deflate" = "none"): Promise<void> {
  const dir = storeDir(flag)
  let store: SnapshotStore
  try {
    store = await SnapshotStore.open(dir, { compress })
  } catch (e) {
    throw storeError(e, dir)
  }
  try {
    await op(store)
  } catch (e) {
    throw storeError(e, dir)
  } finally {
    await store.close().catch(() => undefined)
  }
}

function storeError(e: unknown, dir: string): unknown {
  if (e instanceof CliError) return e
  if (e instanceof SnapshotExists) return new CliError(`a snapshot named ${JSON.stringify(e.snapshot)} already exists (pass --replace to overwrite it)`)
  if (e instanceof SnapshotNotFound || e instanceof SnapshotCorrupt) return new CliError(e.message)
  if (e instanceof StoreUnavailable) return new CliError(`store ${dir}: ${e.message}`)
  if (e instanceof StoreIOError) {
    const cause = (e as { cause?: unknown }).cause
    const code = (cause as { code?: string } | undefined)?.code
    return code !== undefined ? fsError(cause, `store ${dir}`) : new CliError(`store ${dir}: ${e.message}`)
  }
  if (e instanceof InvalidArgument) return new CliError(e.message.replace(/^SnapshotStore\.\w+\(\): /, ""), 2)
  const code = (e as { code?: string } | null)?.code
  if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return fsError(e, `store ${dir}`)
  return e
}

function progressOn(values: { progress?: boolean | undefined; json?: boolean | undefined }): boolean {
  return values.progress ?? (process.stderr.isTTY === true && values.json !== true)
}

/** Images: one space per file (zero-padded to whole pages), saved as one snapshot. */
async function saveImages(store: SnapshotStore, name: string, files: readonly string[], pageSize: number, values: { json?: boolean | undefined; replace?: boolean | undefined; progress?: boolean | undefined }): Promise<void> {
  const t0 = performance.now()
  const fds: { path: string; fd: number; size: number }[] = []
  try {
    for (const path of files) {
      let fd: number
      try {
        fd = openSync(path, "r")
      } catch (e) {
        throw fsError(e, path)
      }
      fds.push({ path, fd, size: 0 })
      const st = fstatSync(fd)
      if (st.isDirectory()) throw fsError(Object.assign(new Error(), { code: "EISDIR" }), path)
      if (st.size === 0) throw new CliError(`${path}: empty file, nothing to save`)
      fds.at(-1)!.size = st.size
    }
    const names = fds.map((f) => basename(f.path))
    const dup = names.find((n, i) => names.indexOf(n) !== i)
    if (dup !== undefined) throw usageError(`two images are named ${dup} (restore writes them by name)`, `${COMMAND} save`)
    if (!values.replace && store.list().some((s) => s.name === name)) throw new SnapshotExists(name)
    const engine = new Engine({ pageSize })
    const total = fds.reduce((a, f) => a + f.size, 0)
    const bar = new Progress(`reading ${fds.length} image${fds.length === 1 ? "" : "s"}`, total, progressOn(values))
    const spaces: AddressSpace[] = []
    const buf = new Uint8Array(Math.min(CHUNK, Math.ceil(Math.max(...fds.map((f) => f.size)) / pageSize) * pageSize))
    for (const f of fds) {
      const size = Math.ceil(f.size / pageSize) * pageSize
      const space = engine.createSpace({ size, name: basename(f.path) })
      spaces.push(space)
      for (let off = 0; off < f.size; ) {
        const n = readSync(f.fd, buf, 0, Math.min(buf.length, f.size - off), off)
        if (n === 0) break
        space.write(off, buf.subarray(0, n))
        off += n
        bar.advance(n)
      }
    }
    bar.done()
    const meta: Meta = { kind: "images", files: fds.map((f) => ({ name: basename(f.path), bytes: f.size })) }
    const r = await store.save(spaces, { name, meta, replace: values.replace === true })
    for (const s of spaces) s.dispose()
    report(r, total, performance.now() - t0, values.json === true)
  } finally {
    for (const f of fds) closeSync(f.fd)
  }
}

function report(r: { name: string; pages: number; nonZeroPages: number; newPages: number; newBytes: number }, logical: number, t: number, json: boolean): void {
  if (json) return say(JSON.stringify({ ...r, logicalBytes: logical, seconds: t / 1000 }))
  say(`saved ${r.name}: ${bytes(logical)} (${int(r.pages)} pages, ${int(r.nonZeroPages)} non-zero), ${int(r.newPages)} new pages written (${bytes(r.newBytes)}), in ${ms(t)}`)
}

/** Load the interpreters (a dev dependency), or fail in one line. */
async function fleetModule(command: string): Promise<typeof import("./fleet.ts")> {
  try {
    return await import("./fleet.ts")
  } catch (e) {
    if (isMissingPackage(e, "quickjs-emscripten")) throw missingDependency(command, "quickjs-emscripten")
    throw e
  }
}

/**
 * The demo's fleet: boot N interpreters, hibernate each into a space, save them as one snapshot.
 * Each instance then answers the probe once more, and that answer is kept in the meta: a resumed
 * instance must give the same one (it carries on from the hibernated state, not from a later one).
 */
async function saveDemo(store: SnapshotStore, name: string, n: number, values: { json?: boolean | undefined; replace?: boolean | undefined; progress?: boolean | undefined }): Promise<void> {
  if (!values.replace && store.list().some((s) => s.name === name)) throw new SnapshotExists(name)
  const fleet = await fleetModule(`${COMMAND} save`)
  const t0 = performance.now()
  const engine = new Engine()
  const bar = new Progress(`booting ${n} interpreters`, n, progressOn(values))
  const spaces: AddressSpace[] = []
  const instances: { index: number; app: string; probe: string; answer: string }[] = []
  for (let i = 0; i < n; i++) {
    const inst = await fleet.boot(i)
    spaces.push(fleet.hibernate(inst, engine))
    instances.push({ index: i, app: inst.app, probe: fleet.PROBE, answer: fleet.evalString(inst.context, fleet.PROBE) })
    fleet.shutdown(inst)
    bar.advance(1)
  }
  bar.done()
  const logical = spaces.reduce((a, s) => a + s.size, 0)
  const meta: Meta = { kind: "quickjs", instances }
  const r = await store.save(spaces, { name, meta, replace: values.replace === true })
  for (const s of spaces) s.dispose()
  report(r, logical, performance.now() - t0, values.json === true)
}

function metaOf(info: SnapshotInfo): Meta | undefined {
  const m = info.meta as { kind?: unknown } | null
  if (m !== null && typeof m === "object" && (m.kind === "images" || m.kind === "quickjs")) return m as Meta
  return undefined
}

async function restore(store: SnapshotStore, name: string, values: { json?: boolean | undefined; out?: string | undefined; force?: boolean | undefined; instance?: string | undefined; progress?: boolean | undefined }): Promise<void> {
  const cmd = `${COMMAND} restore`
  const info = store.list().find((s) => s.name === name)
  if (info === undefined) throw new SnapshotNotFound(name)
  const meta = metaOf(info)
  const t0 = performance.now()
  if (meta?.kind === "quickjs") {
    if (values.out !== undefined) throw usageError(`${name} holds interpreters, not images: --out does not apply (use --instance I)`, cmd)
    const index = intFlag(cmd, "instance", values.instance, 0, 0, meta.instances.length - 1)
    const fleet = await fleetModule(cmd)
    const engine = new Engine({ pageSize: info.pageSize })
    const spaces = await store.restore(name, engine)
    const tRestore = performance.now() - t0
    const want = meta.instances[index]!
    const resumed = await fleet.resume(spaces[index]!, want.index, want.app)
    const answer = fleet.evalString(resumed.context, want.probe)
    const next = fleet.evalString(resumed.context, fleet.PROBE)
    fleet.shutdown(resumed)
    const ok = answer === want.answer
    const st = engine.stats()
    for (const s of spaces) s.dispose()
    if (values.json === true) say(JSON.stringify({ name, kind: "quickjs", instances: spaces.length, instance: index, app: want.app, expected: want.answer, answer, next, carriesOn: ok, pagesSharing: st.pagesSharing, seconds: tRestore / 1000 }))
    else {
      say(`restored ${name}: ${spaces.length} interpreter memor${spaces.length === 1 ? "y" : "ies"} (${bytes(info.logicalBytes)}) in ${ms(tRestore)}, ${int(st.pagesSharing)} pages merged on restore`)
      say(`resumed ${want.app}-${want.index}:`)
      say(`  ${ok ? "same" : "DIFF"}  ${answer}`)
      say(`  next  ${next}`)
      say(ok ? "  the resumed interpreter carries on exactly where the hibernated one stopped" : `  MISMATCH: expected ${want.answer}`)
    }
    if (!ok) throw new CliError(`${name}: the resumed interpreter diverged from the hibernated one`)
    return
  }
  if (values.instance !== undefined) throw usageError(`${name} holds images, not interpreters: --instance does not apply`, cmd)
  if (values.out === undefined) throw usageError("snapshot restore of images needs --out DIR", cmd)
  const out = resolve(values.out)
  if (!existsSync(out)) throw new CliError(`${values.out}: no such directory`)
  const files = meta?.kind === "images" ? meta.files : info.spaces.map((s) => ({ name: s.name, bytes: s.size }))
  for (const f of files) {
    if (f.name.includes("/") || f.name === "." || f.name === "..") throw new CliError(`${name}: bad image name ${JSON.stringify(f.name)} in the snapshot`)
    if (!values.force && existsSync(join(out, f.name))) throw new CliError(`${join(values.out, f.name)} exists (pass --force to overwrite)`)
  }
  const engine = new Engine({ pageSize: info.pageSize })
  const spaces = await store.restore(name, engine, { merge: false })
  const total = files.reduce((a, f) => a + f.bytes, 0)
  const bar = new Progress(`writing ${files.length} image${files.length === 1 ? "" : "s"}`, total, progressOn(values))
  const written: string[] = []
  try {
    const buf = new Uint8Array(Math.min(CHUNK, Math.max(...spaces.map((s) => s.size))))
    for (let i = 0; i < files.length; i++) {
      const f = files[i]!
      const space = spaces[i]!
      const path = join(out, f.name)
      let fd: number
      try {
        fd = openSync(path, "w", 0o600)
      } catch (e) {
        throw fsError(e, path)
      }
      try {
        for (let off = 0; off < f.bytes; ) {
          const n = Math.min(buf.length, f.bytes - off)
          space.readInto(off, buf.subarray(0, n))
          let done = 0
          while (done < n) done += writeSync(fd, buf, done, n - done, off + done)
          off += n
          bar.advance(n)
        }
      } catch (e) {
        throw fsError(e, path)
      } finally {
        closeSync(fd)
      }
      written.push(path)
    }
  } finally {
    bar.done()
    for (const s of spaces) s.dispose()
  }
  const t = performance.now() - t0
  if (values.json === true) say(JSON.stringify({ name, kind: "images", files: written, bytes: total, seconds: t / 1000 }))
  else {
    say(`restored ${name}: ${files.length} image${files.length === 1 ? "" : "s"}, ${bytes(total)} in ${ms(t)}`)
    for (const p of written) say(`  ${p}`)
  }
}

function ls(store: SnapshotStore, json: boolean): void {
  const list = store.list()
  if (json) return say(JSON.stringify(list.map((s) => ({ name: s.name, createdAt: s.createdAt, kind: metaOf(s)?.kind ?? "spaces", pageSize: s.pageSize, spaces: s.spaces.length, logicalBytes: s.logicalBytes, nonZeroBytes: s.nonZeroBytes }))))
  if (list.length === 0) return say("no snapshots")
  say(
    table(
      [{ header: "name" }, { header: "kind" }, { header: "spaces", right: true }, { header: "logical", right: true }, { header: "non-zero", right: true }, { header: "saved at" }],
      list.map((s) => [s.name, metaOf(s)?.kind ?? "spaces", int(s.spaces.length), bytes(s.logicalBytes), bytes(s.nonZeroBytes), s.createdAt.replace("T", " ").replace(/\.\d+Z$/, "Z")]),
      "",
    ),
  )
}
