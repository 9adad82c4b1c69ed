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

/** A chart drawn with characters: one mark per series per column, later series on top. */
export function terminalChart(series: readonly Series[], o: ChartOptions, width = 64, height = 12): string {
  const { xMax, yMax } = extent(series)
  const grid: string[][] = Array.from({ length: height }, () => Array<string>(width).fill(" "))
  for (const s of series) {
    for (let c = 0; c < width; c++) {
      const v = stepAt(s.points, (c / (width - 1)) * xMax)
      if (v === null) continue
      const r = height - 1 - Math.round((v / yMax) * (height - 1))
      grid[r]![c] = s.mark
    }
  }
  const yw = Math.max(o.formatY(yMax).length, o.formatY(0).length, o.formatY(yMax / 2).length)
  const lines = [`  ${o.title}`]
  for (let r = 0; r < height; r++) {
    const label = r === 0 ? o.formatY(yMax) : r === height - 1 ? o.formatY(0) : r === Math.floor(height / 2) ? o.formatY(yMax / 2) : ""
    lines.push(`  ${label.padStart(yw)} |${grid[r]!.join("")}`)
  }
  lines.push(`  ${" ".repeat(yw)} +${"-".repeat(width)}`)
  const left = o.formatX(0)
  const right = o.formatX(xMax)
  lines.push(`  ${" ".repeat(yw)}  ${left}${o.xLabel.padStart(Math.floor((width - o.xLabel.length) / 2) + o.xLabel.length - left.length).padEnd(width - left.length - right.length)}${right}`)
  lines.push(`  ${" ".repeat(yw)}  ${series.map((s) => `${s.mark} ${s.name}`).join("   ")}`)
  return lines.join("\n")
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
}

/** The same chart as an SVG document (step lines, axes with 5 ticks, a legend). */
export function svgChart(series: readonly Series[], o: ChartOptions, width = 720, height = 400): string {
  const { xMax, yMax } = extent(series)
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
  for (let i = 0; i <= 4; i++) {
    const yv = (yMax * i) / 4
    const xv = (xMax * i) / 4
    parts.push(`<line x1="${m.l}" x2="${m.l + w}" y1="${Y(yv)}" y2="${Y(yv)}" stroke="#eee"/>`)
    parts.push(`<text x="${m.l - 6}" y="${Y(yv)}" text-anchor="end" dominant-baseline="middle">${esc(o.formatY(yv))}</text>`)
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
