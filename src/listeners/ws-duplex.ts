import { Duplex } from 'node:stream'
import { WebSocket } from 'ws'
import { batchWritesPerTurn } from '../aedes/write-batching.js'

/** Largest WebSocket frame written; a turn's writes beyond it leave in several frames (MQTT-6.0.0-2 lets packets span frames). */
export const MAX_FRAME_BYTES = 64 * 1024

/** Close code for a text frame: MQTT over WebSocket is binary only [MQTT-6.0.0-1]; RFC 6455 1003 = unsupported data. */
export const CLOSE_UNSUPPORTED_DATA = 1003

export interface WsDuplexOptions {
  /** Called with the number of writes dropped because the connection was closed (a counter). */
  onDropped?: (writes: number) => void
  /** Bytes buffered (duplex + ws + socket) past which writers are told to wait ('drain'). Default 16 KiB, as a net.Socket. */
  highWaterMark?: number
  /** Frame size cap (default MAX_FRAME_BYTES). */
  maxFrameBytes?: number
}

const SEND_OPTIONS = { binary: true, compress: false, fin: true } as const

/**
 * The MQTT byte stream of one WebSocket connection, in place of ws' `createWebSocketStream`.
 *
 * Writes: every write of one event-loop turn goes out in ONE binary frame (several only past
 * `maxFrameBytes`). The per-turn gathering is src/aedes/write-batching.ts, as for TCP sockets:
 * the first write of a turn corks the stream and a setImmediate uncorks it, which hands all the
 * turn's writes to `_writev` at once. `createWebSocketStream` has no `_writev` and waits for each
 * `ws.send` to complete before the next, so mqtt-packet's five writes of one PUBLISH left as five
 * frames (two to ten header bytes and a syscall each).
 *
 * Back-pressure: a write completes at once while the connection takes more; once ws' buffered
 * bytes pass the high-water mark and the socket asks for 'drain', its callback waits for that
 * drain, so the Writable's own buffer fills, `write()` returns false and `writableNeedDrain` is
 * set: what the flow window (plugins/flow) and Aedes' drain handling wait on, as with TCP.
 *
 * Reads: each binary message is pushed as it came (a Buffer; MQTT packets may span messages and
 * share them); a text frame closes the connection with 1003 and nothing of it is read.
 *
 * Closed: once the WebSocket closes, errors, or this stream is destroyed, everything still
 * queued and every later write is dropped at once: the callback is called without an Error (ws
 * would build one per write in `sendAfterClose`, Node one per buffered write on destroy) and
 * the count goes to `onDropped`.
 */
export class WsDuplex extends Duplex {
  readonly #ws: WebSocket
  readonly #socket: Duplex
  readonly #onDropped: ((writes: number) => void) | undefined
  readonly #maxFrame: number
  /** The write callback held until the socket drains (back-pressure). */
  #held: ((err?: Error | null) => void) | undefined
  #onDrain: (() => void) | undefined
  /** No more bytes go out: later writes are dropped. */
  #closed = false
  /** The readable side has ended (push(null)). */
  #ended = false

  /** `socket`: the socket the WebSocket runs on (the one ws' handleUpgrade got); its 'drain' ends back-pressure. */
  constructor (ws: WebSocket, socket: Duplex, options: WsDuplexOptions = {}) {
    super({ writableHighWaterMark: options.highWaterMark ?? 16 * 1024, decodeStrings: true })
    this.#ws = ws
    this.#socket = socket
    this.#onDropped = options.onDropped
    this.#maxFrame = options.maxFrameBytes ?? MAX_FRAME_BYTES
    ws.binaryType = 'nodebuffer'
    ws.on('message', (data: Buffer, isBinary: boolean) => this.#message(data, isBinary))
    ws.on('close', () => this.#end())
    ws.on('error', (err: Error) => { if (!this.destroyed) this.destroy(err) })
    batchWritesPerTurn(this)
  }

  #message (data: Buffer, isBinary: boolean): void {
    if (this.#ended) return
    if (!isBinary) {
      this.#ws.close(CLOSE_UNSUPPORTED_DATA, 'MQTT over WebSocket takes binary frames only')
      this.#end()
      return
    }
    if (!this.push(data)) this.#ws.pause()
  }

  override _read (): void {
    if (this.#ws.isPaused) this.#ws.resume()
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#send([chunk], chunk.length, 1, callback)
  }

  override _writev (chunks: Array<{ chunk: Buffer, encoding: BufferEncoding }>, callback: (err?: Error | null) => void): void {
    const buffers = new Array<Buffer>(chunks.length)
    let bytes = 0
    for (let i = 0; i < chunks.length; i++) {
      const b = chunks[i]!.chunk
      buffers[i] = b
      bytes += b.length
    }
    this.#send(buffers, bytes, chunks.length, callback)
  }

  #send (buffers: Buffer[], bytes: number, writes: number, callback: (err?: Error | null) => void): void {
    const ws = this.#ws
    if (this.#closed || ws.readyState !== WebSocket.OPEN) {
      this.#drop(writes, callback)
      return
    }
    if (bytes <= this.#maxFrame) {
      ws.send(buffers.length === 1 ? buffers[0]! : Buffer.concat(buffers, bytes), SEND_OPTIONS)
    } else {
      this.#sendCapped(buffers, bytes)
    }
    if (ws.bufferedAmount > this.writableHighWaterMark && this.#socket.writableNeedDrain) {
      this.#held = callback
      this.#onDrain ??= () => this.#release()
      this.#socket.once('drain', this.#onDrain)
      return
    }
    callback()
  }

  /** More than one frame's worth: frames of maxFrame bytes (the last one shorter), cut wherever the cap falls. */
  #sendCapped (buffers: Buffer[], bytes: number): void {
    const all = Buffer.concat(buffers, bytes)
    for (let offset = 0; offset < bytes; offset += this.#maxFrame) {
      this.#ws.send(all.subarray(offset, offset + this.#maxFrame), SEND_OPTIONS)
    }
  }

  #release (): void {
    const callback = this.#held
    this.#held = undefined
    if (this.#onDrain !== undefined) this.#socket.removeListener('drain', this.#onDrain)
    callback?.()
  }

  #drop (writes: number, callback: (err?: Error | null) => void): void {
    this.#onDropped?.(writes)
    callback()
  }

  /**
   * Nothing more goes out: uncorks the turn's batch (sent if the WebSocket is still open, else
   * dropped) and releases a held callback, so every queued write reaches `_writev` and is
   * dropped there in one call, before Node could fail each one with an Error of its own.
   */
  #close (): void {
    while (this.writableCorked > 0) this.uncork()
    this.#closed = true
    this.#release()
  }

  /** The WebSocket closed (or took a text frame): drop what is queued, end the readable side (Aedes closes the client on 'end'). */
  #end (): void {
    this.#close()
    if (this.#ended) return
    this.#ended = true
    this.push(null)
  }

  override destroy (error?: Error, callback?: (err: Error | null) => void): this {
    if (!this.destroyed) this.#close()
    // Node's Writable.destroy takes a callback too; @types/node declares only the error.
    return (super.destroy as (e?: Error, cb?: (err: Error | null) => void) => this).call(this, error, callback)
  }

  override _destroy (error: Error | null, callback: (err: Error | null) => void): void {
    this.#ended = true
    // As createWebSocketStream: an open connection is cut (Aedes destroys after writing a
    // refusal; the bytes were handed to the socket by #close first). A closing one (text frame,
    // protocol error, peer's close) finishes its close handshake in ws, bounded by ws' timer.
    if (this.#ws.readyState === WebSocket.OPEN || this.#ws.readyState === WebSocket.CONNECTING) this.#ws.terminate()
    callback(error)
  }

  override _final (callback: (err?: Error | null) => void): void {
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.close(1000)
    callback()
  }
}
