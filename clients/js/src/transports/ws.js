// WebSocket transport: one socket carries subscribe, events, publishes and their acks
// (docs/protocol.md, "WebSocket").

import { base64, withQuery } from '../url.js';

/** Close codes of `POST /api/disconnect` (docs/protocol.md, "Close codes"). */
export const CLOSE_DISCONNECT = 4000;
export const CLOSE_DISCONNECT_FINAL = 4001;

/**
 * Opens a WebSocket connection for `ctx` (see client.js, `Connection`). The connection
 * counts as open when the server answers the subscribe with `subscribed`.
 */
export function openWebSocket(ctx) {
  const WebSocketImpl = ctx.impl.WebSocket;
  if (typeof WebSocketImpl !== 'function') {
    ctx.closed(new Error('no WebSocket implementation: pass options.WebSocket'));
    return { close() {} };
  }
  const params = [];
  if (ctx.token) params.push(['token', ctx.token]);
  // The URL's cursor is where the channels a connect hook joins start (they are joined before
  // any subscribe), so they resume exactly like the client's own.
  const resume = ctx.resumeFrom();
  if (resume) params.push(['cursor', resume]);
  let socket;
  try {
    socket = new WebSocketImpl(withQuery(ctx.urls.ws, params));
  } catch (e) {
    ctx.closed(e);
    return { close() {} };
  }
  // Binary payloads arrive as binary frames (see binaryEvent).
  socket.binaryType = 'arraybuffer';
  let ended = false;
  let pinger = null;
  const send = (message) => {
    if (socket.readyState !== 1) return false;
    socket.send(JSON.stringify(message));
    return true;
  };
  const end = (reason) => {
    if (ended) return;
    ended = true;
    clearInterval(pinger);
    try {
      socket.close(1000);
    } catch {
      // Already closing.
    }
    ctx.closed(reason);
  };

  socket.onopen = () => {
    ctx.alive();
    const subscribe = { type: 'subscribe', channels: ctx.channels };
    if (resume) subscribe.cursor = resume;
    send(subscribe);
    // Browsers cannot see WebSocket Ping/Pong frames, so liveness is checked with
    // application pings: any answer (or any other message) feeds the watchdog.
    pinger = setInterval(() => send({ type: 'ping' }), ctx.heartbeat.interval);
  };
  socket.onmessage = (m) => {
    ctx.alive();
    if (typeof m.data !== 'string') {
      const event = binaryEvent(m.data);
      if (event) ctx.event(event);
      else ctx.error(new Error('the server sent a binary frame that is not an rt event'));
      return;
    }
    let msg;
    try {
      msg = JSON.parse(m.data);
    } catch {
      ctx.error(new Error('the server sent a text frame that is not JSON'));
      return;
    }
    switch (msg.type) {
      case 'event':
        ctx.event(msg);
        break;
      case 'connected':
        // What the application's connect hook shows this client; first, when there is any.
        ctx.connected(msg);
        break;
      case 'authenticated':
        if (msg.data !== undefined) ctx.connected(msg);
        break;
      case 'subscribed': {
        if (typeof msg.cursor === 'string' && msg.cursor) ctx.position(msg.cursor, { replace: msg.recovered === false });
        // Channels the server joined this client to (its connect hook's), live, before the
        // answer to the client's own subscribe, which opens the connection.
        const joined = (msg.channels ?? []).filter((c) => !ctx.channels.includes(c));
        if (joined.length > 0) ctx.joined(joined);
        if (joined.length > 0 && joined.length === (msg.channels ?? []).length) {
          if (msg.recovered === false) ctx.resync(msg.resynced ?? joined);
          break;
        }
        ctx.open({ recovered: msg.recovered !== false });
        if (msg.recovered === false) ctx.resync(msg.resynced?.length ? msg.resynced : ctx.channels);
        break;
      }
      case 'published':
        ctx.published(msg);
        break;
      case 'presence':
        ctx.presence(msg);
        break;
      case 'unsubscribed':
        // Without `server`, the answer to this client's own unsubscribe.
        if (msg.server === true) ctx.unsubscribed(msg.channels ?? []);
        break;
      case 'resync':
        if (typeof msg.cursor === 'string' && msg.cursor) ctx.position(msg.cursor, { replace: true });
        ctx.resync(msg.channels ?? ctx.channels);
        break;
      case 'error':
        if (msg.id !== undefined && msg.id !== null) ctx.publishFailed(msg.id, msg);
        else ctx.error(Object.assign(new Error(msg.message ?? 'server error'), { code: msg.code }));
        break;
      case 'ping':
        send({ type: 'pong' });
        break;
      default:
        // heartbeat, pong and anything newer than this client: liveness only.
        break;
    }
  };
  socket.onerror = () => {};
  socket.onclose = (e) => {
    if (!ended && (e.code === CLOSE_DISCONNECT || e.code === CLOSE_DISCONNECT_FINAL)) {
      // The application ended this subject's connections: the client decides what follows.
      ended = true;
      clearInterval(pinger);
      ctx.disconnect({ reconnect: e.code === CLOSE_DISCONNECT, reason: e.reason ?? '' });
      return;
    }
    end(closeError(e));
  };

  return {
    close: () => end(null),
    /** Sends a publish; false when the socket cannot take it now. */
    publish: (body) => send({ type: 'publish', ...body }),
  };
}

/**
 * The Error for a close event. A policy close (1008) carries a machine-readable reason
 * (`token_expired`, `invalid_token`, `forbidden`, ...: docs/protocol.md), kept as `code` so
 * that the client can refresh its token rather than back off blindly.
 */
export function closeError(e) {
  const err = new Error(`WebSocket closed (${e.code}${e.reason ? ` ${e.reason}` : ''})`);
  err.closeCode = e.code;
  if (e.code === 1008 && /^[a-z_]+$/.test(e.reason ?? '')) err.code = e.reason;
  return err;
}

/**
 * An event from a binary frame: a 4-byte big-endian header length, the JSON header (the event
 * object without `data`), then the raw payload, handed out as base64 like the JSON transports
 * do. Null for anything else.
 */
export function binaryEvent(data) {
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : null;
  if (!bytes || bytes.length < 4) return null;
  const len = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0);
  if (4 + len > bytes.length) return null;
  let header;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + len)));
  } catch {
    return null;
  }
  if (header?.type !== 'event') return null;
  return { ...header, data: base64(bytes.subarray(4 + len)), encoding: 'base64' };
}
