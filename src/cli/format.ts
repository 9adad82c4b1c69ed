/**
 * Output helpers for the command line: numbers a person reads at a glance, aligned tables,
 * hex previews, and a progress bar that appears only on a terminal.
 */

/** 1234567 -> "1,234,567". */
export function int(n: number): string {
  return Math.round(n).toLocaleString("en-US")
}

/** Bytes in binary units with 3 significant digits: "512 B", "4.00 KiB", "1.23 GiB". */
export function bytes(n: number): string {
  const neg = n < 0
  let v = Math.abs(n)
  const units = ["B", "KiB", "MiB", "GiB", "TiB"]
  let u = 0
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024
    u++
  }
  const s = u === 0 ? String(v) : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)
  return `${neg ? "-" : ""}${s} ${units[u]}`
}

/** part/whole as "12.3%" ("-" when whole is 0). */
export function pct(part: number, whole: number): string {
  if (whole === 0) return "-"
  return `${((100 * part) / whole).toFixed(1)}%`
}

/** Milliseconds as "850 ms" or "2.41 s". */
export function ms(t: number): string {
  return t < 1000 ? `${t.toFixed(t < 10 ? 1 : 0)} ms` : `${(t / 1000).toFixed(2)} s`
}

/** A column of {@link table}: header, and whether it is right-aligned (numbers). */
export interface Column {
  readonly header: string
  readonly right?: boolean
}

/** Render rows as an aligned text table with a header rule. */
export function table(columns: readonly Column[], rows: readonly (readonly string[])[], indent = "  "): string {
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: readonly string[]) =>
    indent +
    cells
      .map((cell, i) => (columns[i]!.right === true ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd()
  const out = [line(columns.map((c) => c.header)), indent + widths.map((w) => "-".repeat(w)).join("  ")]
  for (const r of rows) out.push(line(r))
  return out.join("\n")
}

/** "48 65 6c 6c" for the first `n` bytes. */
export function hex(b: Uint8Array, n = 16): string {
  return Array.from(b.subarray(0, n), (x) => x.toString(16).padStart(2, "0")).join(" ")
}

/** Printable ASCII of the first `n` bytes, '.' for the rest. */
export function ascii(b: Uint8Array, n = 16): string {
  return Array.from(b.subarray(0, n), (x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : ".")).join("")
}

/**
 * A progress bar on stderr, drawn only when stderr is a terminal (so pipes and CI logs stay
 * clean), redrawn at most every 100 ms.
 */
export class Progress {
  readonly #enabled: boolean
  readonly #total: number
  readonly #label: string
  readonly #t0 = performance.now()
  #last = 0
  #done = 0

  readonly #out: { write(s: string): unknown; readonly columns?: number }

  /** `out`: where to draw (stderr); its `columns` (or $COLUMNS, or 80) bounds the line. */
  constructor(label: string, total: number, enabled: boolean = process.stderr.isTTY === true, out: { write(s: string): unknown; readonly columns?: number } = process.stderr) {
    this.#label = label
    this.#total = total
    this.#enabled = enabled
    this.#out = out
  }

  /** Add `n` bytes of progress. */
  advance(n: number): void {
    this.#done += n
    if (!this.#enabled) return
    const now = performance.now()
    if (now - this.#last < 100) return
    this.#last = now
    this.#draw(now)
  }

  #draw(now: number): void {
    const frac = this.#total > 0 ? Math.min(1, this.#done / this.#total) : 0
    const rate = this.#done / Math.max(1e-3, (now - this.#t0) / 1000)
    const figures = `${(frac * 100).toFixed(0).padStart(3)}%  ${bytes(this.#done)} / ${bytes(this.#total)}  ${bytes(rate)}/s`
    // The figures always fit: the bar shrinks (to nothing) first, then the label goes.
    const columns = this.#out.columns ?? (Number(process.env["COLUMNS"]) || 80)
    const room = columns - 1 - figures.length
    const width = Math.max(0, Math.min(28, room - this.#label.length - 4))
    const fill = Math.round(frac * width)
    const text = width >= 5 ? `${this.#label} [${"#".repeat(fill)}${".".repeat(width - fill)}] ${figures}` : room >= this.#label.length + 1 ? `${this.#label} ${figures}` : figures
    this.#out.write(`\r${text.slice(0, columns - 1)}\x1b[K`)
  }

  /** Remove the bar. */
  done(): void {
    if (this.#enabled) this.#out.write("\r\x1b[K")
  }
}
