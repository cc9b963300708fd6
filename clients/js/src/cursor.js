// Cursors: `<epoch>,<channel>=<offset>,...` (docs/protocol.md, "Positions and cursors").
//
// Offsets are JavaScript numbers: exact up to 2^53, i.e. 9 million billion events per
// channel, which no channel reaches.

const EPOCH = /^[0-9a-f]{1,16}$/;
const OFFSET = /^(0|[1-9][0-9]*)$/;

/** The position of a multi-channel subscription within one epoch. */
export class Cursor {
  /**
   * @param {string|null} epoch lowercase hex, or null when nothing is known yet
   * @param {Iterable<[string, number]>} offsets last offset seen per channel
   */
  constructor(epoch = null, offsets = []) {
    this.epoch = epoch;
    this.offsets = new Map(offsets);
  }

  /** Parses a cursor string; throws a SyntaxError naming the problem. */
  static parse(text) {
    if (typeof text !== 'string' || text.length === 0) throw new SyntaxError('empty cursor');
    const [epoch, ...parts] = text.split(',');
    if (!EPOCH.test(epoch)) throw new SyntaxError(`cursor epoch ${JSON.stringify(epoch)} is not 1 to 16 lowercase hex digits`);
    const cursor = new Cursor(epoch);
    for (const part of parts) {
      const eq = part.lastIndexOf('=');
      const channel = part.slice(0, eq);
      const offset = part.slice(eq + 1);
      if (eq <= 0 || !OFFSET.test(offset)) throw new SyntaxError(`cursor part ${JSON.stringify(part)} is not channel=offset`);
      if (cursor.offsets.has(channel)) throw new SyntaxError(`channel ${channel} appears twice in the cursor`);
      cursor.offsets.set(channel, Number(offset));
    }
    return cursor;
  }

  /** A cursor from a string, or null for anything that is not one (e.g. "earliest"). */
  static tryParse(text) {
    try {
      return Cursor.parse(text);
    } catch {
      return null;
    }
  }

  /** Last offset seen on `channel`, or undefined when the cursor does not track it. */
  get(channel) {
    return this.offsets.get(channel);
  }

  set(channel, offset) {
    this.offsets.set(channel, offset);
  }

  clone() {
    return new Cursor(this.epoch, this.offsets);
  }

  /**
   * The cursor string for `channels` (all tracked ones by default), in the server's order
   * (channel names sorted byte-wise; names are ASCII). Empty when no epoch is known.
   */
  toString(channels) {
    if (this.epoch === null) return '';
    const names = (channels ?? [...this.offsets.keys()]).filter((c) => this.offsets.has(c));
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return [this.epoch, ...names.map((c) => `${c}=${this.offsets.get(c)}`)].join(',');
  }

  /**
   * Takes in a position the server reported (after a subscribe, a poll or an SSE event).
   * Within the same epoch each channel keeps the further of the two offsets, unless
   * `replace` (the server could not recover: its position wins). Another epoch replaces
   * everything: offsets of different epochs cannot be compared.
   */
  adopt(server, { replace = false } = {}) {
    if (server.epoch !== this.epoch) {
      this.epoch = server.epoch;
      this.offsets = new Map(server.offsets);
      return;
    }
    for (const [channel, offset] of server.offsets) {
      const mine = this.offsets.get(channel);
      if (replace || mine === undefined || offset > mine) this.offsets.set(channel, offset);
    }
  }
}

/**
 * Which channel moved between two consecutive cursors of one connection (an SSE stream's
 * `id:` fields): `{channel, offset}` for the single channel whose offset changed, or null
 * when none did. Throws when several did or the epochs differ, which a single event cannot
 * cause.
 */
export function diff(previous, next) {
  if (previous.epoch !== next.epoch) throw new Error(`epoch changed from ${previous.epoch} to ${next.epoch}`);
  let moved = null;
  for (const [channel, offset] of next.offsets) {
    if (previous.offsets.get(channel) === offset) continue;
    if (moved) throw new Error(`both ${moved.channel} and ${channel} moved between two cursors`);
    moved = { channel, offset };
  }
  return moved;
}
