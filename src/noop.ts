/** Does nothing: the one shared no-op callback. */
export function noop (): void {}
