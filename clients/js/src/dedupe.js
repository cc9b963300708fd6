// Exactly-once delivery to the application: every transport delivers at least once (a replay
// after a reconnect may repeat what the previous connection already delivered), so events are
// deduplicated by (channel, offset) within an epoch. The server keeps per-channel order, so
// "offset <= last seen" is a duplicate (docs/protocol.md, "The event object").

import { Cursor } from './cursor.js';

export class Dedupe {
  /** @param {Cursor} cursor the client's cursor, advanced by every accepted event */
  constructor(cursor = new Cursor()) {
    this.cursor = cursor;
  }

  /**
   * Whether an event at `offset` of `channel` in `epoch` is new. A new one advances the
   * cursor. An event of another epoch starts that epoch: history was lost and offsets restart,
   * so every channel's last offset is forgotten.
   */
  accept(channel, epoch, offset) {
    if (epoch !== this.cursor.epoch) {
      this.cursor.epoch = epoch;
      for (const c of this.cursor.offsets.keys()) this.cursor.offsets.set(c, 0);
    } else {
      const last = this.cursor.get(channel);
      if (last !== undefined && offset <= last) return false;
    }
    this.cursor.set(channel, offset);
    return true;
  }
}
