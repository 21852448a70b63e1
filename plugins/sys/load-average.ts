/**
 * Mosquitto's `$SYS/broker/load/...` values (src/sys_tree.c `calc_load`): an exponentially
 * damped moving average of a per-minute rate, over 1, 5 and 15 minutes, updated at each
 * interval like Unix load averages. Between two updates `dt` seconds apart in which a
 * counter grew by `delta`, the rate is `delta * 60 / dt` per minute and each average moves
 * towards it: `load = rate + exp(-dt / window) * (load - rate)`.
 */
export const LOAD_WINDOWS = [{ name: '1min', seconds: 60 }, { name: '5min', seconds: 300 }, { name: '15min', seconds: 900 }] as const

export class LoadAverage {
  readonly #loads = [0, 0, 0]
  #last: number | undefined

  /** Takes the counter's current total at `dtS` seconds after the previous update. */
  update (total: number, dtS: number): void {
    if (this.#last === undefined || dtS <= 0) {
      this.#last = total
      return
    }
    // A counter only grows; one that went down was reset (never here), so count from zero.
    const delta = total >= this.#last ? total - this.#last : total
    this.#last = total
    const rate = delta * 60 / dtS
    for (let i = 0; i < LOAD_WINDOWS.length; i++) {
      this.#loads[i] = rate + Math.exp(-dtS / LOAD_WINDOWS[i]!.seconds) * (this.#loads[i]! - rate)
    }
  }

  /** The averages by window name, formatted as Mosquitto does ("%.2f"). */
  values (): Array<[string, string]> {
    return LOAD_WINDOWS.map((w, i) => [w.name, this.#loads[i]!.toFixed(2)])
  }
}
