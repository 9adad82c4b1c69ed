/**
 * The one place that picks a policy class (kept apart from scanner.ts, which the policy
 * modules extend, so the import graph has no cycle).
 */
import { InvalidArgument } from "../errors.ts"
import { KsmScanner } from "./ksm.ts"
import type { ScannerOptions } from "./options.ts"
import type { ScanHost, Scanner } from "./scanner.ts"
import { TrackedScanner } from "./tracked.ts"
import { show } from "../memory/validate.ts"

/** Build the scanner `options.policy` names (default "ksm"); validates everything before returning. */
export function createScanner(host: ScanHost, options: ScannerOptions = {}): Scanner {
  if (typeof options !== "object" || options === null) throw new InvalidArgument("scanner options must be an object")
  const policy = options.policy ?? "ksm"
  if (policy === "ksm") return new KsmScanner(host, options)
  if (policy === "tracked") return new TrackedScanner(host, options)
  throw new InvalidArgument(`policy must be "ksm" or "tracked", got ${show(policy)}`)
}
