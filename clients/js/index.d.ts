// Types of @rt/client (hand-written; the package is plain ES modules with no build step).

/** A transport, tried in the order given. */
export type TransportName = 'ws' | 'sse' | 'poll' | 'short-poll';

/** The transports tried by default: `['ws', 'sse', 'poll']`. */
export const DEFAULT_TRANSPORTS: readonly TransportName[];

/** One event, delivered exactly once per (channel, offset) within an epoch. */
export interface RtEvent {
  channel: string;
  /** Position in the channel: grows by exactly 1 per event. */
  offset: number;
  /** The history incarnation the offset belongs to (lowercase hex). */
  epoch: string;
  /** Event name (`message` by default). */
  event: string;
  /** The payload: text, or base64 when `encoding` is `'base64'`. */
  data: string;
  /** Publish time in ms since the Unix epoch (WebSocket and polling; absent over SSE). */
  time?: number;
  encoding?: 'base64';
  /** The transport that delivered it. */
  transport: TransportName;
}

export type State = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface Status {
  state: State;
  /** The transport of the open connection, or of the one being tried. */
  transport: TransportName | null;
  /** How many open connections were lost and replaced so far. */
  reconnects: number;
  /** Where the client would resume from (empty before anything is known). */
  cursor: string;
  /** On `open`: whether the server could replay everything missed since the cursor. */
  recovered?: boolean;
}

export interface Resync {
  /** Channels on which events were missed: reload their state from the application. */
  channels: string[];
  recovered: false;
  transport: TransportName;
}

export interface PublishAck {
  type: 'published';
  id: string;
  channel: string;
  offset: number;
  epoch: string;
  /** True when the server had already stored this message id (a retry): not published twice. */
  duplicate: boolean;
}

export interface PublishOptions {
  /** Event name. */
  event?: string;
  /** Client message id (1–128 printable ASCII); generated when absent. Retries reuse it. */
  id?: string;
}

/** One connection in a channel's presence. */
export interface PresenceMember {
  /** The connection's id. */
  client: string;
  /** The token's `sub`, if any. */
  subject?: string;
  /** The token's `info` claim, if any. */
  info?: unknown;
}

/** What `client.presence()` resolves to. */
export interface PresencePage {
  channel: string;
  /** Connections subscribed, on every node. */
  connections: number;
  /** Distinct subjects among them. */
  subjects: number;
  members: PresenceMember[];
  /** Pass as `cursor` for the next page; null after the last. */
  cursor: string | null;
}

export interface ConnectOptions {
  /** Channels to subscribe to (at least one). */
  channels: string[];
  /**
   * Connection token (JWT), sent as `Authorization: Bearer` over HTTP and `?token=` for
   * WebSocket. A function is called before every connection and HTTP publish, so an expired
   * token is replaced on reconnect. When the server refused the token (WebSocket close 1008
   * `token_expired`, `invalid_token` or `token_required`; HTTP 401) it is called with
   * `{ refresh: true, reason }`, so it must not return a cached token, and the same transport
   * is retried at once (backing off only if the new token is refused too).
   */
  token?: string | ((hint?: { refresh: boolean; reason?: string }) => string | Promise<string>);
  /** Transports to try, best first. Default `['ws', 'sse', 'poll']`. */
  transports?: TransportName[];
  /** Where to start: a cursor string saved from `status().cursor`, or `'earliest'`. Default: live. */
  cursor?: string;
  /** Reconnect backoff: full jitter, delays in [0, min(cap, base * 2^n)). Defaults 1000 / 30000 ms. */
  backoff?: { base?: number; cap?: number };
  /** A connection silent for `interval + slack` ms is presumed dead. Defaults 25000 / 10000. */
  heartbeat?: { interval?: number; slack?: number };
  /**
   * How long a connection must stay open for the backoff to start over (ms, default 5000);
   * a connection that drops sooner keeps the delays growing.
   */
  stableAfter?: number;
  /** How long an attempt may take to connect before the next transport is tried (ms, default 10000). */
  connectTimeout?: number;
  /** Long-poll hold time asked of the server, in seconds (default 25). */
  pollTimeout?: number;
  /** Short-poll period in ms (default 2000). */
  pollInterval?: number;
  /** How long publish() keeps retrying before it rejects (ms, default 30000). */
  publishTimeout?: number;
  /** How long to wait for a WebSocket publish ack before sending again (ms, default 5000). */
  ackTimeout?: number;
  /** Endpoint paths on the server. Defaults `/ws`, `/sse`, `/poll`, `/poll/publish`, `/presence`. */
  paths?: { ws?: string; sse?: string; poll?: string; publish?: string; presence?: string };
  /** WebSocket constructor (e.g. the `ws` package in Node 20). Default `globalThis.WebSocket`. */
  WebSocket?: unknown;
  /** fetch implementation. Default `globalThis.fetch`. */
  fetch?: typeof fetch;
}

export class Client {
  readonly url: string;
  readonly channels: readonly string[];
  readonly transports: readonly TransportName[];
  readonly state: State;
  readonly transport: TransportName | null;
  readonly reconnects: number;
  /** Calls `handler` for each new event of `channel`, or of every channel with `'*'`. Returns an unsubscribe function. */
  on(channel: string, handler: (event: RtEvent) => void): () => void;
  onStatus(handler: (status: Status) => void): () => void;
  onResync(handler: (resync: Resync) => void): () => void;
  onError(handler: (error: Error & { transport?: TransportName; status?: number; code?: string }) => void): () => void;
  /**
   * The server ended this client's connection for the application (`POST /api/disconnect`).
   * With `reconnect: false` the client is closed for good; otherwise it reconnects and
   * resumes from its cursor.
   */
  onDisconnect(handler: (disconnect: { reconnect: boolean; reason: string; transport: TransportName }) => void): () => void;
  /**
   * The server took channels out of this client (`POST /api/unsubscribe`); they leave
   * `channels` and are not subscribed again on reconnect.
   */
  onUnsubscribed(handler: (unsubscribed: { channels: string[]; transport: TransportName }) => void): () => void;
  /**
   * Connections joined a channel of this client that keeps presence (server `--presence`, and
   * a token allowed to read it), over WebSocket, SSE and polling (a poll carries those heard
   * since the previous answer). Gathered by each node for about 100 ms: one call may carry
   * many members. Dropped ones are reported to `onError` with `code: 'presence_lost'`.
   */
  onJoin(handler: (join: { channel: string; members: PresenceMember[]; transport: TransportName }) => void): () => void;
  /** Like `onJoin`, for connections that left the channel. */
  onLeave(handler: (leave: { channel: string; members: PresenceMember[]; transport: TransportName }) => void): () => void;
  status(): Status;
  /**
   * Publishes and resolves once the server stored the event. Retried with the same message
   * id until acknowledged or `publishTimeout` passes: exactly-once effect within the server's
   * idempotency window. Non-string `data` (other than bytes) is sent as JSON.
   */
  publish(channel: string, data: string | Uint8Array | ArrayBuffer | unknown, options?: PublishOptions): Promise<PublishAck>;
  /**
   * A page of `channel`'s presence from the server's `/presence`, read with this client's
   * token (its `presence` claim must grant the channel; else it rejects with `status` 401 or
   * 403, and 404 `presence_disabled` for a channel whose presence the server does not keep).
   */
  presence(channel: string, options?: { cursor?: string; limit?: number }): Promise<PresencePage>;
  /** Closes for good; pending publishes reject. */
  close(): void;
}

/** Connects to the rt server at `url` (its http(s) base URL; relative in a browser page). */
export function connect(url: string, options: ConnectOptions): Client;

/** Capped exponential backoff with full jitter. */
export class Backoff {
  constructor(options?: { base?: number; cap?: number; random?: () => number });
  readonly attempt: number;
  next(): number;
  reset(): void;
}

/** The delay before retry `attempt`: uniform in [0, min(cap, base * 2^attempt)). */
export function fullJitter(attempt: number, options?: { base?: number; cap?: number; random?: () => number }): number;

/** A cursor: `<epoch>,<channel>=<offset>,...`. */
export class Cursor {
  constructor(epoch?: string | null, offsets?: Iterable<[string, number]>);
  epoch: string | null;
  offsets: Map<string, number>;
  static parse(text: string): Cursor;
  static tryParse(text: string): Cursor | null;
  get(channel: string): number | undefined;
  set(channel: string, offset: number): void;
  clone(): Cursor;
  toString(channels?: string[]): string;
  adopt(server: Cursor, options?: { replace?: boolean }): void;
}
