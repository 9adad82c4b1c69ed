/**
 * Line charts of a few series over time, for the terminal (characters on a grid) and as a
 * self-contained SVG file. Used by the demo for "memory saved over time".
 */

/** One line of a chart: (x, y) points in increasing x. */
export interface Series {
  readonly name: string
  readonly points: readonly (readonly [number, number])[]
  /** Terminal mark and SVG colour. */
  readonly mark: string
  readonly color: string
}

/** Axis labels and formatting. */
export interface ChartOptions {
  readonly title: string
  readonly xLabel: string
  readonly yLabel: string
  readonly formatX: (x: number) => string
  readonly formatY: (y: number) => string
  /** Y values are bytes: ticks are round numbers of KiB / MiB / GiB. @default false */
  readonly yBytes?: boolean
}

/**
 * Round ticks for an axis from 0 covering `max`: steps of 1, 2, 2.5 or 5 times a power of ten
 * (of `unit`: 1024^k for bytes), at most 5 intervals, and a top strictly above `max` so a line at
 * the maximum does not sit on the border.
 */
export function niceTicks(max: number, bytes = false): number[] {
  if (!(max > 0)) return [0, 1]
  let unit = 1
  if (bytes) while (max / unit >= 1024) unit *= 1024
  const m = max / unit
  const raw = m / 4
  const p = 10 ** Math.floor(Math.log10(raw))
  let step = p * 10
  for (const f of [1, 2, 2.5, 5, 10]) {
    if (f * p >= raw && Math.floor(m / (f * p) + 1e-9) + 1 <= 5) {
      step = f * p
      break
    }
  }
  const n = Math.floor(m / step + 1e-9) + 1
  return Array.from({ length: n + 1 }, (_, i) => Number((i * step).toPrecision(12)) * unit)
}

function extent(series: readonly Series[]): { xMax: number; yMax: number } {
  let xMax = 0
  let yMax = 0
  for (const s of series)
    for (const [x, y] of s.points) {
      if (x > xMax) xMax = x
      if (y > yMax) yMax = y
    }
  return { xMax: xMax > 0 ? xMax : 1, yMax: yMax > 0 ? yMax : 1 }
}

/** The value of a step function through `points` at `x` (last point at or before x). */
function stepAt(points: readonly (readonly [number, number])[], x: number): number | null {
  let v: number | null = null
  for (const [px, py] of points) {
    if (px > x) break
    v = py
  }
  return v
}

/** Mark of a cell two or more series pass through. */
export const OVERLAP_MARK = "*"

/**
 * A chart drawn with characters: one mark per series per column; a cell two series pass through
 * shows {@link OVERLAP_MARK}, so no series hides another. The y axis has round ticks.
 */
export function terminalChart(series: readonly Series[], o: ChartOptions, width = 64, height = 12): string {
  const { xMax, yMax } = extent(series)
  const ticks = niceTicks(yMax, o.yBytes === true)
  const top = ticks[ticks.length - 1]!
  const grid: string[][] = Array.from({ length: height }, () => Array<string>(width).fill(" "))
  let overlap = false
  for (const s of series) {
    for (let c = 0; c < width; c++) {
      const v = stepAt(s.points, (c / (width - 1)) * xMax)
      if (v === null) continue
      const r = height - 1 - Math.round((v / top) * (height - 1))
      const cell = grid[r]![c]!
      if (cell !== " " && cell !== s.mark) {
        grid[r]![c] = OVERLAP_MARK
        overlap = true
      } else grid[r]![c] = s.mark
    }
  }
  const labels = new Map<number, string>()
  for (const t of ticks) labels.set(height - 1 - Math.round((t / top) * (height - 1)), o.formatY(t))
  const yw = Math.max(...[...labels.values()].map((l) => l.length))
  const lines = [`  ${o.title}`]
  for (let r = 0; r < height; r++) lines.push(`  ${(labels.get(r) ?? "").padStart(yw)} |${grid[r]!.join("")}`)
  lines.push(`  ${" ".repeat(yw)} +${"-".repeat(width)}`)
  const left = o.formatX(0)
  const right = o.formatX(xMax)
  lines.push(`  ${" ".repeat(yw)}  ${left}${o.xLabel.padStart(Math.floor((width - o.xLabel.length) / 2) + o.xLabel.length - left.length).padEnd(width - left.length - right.length)}${right}`)
  const legend = series.map((s) => `${s.mark} ${s.name}`)
  if (overlap) legend.push(`${OVERLAP_MARK} several`)
  lines.push(`  ${" ".repeat(yw)}  ${legend.join("   ")}`)
  return lines.join("\n")
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
}

/** The same chart as an SVG document (step lines, axes with round ticks, a legend). */
export function svgChart(series: readonly Series[], o: ChartOptions, width = 720, height = 400): string {
  const { xMax: xData, yMax: yData } = extent(series)
  const yTicks = niceTicks(yData, o.yBytes === true)
  const xTicks = niceTicks(xData)
  const yMax = yTicks[yTicks.length - 1]!
  // Time ends where the data ends (a step line holds its last value to the right edge).
  const xMax = xData
  const m = { l: 80, r: 20, t: 40, b: 60 }
  const w = width - m.l - m.r
  const h = height - m.t - m.b
  const X = (x: number) => (m.l + (x / xMax) * w).toFixed(1)
  const Y = (y: number) => (m.t + h - (y / yMax) * h).toFixed(1)
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`,
  ]
  for (const yv of yTicks) {
    parts.push(`<line x1="${m.l}" x2="${m.l + w}" y1="${Y(yv)}" y2="${Y(yv)}" stroke="#eee"/>`)
    parts.push(`<text x="${m.l - 6}" y="${Y(yv)}" text-anchor="end" dominant-baseline="middle">${esc(o.formatY(yv))}</text>`)
  }
  for (const xv of xTicks) {
    if (xv > xMax) break
    parts.push(`<text x="${X(xv)}" y="${m.t + h + 18}" text-anchor="middle">${esc(o.formatX(xv))}</text>`)
  }
  parts.push(`<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${m.t + h}" stroke="black"/>`)
  parts.push(`<line x1="${m.l}" y1="${m.t + h}" x2="${m.l + w}" y2="${m.t + h}" stroke="black"/>`)
  parts.push(`<text x="${m.l + w / 2}" y="${height - 28}" text-anchor="middle">${esc(o.xLabel)}</text>`)
  parts.push(`<text transform="translate(18 ${m.t + h / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`)
  for (const s of series) {
    if (s.points.length === 0) continue
    // A step line: the value holds until the next sample.
    let d = `M${X(s.points[0]![0])},${Y(s.points[0]![1])}`
    for (let i = 1; i < s.points.length; i++) d += ` H${X(s.points[i]![0])} V${Y(s.points[i]![1])}`
    d += ` H${X(xMax)}`
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`)
  }
  series.forEach((s, i) => {
    const y = height - 10
    const x = m.l + i * 170
    parts.push(`<line x1="${x}" x2="${x + 24}" y1="${y - 4}" y2="${y - 4}" stroke="${s.color}" stroke-width="3"/>`)
    parts.push(`<text x="${x + 30}" y="${y}">${esc(s.name)}</text>`)
  })
  parts.push("</svg>")
  return `${parts.join("\n")}\n`
}
