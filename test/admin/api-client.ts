/** A small client of the admin REST API for tests: status and parsed JSON body. */
export const TEST_TOKEN = 'test-token-0123456789abcdef'

export interface ApiAnswer { status: number, body: Record<string, unknown>, headers: Headers }

export async function api (baseUrl: string, method: string, path: string, opts: { token?: string | null, body?: unknown, rawBody?: string } = {}): Promise<ApiAnswer> {
  const headers: Record<string, string> = {}
  const token = opts.token === undefined ? TEST_TOKEN : opts.token
  if (token !== null) headers.authorization = `Bearer ${token}`
  let body: string | undefined
  if (opts.rawBody !== undefined) body = opts.rawBody
  else if (opts.body !== undefined) body = JSON.stringify(opts.body)
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(`${baseUrl}/api/v1${path}`, { method, headers, body })
  const text = await res.text()
  return { status: res.status, body: text.length > 0 ? JSON.parse(text) as Record<string, unknown> : {}, headers: res.headers }
}
