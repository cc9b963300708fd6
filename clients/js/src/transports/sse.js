// Server-Sent Events transport, read with fetch (docs/protocol.md, "Server-Sent Events").
//
// The stream is read with fetch and parsed here rather than with the browser's EventSource
// because EventSource only hands out events whose names were registered in advance (an event
// named `price` would be dropped silently), cannot send an Authorization header, and
// reconnects by itself on a schedule this client must control (backoff, fallback, watchdog).
// The wire format and the server are the same either way.

import { Cursor, diff } from '../cursor.js';
import { SseParser } from '../sse-parser.js';
import { withQuery } from '../url.js';
import { errorFromResponse } from './http.js';

/** The suffix of the event name of a binary (base64) payload over SSE. */
const BINARY_SUFFIX = ';base64';

/** Opens an SSE stream for `ctx`; open once the server answered with an event stream. */
export function openSse(ctx) {
  const fetchImpl = ctx.impl.fetch;
  const abort = new AbortController();
  let ended = false;
  const end = (reason) => {
    if (ended) return;
    ended = true;
    abort.abort();
    ctx.closed(reason);
  };
  if (typeof fetchImpl !== 'function') {
    end(new Error('no fetch implementation: pass options.fetch'));
    return { close() {} };
  }

  const resume = ctx.resumeFrom();
  const params = ctx.channels.map((c) => ['channel', c]);
  if (resume) params.push(['lastEventId', resume]);
  const headers = { Accept: 'text/event-stream' };
  if (ctx.token) headers.Authorization = `Bearer ${ctx.token}`;

  // The connection's position before the next event: each event's `id:` is the cursor after
  // it, and exactly one channel moved since the previous one: that is the event's channel.
  let previous = Cursor.tryParse(resume);

  const onEvent = ({ event, data, id }) => {
    if (event.startsWith('rt.')) {
      control(event, data, id);
      return;
    }
    const next = id ? Cursor.tryParse(id) : null;
    if (!next) {
      ctx.error(new Error(`SSE event without a cursor id (${JSON.stringify(id)}); ignored`));
      return;
    }
    let moved;
    try {
      moved = identify(previous, next, ctx.cursor());
    } catch (e) {
      // Cannot place the event: resuming from the last known cursor is the safe answer.
      end(new Error(`cannot tell which channel an SSE event belongs to: ${e.message}`));
      return;
    }
    previous = next;
    if (moved) {
      const e = { type: 'event', channel: moved.channel, offset: moved.offset, epoch: next.epoch, event, data };
      if (event.endsWith(BINARY_SUFFIX)) {
        e.event = event.slice(0, -BINARY_SUFFIX.length);
        e.encoding = 'base64';
      }
      ctx.event(e);
    }
    ctx.position(id, { replace: false });
  };

  // Control events (`rt.*`) carry a JSON body with the connection's cursor.
  const control = (event, data, id) => {
    let body = {};
    try {
      body = data ? JSON.parse(data) : {};
    } catch {
      // No detail to read.
    }
    const cursor = Cursor.tryParse(body.cursor ?? id);
    if (cursor) previous = cursor;
    switch (event) {
      case 'rt.open':
        // Channels of the stream beyond the client's own: the server's connect hook joined them.
        ctx.joined((body.channels ?? []).filter((c) => !ctx.channels.includes(c)));
        // Without an id (a stream from `earliest`) the cursor only places the next events;
        // the client keeps resuming from `earliest` until it has seen one.
        if (cursor && id) ctx.position(cursor.toString(), { replace: false });
        ctx.open({ recovered: true });
        break;
      case 'rt.connected':
        ctx.connected(body);
        break;
      case 'rt.resync':
        if (cursor) ctx.position(cursor.toString(), { replace: true });
        ctx.resync(body.channels ?? ctx.channels);
        break;
      case 'rt.presence':
        ctx.presence(body);
        break;
      case 'rt.unsubscribed':
        if (cursor) ctx.position(cursor.toString(), { replace: false });
        ctx.unsubscribed(body.channels ?? []);
        break;
      case 'rt.disconnect':
        // The last event: the application ended this subject's connections.
        if (cursor) ctx.position(cursor.toString(), { replace: false });
        ended = true;
        abort.abort();
        ctx.disconnect({ reconnect: body.reconnect !== false, reason: body.reason ?? '' });
        break;
      case 'rt.expired':
        // The token expired: reconnect with a fresh one (see TOKEN_REFUSALS in client.js).
        if (cursor) ctx.position(cursor.toString(), { replace: false });
        end(Object.assign(new Error('SSE stream ended: the token has expired'), { code: 'token_expired' }));
        break;
      default:
        // rt.lagged and rt.shutdown end the stream; the reconnect resumes from the cursor.
        if (cursor) ctx.position(cursor.toString(), { replace: false });
        break;
    }
  };

  const run = async () => {
    const res = await fetchImpl(withQuery(ctx.urls.sse, params), { headers, signal: abort.signal, cache: 'no-store' });
    if (!res.ok) throw await errorFromResponse(res, 'SSE');
    const type = res.headers.get('content-type') ?? '';
    if (!type.startsWith('text/event-stream')) throw new Error(`SSE answered with ${type || 'no content type'}, not text/event-stream`);
    const parser = new SseParser(onEvent, () => {});
    ctx.alive();
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done || ended) break;
      ctx.alive();
      parser.push(decoder.decode(value, { stream: true }));
    }
    throw new Error('the SSE stream ended');
  };
  run().catch((e) => end(e));
  return { close: () => end(null) };
}

/**
 * The channel and offset of the event whose cursor is `next`. `previous` is the connection's
 * cursor before it (null at the start of a stream that did not resume); `known` is the
 * client's own cursor, used when the stream gave no reference yet.
 */
export function identify(previous, next, known) {
  if (previous && previous.epoch === next.epoch) return diff(withZeros(previous, next), next);
  // First event of a live stream or of a new epoch: the channel that moved past what the
  // client knows (offset 0 for channels it never saw in this epoch).
  const base = known && known.epoch === next.epoch ? known : new Cursor(next.epoch);
  return diff(withZeros(base, next), next);
}

/** `base` with every channel of `next` it lacks at offset 0. */
function withZeros(base, next) {
  const out = base.clone();
  for (const channel of next.offsets.keys()) if (!out.offsets.has(channel)) out.set(channel, 0);
  return out;
}
