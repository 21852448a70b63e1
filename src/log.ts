import { pino, type Logger, type LoggerOptions } from 'pino'
import pinoPretty from 'pino-pretty'

export type { Logger }

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** `auto`: readable lines when stdout is a terminal (a person is reading), JSON otherwise. */
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const
export type LogFormat = (typeof LOG_FORMATS)[number]

/**
 * One JSON line per event on stdout (or, for a person at a terminal, pino-pretty's
 * readable lines, made from the same JSON). Secrets never reach the logger: the core logs
 * usernames and client ids, never passwords; `redact` is a second line of defence
 * for a plugin that logs a whole CONNECT packet or request body by mistake.
 * A `destination` (tests) always gets JSON.
 */
export function createLogger (level: LogLevel, destination?: NodeJS.WritableStream, format: LogFormat = 'json'): Logger {
  const options: LoggerOptions = {
    level,
    base: { pid: process.pid },
    redact: { paths: ['password', '*.password', 'packet.password', 'headers.authorization'], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime
  }
  if (destination) return pino(options, destination)
  const pretty = format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true)
  if (!pretty) return pino(options)
  // In this thread, synchronous (not a transport worker): a fatal line before
  // process.exit() is written, as with plain pino to stdout.
  return pino(options, pinoPretty({
    sync: true,
    colorize: process.stdout.isTTY === true,
    translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
    ignore: 'pid,hostname',
    // One line per event, as the JSON: grep and tail keep working.
    singleLine: true
  }))
}

/**
 * One warn line per reason per interval: a flood of refused sockets, junk on the Redis bus or
 * a Redis outage seen once per SUBSCRIBE must not become a flood of log lines. The first one
 * logs at once; later ones within the interval are counted and reported (`suppressed`) with
 * the next line that is written.
 */
export class RateLimitedWarn {
  readonly #last = new Map<string, { at: number, suppressed: number }>()
  constructor (private readonly log: Logger, private readonly intervalMs = 10000) {}

  warn (reason: string, fields: Record<string, unknown>, msg: string): void {
    const now = Date.now()
    const state = this.#last.get(reason)
    if (state && now - state.at < this.intervalMs) {
      state.suppressed++
      return
    }
    const suppressed = state?.suppressed ?? 0
    this.#last.set(reason, { at: now, suppressed: 0 })
    this.log.warn(suppressed > 0 ? { ...fields, suppressed } : fields, msg)
  }
}
