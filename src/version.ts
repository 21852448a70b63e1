import { readFileSync } from 'node:fs'

/** The version in package.json (dist/src/version.js → the package root), '0.0.0' if unreadable. */
export function packageVersion (): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? '0.0.0'
  } catch {
    return '0.0.0'
  }
}
