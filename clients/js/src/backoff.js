// Reconnect delays: capped exponential backoff with full jitter.
//
// Full jitter (a uniformly random delay between 0 and the capped exponential) spreads the
// reconnects of many clients that lost the same server at the same instant, instead of
// bringing them all back in synchronised waves (the thundering herd after a restart).

/** Default smallest ceiling (ms) of the first retry. */
export const DEFAULT_BASE = 1000;
/** Default largest delay (ms): 30 s, as the seed advises. */
export const DEFAULT_CAP = 30000;

/**
 * The delay before retry number `attempt` (0 for the first retry): a uniformly random whole
 * number of milliseconds in [0, min(cap, base * 2^attempt)).
 */
export function fullJitter(attempt, { base = DEFAULT_BASE, cap = DEFAULT_CAP, random = Math.random } = {}) {
  if (!(attempt >= 0)) throw new RangeError(`attempt must be >= 0, got ${attempt}`);
  if (!(base > 0) || !(cap > 0)) throw new RangeError('base and cap must be > 0');
  // 2 ** attempt becomes Infinity for large attempts; Math.min keeps it at the cap.
  const ceiling = Math.min(cap, base * 2 ** attempt);
  return Math.floor(random() * ceiling);
}

/** Counts failed attempts and hands out the next delay. */
export class Backoff {
  constructor(options = {}) {
    this.options = options;
    this.attempt = 0;
  }

  /** The delay before the next retry; each call counts one more failure. */
  next() {
    return fullJitter(this.attempt++, this.options);
  }

  /** Forgets past failures, after a connection that worked. */
  reset() {
    this.attempt = 0;
  }
}
