import { z } from 'zod'

/** The `flow` section: per-client outbound flow control (TCP-like window, EMQX inflight + mqueue). */
export const flowConfigSchema = z.strictObject({
  /** QoS 1/2 messages sent to a client and not yet acknowledged. */
  inflightWindow: z.number().int().min(1).max(65535).default(32),
  /** Messages waiting behind the window (or behind a full socket), per client. */
  maxQueued: z.number().int().min(1).default(1000),
  maxQueuedBytes: z.number().int().min(1024).default(8388608),
  /** drop-oldest: drop the oldest queued message, QoS 0 first; drop-new: refuse the arriving one; disconnect: close the client. */
  overflow: z.enum(['drop-oldest', 'drop-new', 'disconnect']).default('drop-oldest')
})
export type FlowConfig = z.infer<typeof flowConfigSchema>
