// msgpack-lite ships no types; the encoding aedes-persistence-redis stores packets with.
declare module 'msgpack-lite' {
  export function decode (input: Buffer | Uint8Array): unknown
  export function encode (input: unknown): Buffer
}
