/**
 * Errors the command line reports as one line on stderr. Anything else that escapes a command
 * is an internal error (main.ts prints it as one line too, with a hint to get the stack).
 */

/** A failure the user can act on: bad flag, no such pid, no permission, unreadable file. */
export class CliError extends Error {
  readonly _tag = "CliError"
  /** Process exit code: 2 for usage errors, 1 otherwise. */
  readonly exitCode: number
  constructor(message: string, exitCode = 1) {
    super(message)
    this.name = "CliError"
    this.exitCode = exitCode
  }
}

/** A usage error (bad flag or argument): exit code 2 and a pointer to --help. */
export function usageError(message: string, command?: string): CliError {
  const help = command === undefined ? "sksm --help" : `sksm ${command} --help`
  return new CliError(`${message} (see ${help})`, 2)
}

/** The one-line error for a command whose dev dependency is not installed. */
export function missingDependency(command: string, dependency: string): CliError {
  return new CliError(`sksm ${command} needs the dev dependency ${dependency}: npm install ${dependency}`)
}

/** True if `e` is Node's "cannot find package NAME" (ERR_MODULE_NOT_FOUND / MODULE_NOT_FOUND). */
export function isMissingPackage(e: unknown, name: string): boolean {
  const err = e as { code?: unknown; message?: unknown } | null
  const code = err?.code
  const message = typeof err?.message === "string" ? err.message : ""
  return (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND") && (message.includes(`'${name}'`) || message.includes(`"${name}"`) || message.includes(`'${name}/`))
}

/** Turn a node:fs error about `what` into a one-line CliError. */
export function fsError(cause: unknown, what: string): CliError {
  const code = (cause as { code?: string } | null)?.code
  switch (code) {
    case "ENOENT":
      return new CliError(`${what}: no such file or directory`)
    case "EACCES":
    case "EPERM":
      return new CliError(`${what}: permission denied`)
    case "EISDIR":
      return new CliError(`${what}: is a directory, not a memory image`)
    default:
      return new CliError(`${what}: ${(cause as Error)?.message ?? String(cause)}`)
  }
}
