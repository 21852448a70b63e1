import { pino, type Logger, type LoggerOptions } from 'pino'

export type { Logger }

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/**
 * One JSON line per event on stdout. Secrets never reach the logger: the core logs
 * usernames and client ids, never passwords; `redact` is a second line of defence
 * for a plugin that logs a whole CONNECT packet or request body by mistake.
 */
export function createLogger (level: LogLevel, destination?: NodeJS.WritableStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { pid: process.pid },
    redact: { paths: ['password', '*.password', 'packet.password', 'headers.authorization'], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime
  }
  return destination ? pino(options, destination) : pino(options)
}
