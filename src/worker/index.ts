/**
 * sksm/worker: background scanning whose hashing runs on a worker thread (Node worker_threads,
 * or a browser module Worker), over a frame store shared with it. See {@link startWorkerScanner}.
 */
export { startWorkerScanner } from "./scanner.ts"
export type { WorkerScanner, WorkerScannerOptions } from "./scanner.ts"
