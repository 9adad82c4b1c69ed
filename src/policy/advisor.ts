/**
 * The scan-time advisor (mm/ksm.c `scan_time_advisor`, Linux 6.7+), in the kernel's integer
 * arithmetic. It runs once at the end of every full pass when advisorMode is "scan-time"
 * and sets pages_to_scan so that a pass takes about advisorTargetScanTime seconds while
 * the scanner stays between 10% (KSM_ADVISOR_MIN_CPU) and advisorMaxCpu% of one CPU.
 */

/** KSM_ADVISOR_MIN_CPU: the floor of the advisor, in percent of one CPU. */
export const ADVISOR_MIN_CPU = 10
/** EWMA_WEIGHT: weight in percent of the newest scan-time change. */
export const EWMA_WEIGHT = 30

/** struct advisor_ctx: zeroed whenever advisor_mode changes. */
export interface AdvisorContext {
  /** Wall time (ms) when the current pass started (advisor_start_scan). */
  startScanMillis: number
  /** Scanner CPU time (µs, cumulative) at the end of the previous pass. */
  cpuMicros: number
  /** Smoothed change, percent. */
  change: number
  /** Previous pass's scan time, seconds (0 = none yet). */
  scanTime: number
}

/** A zeroed context (set_advisor_defaults). */
export function newAdvisorContext(): AdvisorContext {
  return { startScanMillis: 0, cpuMicros: 0, change: 0, scanTime: 0 }
}

/** Inputs of one advisor run. */
export interface AdvisorInput {
  /** Wall time now, ms. */
  readonly nowMillis: number
  /** Cumulative scanner CPU time now, µs (the kernel: task_sched_runtime(ksmd)). */
  readonly cpuMicros: number
  readonly pagesToScan: number
  readonly advisorMaxCpu: number
  readonly advisorMaxPagesToScan: number
  readonly advisorTargetScanTime: number
}

/** What one advisor run computed (the `ksm_advisor` tracepoint's fields). */
export interface AdvisorResult {
  /** New pages_to_scan. */
  readonly pages: number
  /** Pass time, whole seconds (at least 1). */
  readonly scanTime: number
  /** CPU use over the pass, percent of one CPU (at least 1). */
  readonly cpuPercent: number
}

/**
 * scan_time_advisor(): compute the new pages_to_scan and update `ctx` in place.
 * Pure integer arithmetic, exactly as the kernel (unsigned long divisions truncate).
 */
export function scanTimeAdvisor(ctx: AdvisorContext, input: AdvisorInput): AdvisorResult {
  const elapsedMs = Math.max(0, Math.floor(input.nowMillis - ctx.startScanMillis))
  let scanTime = Math.floor(elapsedMs / 1000)
  if (scanTime === 0) scanTime = 1
  // The kernel works in ns and divides to ms; µs -> ms truncates the same way.
  const cpuMs = Math.floor(Math.max(0, input.cpuMicros - ctx.cpuMicros) / 1000)
  let cpuPercent = Math.floor((cpuMs * 100) / (scanTime * 1000))
  if (cpuPercent === 0) cpuPercent = 1
  const lastScanTime = ctx.scanTime !== 0 ? ctx.scanTime : scanTime
  let factor = Math.floor((input.advisorTargetScanTime * 100) / scanTime)
  if (factor === 0) factor = 1
  let change = Math.floor((scanTime * 100) / lastScanTime)
  if (change === 0) change = 1
  change = Math.floor(((100 - EWMA_WEIGHT) * ctx.change + EWMA_WEIGHT * change) / 100)
  let pages = Math.floor((input.pagesToScan * 100) / factor)
  pages = Math.floor((pages * change) / 100)
  let perPageCost = Math.floor(input.pagesToScan / cpuPercent)
  if (perPageCost === 0) perPageCost = 1
  pages = Math.min(pages, perPageCost * input.advisorMaxCpu)
  pages = Math.max(pages, perPageCost * ADVISOR_MIN_CPU)
  pages = Math.min(pages, input.advisorMaxPagesToScan)
  ctx.change = change
  ctx.scanTime = scanTime
  ctx.cpuMicros = input.cpuMicros
  return { pages, scanTime, cpuPercent }
}
