/**
 * Flag parsing on node:util parseArgs, with its errors turned into one-line usage errors and
 * helpers for the numeric flags.
 */
import { parseArgs, type ParseArgsConfig } from "node:util"
import { usageError } from "./errors.ts"

type Options = NonNullable<ParseArgsConfig["options"]>

/** parseArgs in strict mode; a bad flag becomes a usage error naming the command. */
export function parse<O extends Options>(command: string, args: readonly string[], options: O, positionals = false) {
  try {
    return parseArgs({ args: joinNegatives(args, options), options, strict: true, allowPositionals: positionals, allowNegative: true })
  } catch (e) {
    const err = e as { code?: string; message: string }
    const unknown = /Unknown option '([^']+)'/.exec(err.message)
    if (unknown !== null) throw usageError(`unknown option ${unknown[1]} for "sksm ${command}"`, command)
    const missing = /Option '([^ ']+)[^']*' argument missing/.exec(err.message)
    if (missing !== null) throw usageError(`option ${missing[1]} needs a value`, command)
    const noArg = /Option '([^ ']+)[^']*' does not take an argument/.exec(err.message)
    if (noArg !== null) throw usageError(`option ${noArg[1]} takes no value`, command)
    if (err.code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
      const arg = /'([^']+)'/.exec(err.message)?.[1]
      throw usageError(`unexpected argument ${arg ?? ""} for "sksm ${command}"`.replace("  ", " "), command)
    }
    throw usageError(err.message.split("\n")[0]!, command)
  }
}

/**
 * `--top -1` as `--top=-1`: a value that starts with "-" and looks like a number belongs to the
 * option before it (parseArgs would call it ambiguous), so the range check can name the option.
 */
function joinNegatives(args: readonly string[], options: Options): string[] {
  const out: string[] = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    const next = args[i + 1]
    const name = a.startsWith("--") ? a.slice(2) : undefined
    if (name !== undefined && !name.includes("=") && options[name]?.type === "string" && next !== undefined && /^-[\d.]/.test(next)) {
      out.push(`${a}=${next}`)
      i++
    } else out.push(a)
  }
  return out
}

/** An integer flag in [min, max]. */
export function intFlag(command: string, name: string, value: string | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`
    throw usageError(`--${name} must be ${range}, got "${value}"`, command)
  }
  return n
}
