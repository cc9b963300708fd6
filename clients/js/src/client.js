// The client: picks a transport, falls back, reconnects, resumes, dedupes and publishes.

import { Backoff } from './backoff.js';
import { Cursor } from './cursor.js';
import { Dedupe } from './dedupe.js';
import { base64, endpoints, withQuery } from './url.js';
import { errorFromResponse } from './transports/http.js';
import { openPoll } from './transports/poll.js';
import { openSse } from './transports/sse.js';
import { openWebSocket } from './transports/ws.js';

const TRANSPORTS = {
  ws: openWebSocket,
  sse: openSse,
  poll: (ctx) => openPoll(ctx, { long: true }),
  'short-poll': (ctx) => openPoll(ctx, { long: false }),
};

/** The transports tried by default, best first. */
export const DEFAULT_TRANSPORTS = Object.freeze(['ws', 'sse', 'poll']);

// What worked last per server, shared by every client of this page or process: a later
// connect() starts with it instead of waiting for the better transports to fail again.
const remembered = new Map();

// Publish answers that retrying cannot change. (A 404 can: the HTTP publish route may be
// disabled while the WebSocket is only reconnecting; see #sendPublish.)
const PERMANENT = new Set([400, 401, 403, 405, 413, 422]);

// Refusals a new token can cure: the WebSocket's 1008 close reasons (docs/protocol.md,
// "Close codes") and the HTTP transports' 401 error codes. After one of them a token
// function is asked for a fresh token (`{ refresh: true, reason }`) and the same transport
// is retried at once, instead of backing off and falling back as for a network failure.
export const TOKEN_REFUSALS = new Set(['token_expired', 'invalid_token', 'token_required', 'unauthorized']);

/** A client message id: 128 random bits (getRandomValues also works on plain-http pages). */
function messageId() {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return `m-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

/** Connects to an rt server. See index.d.ts for the options. */
export function connect(url, options) {
  return new Client(url, options);
}

export class Client {
  #closed = false;
  #generation = 0;
  #connection = null;
  #round = [];
  #index = 0;
  #retryTimer = null;
  #connectTimer = null;
  #watchdog = null;
  #handlers = new Map();
  #statusHandlers = new Set();
  #resyncHandlers = new Set();
  #errorHandlers = new Set();
  #disconnectHandlers = new Set();
  #unsubscribedHandlers = new Set();
  #joinHandlers = new Set();
  #leaveHandlers = new Set();
  // The server's poll session: kept across reconnects, so that a polling client stays one
  // presence member (the server forgets it a grace period after the last poll).
  #pollSession = null;
  #pending = new Map();
  #start;
  #tokenSource;
  /** Why the next token must be a fresh one (a token refusal's code), or null. */
  #refresh = null;
  /** Immediate retries after token refusals since the last open connection. */
  #refreshes = 0;

  constructor(url, options = {}) {
    const channels = [...new Set(options.channels ?? [])];
    if (channels.length === 0) throw new TypeError('connect(): options.channels must name at least one channel');
    const transports = options.transports ?? DEFAULT_TRANSPORTS;
    for (const t of transports) if (!TRANSPORTS[t]) throw new TypeError(`connect(): unknown transport ${JSON.stringify(t)}; use ${Object.keys(TRANSPORTS).join(', ')}`);
    if (transports.length === 0) throw new TypeError('connect(): options.transports is empty');
    this.url = url;
    this.channels = channels;
    this.transports = [...transports];
    this.urls = endpoints(url, options.paths);
    this.#tokenSource = options.token;
    this.impl = {
      WebSocket: options.WebSocket ?? globalThis.WebSocket,
      fetch: options.fetch ?? (globalThis.fetch ? globalThis.fetch.bind(globalThis) : undefined),
    };
    this.heartbeat = { interval: 25000, slack: 10000, ...options.heartbeat };
    this.connectTimeout = options.connectTimeout ?? 10000;
    this.pollTimeout = options.pollTimeout ?? 25;
    this.pollInterval = options.pollInterval ?? 2000;
    this.publishTimeout = options.publishTimeout ?? 30000;
    this.ackTimeout = options.ackTimeout ?? 5000;
    this.stableAfter = options.stableAfter ?? 5000;
    this.backoff = new Backoff(options.backoff);
    this.cursor = new Cursor();
    this.#start = '';
    if (options.cursor === 'earliest') this.#start = 'earliest';
    else if (options.cursor) this.cursor = Cursor.parse(options.cursor);
    this.dedupe = new Dedupe(this.cursor);
    /** 'connecting' | 'open' | 'reconnecting' | 'closed' */
    this.state = 'connecting';
    /** The transport of the open connection, or of the one being tried. */
    this.transport = null;
    /** How many times an open connection was lost and replaced. */
    this.reconnects = 0;
    this.#newRound();
    this.#connect();
  }

  /** Calls `handler(event)` for each new event of `channel` (`'*'`: every channel). */
  on(channel, handler) {
    if (channel !== '*' && !this.channels.includes(channel)) throw new TypeError(`on(): ${JSON.stringify(channel)} is not one of this client's channels`);
    if (!this.#handlers.has(channel)) this.#handlers.set(channel, new Set());
    this.#handlers.get(channel).add(handler);
    return () => this.#handlers.get(channel)?.delete(handler);
  }

  /** Calls `handler(status)` on every change of state or transport. */
  onStatus(handler) {
    this.#statusHandlers.add(handler);
    return () => this.#statusHandlers.delete(handler);
  }

  /** Calls `handler({channels, recovered: false})` when events may have been missed. */
  onResync(handler) {
    this.#resyncHandlers.add(handler);
    return () => this.#resyncHandlers.delete(handler);
  }

  /** Calls `handler(error)` for each failed connection attempt or server error. */
  onError(handler) {
    this.#errorHandlers.add(handler);
    return () => this.#errorHandlers.delete(handler);
  }

  /**
   * Calls `handler({reconnect, reason, transport})` when the server ends the connection on the
   * application's behalf (`POST /api/disconnect`). With `reconnect: false` the client closes
   * for good; otherwise it reconnects and resumes from its cursor.
   */
  onDisconnect(handler) {
    this.#disconnectHandlers.add(handler);
    return () => this.#disconnectHandlers.delete(handler);
  }

  /**
   * Calls `handler({channels, transport})` when the server takes channels out of this client
   * (`POST /api/unsubscribe`): they leave `client.channels` and are not resubscribed.
   */
  onUnsubscribed(handler) {
    this.#unsubscribedHandlers.add(handler);
    return () => this.#unsubscribedHandlers.delete(handler);
  }

  /**
   * Calls `handler({channel, members, transport})` when connections join one of this client's
   * channels that keeps presence (the server's `--presence`, and a token allowed to read it),
   * over every transport (polls carry the joins heard since the previous answer).
   * Each node gathers joins for about 100 ms, so `members` may hold many: a reconnect storm is
   * a few calls, not one per connection. Best effort: read `presence()` for the full list.
   */
  onJoin(handler) {
    this.#joinHandlers.add(handler);
    return () => this.#joinHandlers.delete(handler);
  }

  /** Like {@link onJoin}, for connections that left the channel. */
  onLeave(handler) {
    this.#leaveHandlers.add(handler);
    return () => this.#leaveHandlers.delete(handler);
  }

  /** A snapshot of the connection state. */
  status() {
    return { state: this.state, transport: this.transport, reconnects: this.reconnects, cursor: this.cursor.toString(this.channels) };
  }

  /**
   * Publishes and resolves with the server's acknowledgement once the event is stored. Retried
   * with the same client message id until acknowledged, so the effect is exactly once within
   * the server's idempotency window.
   */
  publish(channel, data, options = {}) {
    const body = { channel, id: options.id ?? messageId() };
    if (options.event) body.event = options.event;
    if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
      const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      body.data = base64(bytes);
      body.encoding = 'base64';
    } else {
      body.data = data;
    }
    return new Promise((resolve, reject) => {
      if (this.#closed) {
        reject(new Error('publish(): the client is closed'));
        return;
      }
      const same = this.#pending.get(body.id);
      if (same) {
        // The same message again while it is in flight: one publish, one answer for both.
        same.waiters.push({ resolve, reject });
        return;
      }
      const entry = { body, waiters: [{ resolve, reject }], timer: null, backoff: new Backoff({ base: 250, cap: 5000 }) };
      entry.deadline = setTimeout(() => this.#publishDone(entry, new Error(`publish ${body.id}: no acknowledgement within ${this.publishTimeout} ms`)), this.publishTimeout);
      this.#pending.set(body.id, entry);
      this.#sendPublish(entry);
    });
  }

  /** Ends the connection for good; pending publishes are rejected. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#teardown();
    clearTimeout(this.#retryTimer);
    for (const entry of [...this.#pending.values()]) this.#publishDone(entry, new Error('the client was closed'));
    this.#setState('closed');
  }

  // ---- connection lifecycle ----

  #key() {
    return `${this.urls.ws} ${this.transports.join(',')}`;
  }

  /** The transports to try, the one that worked last first. */
  #newRound() {
    const preferred = remembered.get(this.#key());
    const first = this.transports.includes(preferred) ? preferred : this.transports[0];
    this.#round = [first, ...this.transports.filter((t) => t !== first)];
    this.#index = 0;
  }

  #resumeFrom() {
    const known = this.cursor.toString(this.channels);
    // A cursor with an epoch but no channel tells the server nothing: fall back to the start.
    if (known && known.includes(',')) return known;
    return this.#start;
  }

  #connect() {
    if (this.#closed) return;
    const name = this.#round[this.#index];
    const generation = ++this.#generation;
    this.transport = name;
    this.#setState(this.reconnects > 0 || this.backoff.attempt > 0 ? 'reconnecting' : 'connecting');
    if (typeof this.#tokenSource !== 'function') {
      this.#open(name, generation, this.#tokenSource);
      return;
    }
    // A fresh token per connection, so an expired one is replaced on reconnect; after a
    // token refusal the function is told so it does not hand back a cached one.
    const current = () => generation === this.#generation && !this.#closed;
    const hint = this.#refresh ? { refresh: true, reason: this.#refresh } : { refresh: false };
    this.#refresh = null;
    Promise.resolve()
      .then(() => this.#tokenSource(hint))
      .then(
        (token) => current() && this.#open(name, generation, token),
        (e) => current() && this.#dropped(name, null, new Error(`could not get a token: ${e?.message ?? e}`)),
      );
  }

  #open(name, generation, token) {
    const live = () => generation === this.#generation && !this.#closed;
    let opened = false;
    // Channels whose loss was reported on this connection and that had no event since: the
    // server may signal one loss twice (`recovered: false` and a `resync` message).
    const lost = new Set();
    const client = this;
    const ctx = {
      // Read at each request: the server may take channels out (`unsubscribed`).
      get channels() {
        return client.channels;
      },
      token,
      urls: this.urls,
      impl: this.impl,
      heartbeat: this.heartbeat,
      pollTimeout: this.pollTimeout,
      pollInterval: this.pollInterval,
      resumeFrom: () => this.#resumeFrom(),
      get pollSession() {
        return client.#pollSession;
      },
      set pollSession(id) {
        if (live()) client.#pollSession = id;
      },
      cursor: () => this.cursor,
      alive: () => live() && this.#feedWatchdog(),
      open: ({ recovered }) => {
        if (!live() || opened) return;
        opened = true;
        this.#refreshes = 0;
        this.#connection.openedAt = Date.now();
        clearTimeout(this.#connectTimer);
        remembered.set(this.#key(), name);
        this.#setState('open', { recovered });
        for (const entry of this.#pending.values()) if (!entry.inFlight) this.#sendPublish(entry);
      },
      event: (e) => {
        if (!live()) return;
        lost.delete(e.channel);
        this.#deliver(e, name);
      },
      position: (text, { replace }) => {
        if (!live()) return;
        const server = Cursor.tryParse(text);
        if (server) this.cursor.adopt(server, { replace });
      },
      resync: (channels) => {
        if (!live()) return;
        const fresh = channels.filter((c) => !lost.has(c));
        fresh.forEach((c) => lost.add(c));
        if (fresh.length > 0) this.#emit(this.#resyncHandlers, { channels: fresh, recovered: false, transport: name });
      },
      published: (ack) => live() && this.#acked(ack),
      publishFailed: (id, err) => {
        const entry = this.#pending.get(id);
        if (entry) this.#publishDone(entry, Object.assign(new Error(`publish ${id}: ${err.message ?? err.code}`), { code: err.code }));
      },
      error: (e) => live() && this.#emit(this.#errorHandlers, e),
      presenceLost: () => {
        if (!live()) return;
        const e = new Error('join/leave events were dropped (the server buffers a bounded number between polls): read presence() for the full list');
        this.#emit(this.#errorHandlers, Object.assign(e, { code: 'presence_lost', transport: name }));
      },
      presence: ({ channel, joins, leaves }) => {
        if (!live()) return;
        if (joins?.length) this.#emit(this.#joinHandlers, { channel, members: joins, transport: name });
        if (leaves?.length) this.#emit(this.#leaveHandlers, { channel, members: leaves, transport: name });
      },
      unsubscribed: (channels) => {
        if (!live()) return;
        const gone = channels.filter((c) => this.channels.includes(c));
        if (gone.length === 0) return;
        // Later connections (and the cursor they resume from) leave them out.
        this.channels = this.channels.filter((c) => !gone.includes(c));
        this.#emit(this.#unsubscribedHandlers, { channels: gone, transport: name });
      },
      disconnect: ({ reconnect, reason }) => {
        if (!live()) return;
        this.#emit(this.#disconnectHandlers, { reconnect, reason, transport: name });
        if (!reconnect) {
          this.close();
          return;
        }
        const conn = this.#connection;
        this.#teardown();
        this.#dropped(name, conn, null);
      },
      closed: (reason) => {
        if (!live()) return;
        const conn = this.#connection;
        this.#teardown();
        this.#dropped(name, conn, reason);
      },
    };
    this.#connectTimer = setTimeout(() => {
      if (!live() || opened) return;
      this.#teardown();
      this.#dropped(name, null, new Error(`${name}: not connected within ${this.connectTimeout} ms`));
    }, this.connectTimeout);
    this.#feedWatchdog();
    this.#connection = { name, generation, handle: null, openedAt: null };
    this.#connection.handle = TRANSPORTS[name](ctx);
  }

  /** Stops the current connection's timers and transport without reporting anything. */
  #teardown() {
    const conn = this.#connection;
    this.#connection = null;
    this.#generation++;
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#watchdog);
    conn?.handle?.close();
    for (const entry of this.#pending.values()) {
      if (conn && entry.inFlight === conn) {
        // Its ack may never come: send it again (same id) over whatever works now.
        entry.inFlight = null;
        clearTimeout(entry.timer);
        entry.timer = setTimeout(() => this.#sendPublish(entry), 0);
      }
    }
  }

  /** After a connection `conn` (null: none was made) ended or could not be made. */
  #dropped(name, conn, reason) {
    if (reason) this.#emit(this.#errorHandlers, Object.assign(reason instanceof Error ? reason : new Error(String(reason)), { transport: name }));
    if (this.#closed) return;
    if (TOKEN_REFUSALS.has(reason?.code) && typeof this.#tokenSource === 'function') {
      // The token was refused (expired, invalid, missing): get a new one. The first time,
      // retry the same transport at once; a new token that is refused again backs off.
      this.#refresh = reason.code;
      if (this.#refreshes++ === 0) {
        if (conn?.openedAt != null) this.reconnects++;
        this.#setState('reconnecting');
        clearTimeout(this.#retryTimer);
        this.#retryTimer = setTimeout(() => this.#connect(), 0);
        return;
      }
    }
    let delay = 0;
    if (conn?.openedAt != null) {
      this.reconnects++;
      // Only a connection that stayed up a while proves the server is healthy again; one
      // that opens and drops at once keeps the backoff growing instead of looping fast.
      if (Date.now() - conn.openedAt >= this.stableAfter) this.backoff.reset();
      this.#newRound();
      delay = this.backoff.next();
    } else if (++this.#index >= this.#round.length) {
      // Every transport failed: wait, then start again with the preferred one.
      this.#newRound();
      delay = this.backoff.next();
    }
    this.#setState('reconnecting');
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }

  #feedWatchdog() {
    clearTimeout(this.#watchdog);
    const generation = this.#generation;
    let limit = this.heartbeat.interval + this.heartbeat.slack;
    // A held long poll is silent by design for up to its timeout.
    if (this.transport === 'poll') limit = Math.max(limit, this.pollTimeout * 1000 + this.heartbeat.slack);
    this.#watchdog = setTimeout(() => {
      if (generation !== this.#generation || this.#closed) return;
      const conn = this.#connection;
      this.#teardown();
      this.#dropped(conn?.name ?? this.transport, conn, new Error(`no sign of life within ${limit} ms: connection presumed dead`));
    }, limit);
    return true;
  }

  #setState(state, extra = {}) {
    this.state = state;
    this.#emit(this.#statusHandlers, { ...this.status(), ...extra });
  }

  #emit(handlers, value) {
    for (const h of [...handlers]) {
      try {
        h(value);
      } catch (e) {
        // An application handler's bug must not break delivery to the others.
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  #deliver(e, transport) {
    if (!this.channels.includes(e.channel)) return;
    if (!this.dedupe.accept(e.channel, e.epoch, e.offset)) return;
    const event = {
      channel: e.channel,
      offset: e.offset,
      epoch: e.epoch,
      event: e.event ?? 'message',
      data: e.data,
      time: e.time,
      transport,
    };
    if (e.encoding) event.encoding = e.encoding;
    this.#emit(this.#handlers.get(e.channel) ?? [], event);
    this.#emit(this.#handlers.get('*') ?? [], event);
  }

  // ---- publishing ----

  #sendPublish(entry) {
    if (this.#closed || !this.#pending.has(entry.body.id)) return;
    clearTimeout(entry.timer);
    const conn = this.#connection;
    // Over the open WebSocket when there is one; otherwise over HTTP, which needs no
    // connection of its own.
    if (conn && conn.name === 'ws' && conn.openedAt != null && conn.handle.publish(entry.body)) {
      entry.inFlight = conn;
      entry.timer = setTimeout(() => {
        entry.inFlight = null;
        this.#sendPublish(entry);
      }, this.ackTimeout);
      return;
    }
    entry.inFlight = 'http';
    this.#publishHttp(entry.body).then(
      (ack) => this.#acked(ack),
      (err) => {
        entry.inFlight = null;
        const permanent = PERMANENT.has(err.status) || (err.status === 404 && !this.transports.includes('ws'));
        if (permanent) {
          this.#publishDone(entry, err);
          return;
        }
        entry.timer = setTimeout(() => this.#sendPublish(entry), entry.backoff.next());
      },
    );
  }

  /**
   * A page of `channel`'s presence (its members, one per connection on every node, and its
   * counts) from the server's `/presence`, read with this client's token, which must grant
   * the channel in its `presence` claim. Pass the answer's `cursor` back for the next page.
   */
  async presence(channel, { cursor, limit } = {}) {
    const params = [['channel', channel]];
    if (cursor != null) params.push(['cursor', cursor]);
    if (limit != null) params.push(['limit', limit]);
    const res = await this.#fetchAuthorized(withQuery(this.urls.presence, params), { method: 'GET', headers: {} });
    if (!res.ok) throw await errorFromResponse(res, 'presence');
    return res.json();
  }

  async #publishHttp(body) {
    const headers = { 'Content-Type': 'application/json' };
    const res = await this.#fetchAuthorized(this.urls.publish, { method: 'POST', headers, body: JSON.stringify(body) });
    if (!res.ok) throw await errorFromResponse(res, 'publish');
    return res.json();
  }

  /** fetch with the client's current token as `Authorization: Bearer`. */
  async #fetchAuthorized(url, init) {
    if (typeof this.impl.fetch !== 'function') throw new Error('no fetch implementation: pass options.fetch');
    const token = typeof this.#tokenSource === 'function' ? await this.#tokenSource() : this.#tokenSource;
    if (token) init.headers.Authorization = `Bearer ${token}`;
    return this.impl.fetch(url, init);
  }

  #acked(ack) {
    const entry = this.#pending.get(ack?.id);
    if (entry) this.#publishDone(entry, null, ack);
  }

  #publishDone(entry, error, ack) {
    if (!this.#pending.delete(entry.body.id)) return;
    clearTimeout(entry.timer);
    clearTimeout(entry.deadline);
    for (const w of entry.waiters) {
      if (error) w.reject(error);
      else w.resolve(ack);
    }
  }
}
