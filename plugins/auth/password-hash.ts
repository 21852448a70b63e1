import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'

/**
 * Password hashes for static users: `scrypt$N$r$p$<salt base64>$<hash base64>`.
 * scrypt is in Node's crypto (no native add-on) and memory-hard. Verification runs on
 * libuv's thread pool, so it does not block the event loop.
 */

const DEFAULTS = { N: 16384, r: 8, p: 1, keyLength: 32 }

function scryptAsync (password: string | Buffer, salt: Buffer, keyLength: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, keyLength, opts, (err, key) => err ? reject(err) : resolve(key)))
}

export const PASSWORD_HASH_PATTERN = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/

export async function hashPassword (password: string): Promise<string> {
  const salt = randomBytes(16)
  const key = await scryptAsync(password, salt, DEFAULTS.keyLength, { N: DEFAULTS.N, r: DEFAULTS.r, p: DEFAULTS.p, maxmem: 64 * 1024 * 1024 })
  return `scrypt$${DEFAULTS.N}$${DEFAULTS.r}$${DEFAULTS.p}$${salt.toString('base64')}$${key.toString('base64')}`
}

export async function verifyPassword (password: Buffer, encoded: string): Promise<boolean> {
  const m = PASSWORD_HASH_PATTERN.exec(encoded)
  if (!m) return false
  const [, N, r, p, salt, hash] = m
  const expected = Buffer.from(hash!, 'base64')
  const key = await scryptAsync(password, Buffer.from(salt!, 'base64'), expected.length, { N: Number(N), r: Number(r), p: Number(p), maxmem: 256 * 1024 * 1024 })
  return key.length === expected.length && timingSafeEqual(key, expected)
}

// `node dist/plugins/auth/password-hash.js` reads a password on stdin and prints its hash
// (npm run hash-password), so no plain password ever goes into a config file or shell history.
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  let input = ''
  process.stdin.setEncoding('utf8')
  process.stdin.on('data', (chunk: string) => { input += chunk })
  process.stdin.on('end', () => {
    const password = input.replace(/\r?\n$/, '')
    if (password.length === 0) {
      process.stderr.write('usage: echo -n PASSWORD | npm run -s hash-password\n')
      process.exit(1)
    }
    hashPassword(password).then((h) => process.stdout.write(h + '\n'), (err: Error) => {
      process.stderr.write(err.message + '\n')
      process.exit(1)
    })
  })
}
