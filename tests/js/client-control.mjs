// @rt/client in Node against the real rt-server (RT_URL) with JWT authentication: the server
// API's disconnect and unsubscribe reach the client on every transport. Arguments: tokens for
// the subjects js-ws, js-sse, js-poll and js-again (signed by the Rust test).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { connect } from '../../clients/js/src/index.js';
import { base, publish, until } from './browser-lib.mjs';

const [wsToken, sseToken, pollToken, againToken] = process.argv.slice(2);
const opts = { WebSocket, backoff: { base: 100, cap: 1000 }, connectTimeout: 5000, pollTimeout: 5 };

async function api(route, body) {
  const res = await fetch(`${base}/api/${route}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Api-Key': 'test-key' },
    body: JSON.stringify(body),
  });
  const answer = await res.json();
  if (!res.ok) throw new Error(`${route} answered ${res.status}: ${JSON.stringify(answer)}`);
  return answer;
}

const clients = [];
after(() => clients.forEach((c) => c.close()));

for (const [transport, token, subject] of [
  ['ws', wsToken, 'js-ws'],
  ['sse', sseToken, 'js-sse'],
  ['poll', pollToken, 'js-poll'],
]) {
  test(`${transport}: unsubscribed is surfaced, and reconnect: false keeps the client away`, async () => {
    const [a, b] = [`chat:${transport}-a`, `chat:${transport}-b`];
    const c = connect(base, { ...opts, channels: [a, b], transports: [transport], token });
    clients.push(c);
    const got = [];
    c.on('*', (e) => got.push(e));
    const unsubscribed = [];
    c.onUnsubscribed((u) => unsubscribed.push(u));
    const disconnects = [];
    c.onDisconnect((d) => disconnects.push(d));
    await until('open', () => c.state === 'open');

    // A poll hears signals only while one is held: repeat until one was (best effort).
    await until('unsubscribed', async () => {
      await api('unsubscribe', { subject, channel: a });
      await new Promise((r) => setTimeout(r, 200));
      return unsubscribed.length > 0;
    });
    assert.deepEqual(unsubscribed[0], { channels: [a], transport });
    assert.deepEqual(c.channels, [b]);
    await publish(b, 'still subscribed');
    await until('the event of b', () => got.some((e) => e.data === 'still subscribed'));

    await until('the disconnect', async () => {
      await api('disconnect', { subject, reconnect: false, reason: 'banned' });
      await new Promise((r) => setTimeout(r, 200));
      return disconnects.length > 0;
    });
    assert.deepEqual(disconnects[0], { reconnect: false, reason: 'banned', transport });
    assert.equal(c.state, 'closed');
    // It stays away: no reconnect, no more events.
    await new Promise((r) => setTimeout(r, 1500));
    await publish(b, 'after the ban');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(c.state, 'closed');
    assert.equal(c.reconnects, 0);
    assert.ok(!got.some((e) => e.data === 'after the ban'));
  });
}

test('ws: a disconnect that allows reconnecting resumes from the cursor', async () => {
  const channel = 'chat:again';
  const c = connect(base, { ...opts, channels: [channel], transports: ['ws'], token: againToken });
  clients.push(c);
  const got = [];
  c.on(channel, (e) => got.push(e));
  const disconnects = [];
  c.onDisconnect((d) => disconnects.push(d));
  await until('open', () => c.state === 'open');
  await publish(channel, 'one');
  await until('one', () => got.length === 1);
  await api('disconnect', { subject: 'js-again', reason: 'moved' });
  await until('the disconnect', () => disconnects.length === 1);
  assert.deepEqual(disconnects[0], { reconnect: true, reason: 'moved', transport: 'ws' });
  await publish(channel, 'two');
  await until('back and resumed', () => c.state === 'open' && got.length === 2);
  assert.equal(c.reconnects, 1);
  assert.deepEqual(got.map((e) => e.offset), [1, 2]);
});
