// Long and short polling (docs/protocol.md, "Long and short polling"). Each request carries
// the cursor, so any server node can answer it, and the poll session, so that the client is
// one presence member across its polls and hears joins and leaves between them.

import { withQuery } from '../url.js';
import { errorFromResponse } from './http.js';

/**
 * Polls for `ctx`. Long polling (`long: true`) holds each request open on the server until an
 * event exists or `ctx.pollTimeout` seconds pass; short polling asks with `timeout=0` every
 * `ctx.pollInterval` milliseconds. Open once the first poll was answered.
 */
export function openPoll(ctx, { long = true } = {}) {
  const fetchImpl = ctx.impl.fetch;
  const abort = new AbortController();
  let ended = false;
  let timer = null;
  const end = (reason) => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    abort.abort();
    ctx.closed(reason);
  };
  if (typeof fetchImpl !== 'function') {
    end(new Error('no fetch implementation: pass options.fetch'));
    return { close() {} };
  }
  const headers = {};
  if (ctx.token) headers.Authorization = `Bearer ${ctx.token}`;
  const timeout = long ? ctx.pollTimeout : 0;
  let opened = false;

  const once = async () => {
    const params = ctx.channels.map((c) => ['channel', c]);
    const resume = ctx.resumeFrom();
    if (resume) params.push(['cursor', resume]);
    if (ctx.pollSession) params.push(['session', ctx.pollSession]);
    // The first poll answers at once: it proves the route works (a fallback must not wait a
    // whole hold time to learn that) and returns the live cursor to wait on from then on.
    params.push(['timeout', String(opened ? timeout : 0)]);
    // The request itself is the sign of life while it is held; the watchdog ends one held
    // longer than the heartbeat allows.
    ctx.alive();
    const res = await fetchImpl(withQuery(ctx.urls.poll, params), { headers, signal: abort.signal, cache: 'no-store' });
    if (!res.ok) throw await errorFromResponse(res, 'poll');
    const body = await res.json();
    if (ended) return 0;
    ctx.alive();
    if (!opened) {
      opened = true;
      ctx.open({ recovered: body.recovered !== false });
    }
    if (typeof body.session === 'string') ctx.pollSession = body.session;
    for (const e of body.events ?? []) ctx.event(e);
    for (const p of body.presence ?? []) ctx.presence(p);
    if (body.presence_lost) ctx.presenceLost();
    if (typeof body.cursor === 'string' && body.cursor) ctx.position(body.cursor, { replace: body.recovered === false });
    if (body.recovered === false) ctx.resync(body.resynced?.length ? body.resynced : ctx.channels);
    if (body.unsubscribed?.length) ctx.unsubscribed(body.unsubscribed);
    if (body.disconnect) {
      ended = true;
      abort.abort();
      ctx.disconnect({ reconnect: body.disconnect.reconnect !== false, reason: body.disconnect.reason ?? '' });
      return 0;
    }
    return (body.events ?? []).length;
  };

  const loop = async () => {
    while (!ended) {
      const got = await once();
      // A short poll that got events asks again at once: more may be waiting (batching).
      if (!long && got === 0 && !ended) await new Promise((r) => (timer = setTimeout(r, ctx.pollInterval)));
    }
  };
  loop().catch((e) => end(e));
  return { close: () => end(null) };
}
