// @rt/client in Node against the real rt-server (RT_URL), with the `ws` package as its
// WebSocket: resume from a cursor on every transport, recovered: false surfaced, the
// heartbeat watchdog replacing a silent connection, and a publish whose acknowledgement is
// lost retried to an exactly-once effect. A small TCP proxy between client and server makes
// connections go silent without closing them, as a dead NAT or a stuck proxy does.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import WebSocket from 'ws';
import { connect } from '../../clients/js/src/index.js';
import { base, publish, until } from './browser-lib.mjs';

const opts = { WebSocket, backoff: { base: 100, cap: 1000 }, connectTimeout: 5000 };

/** A TCP proxy to the server whose existing connections can be muted (server → client). */
async function proxy() {
  const target = new URL(base);
  const conns = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    const conn = { client, upstream, muted: false };
    conns.add(conn);
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => conn.muted || client.write(d));
    const close = () => {
      conns.delete(conn);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** Silences every connection open now; new ones work. */
    mute: () => conns.forEach((c) => (c.muted = true)),
    close: () => {
      conns.forEach((c) => c.client.destroy());
      server.close();
    },
  };
}

function collect(client, channel = '*') {
  const got = [];
  client.on(channel, (e) => got.push(e));
  return got;
}

const clients = [];
function open(url, options) {
  const c = connect(url, { ...opts, ...options });
  clients.push(c);
  return c;
}
after(() => clients.forEach((c) => c.close()));

for (const transport of ['ws', 'sse', 'poll', 'short-poll']) {
  test(`${transport}: resumes every channel from a saved cursor, each event once`, async () => {
    const [a, b] = [`${transport}-a`, `${transport}-b`];
    const first = open(base, { channels: [a, b], transports: [transport], pollInterval: 100 });
    const got = collect(first);
    await until('open', () => first.state === 'open');
    assert.equal(first.transport, transport);
    await publish(a, 'a1');
    await publish(b, 'b1');
    await until('2 events', () => got.length === 2);
    assert.ok(got.every((e) => e.transport === transport));
    const saved = first.status().cursor;
    first.close();
    assert.match(saved, new RegExp(`,${a}=1,${b}=1$`));

    await publish(b, 'b2');
    await publish(a, 'a2');
    const second = open(base, { channels: [a, b], transports: [transport], cursor: saved, pollInterval: 100 });
    const again = collect(second);
    await publish(a, 'a3');
    await until('3 events', () => again.length >= 3);
    await new Promise((r) => setTimeout(r, 300));
    const seen = again.map((e) => `${e.channel}:${e.offset}:${e.data}`).sort();
    assert.deepEqual(seen, [`${a}:2:a2`, `${a}:3:a3`, `${b}:2:b2`]);
    second.close();
  });

  test(`${transport}: a cursor the server cannot honour is reported as recovered: false`, async () => {
    const channel = `${transport}-lost`;
    await publish(channel, 'x');
    // An epoch the server never had: continuity cannot be proven.
    const c = open(base, { channels: [channel], transports: [transport], cursor: `abcdef,${channel}=1`, pollInterval: 100 });
    const resyncs = [];
    c.onResync((r) => resyncs.push(r));
    const got = collect(c);
    await until('a resync', () => resyncs.length > 0);
    assert.deepEqual(resyncs[0].channels, [channel]);
    assert.equal(resyncs[0].recovered, false);
    // It goes on live from the server's position.
    await until('open', () => c.state === 'open');
    await publish(channel, 'after');
    await until('the live event', () => got.some((e) => e.data === 'after'));
    assert.equal(got.at(-1).offset, 2);
    c.close();
  });
}

test('the heartbeat watchdog replaces a silent connection and resumes without loss', async () => {
  const p = await proxy();
  try {
    const c = open(p.url, { channels: ['hb'], transports: ['ws'], heartbeat: { interval: 300, slack: 300 } });
    const got = collect(c);
    const errors = [];
    c.onError((e) => errors.push(e.message));
    await until('open', () => c.state === 'open');
    await publish('hb', '1');
    await until('event 1', () => got.length === 1);
    p.mute();
    // Sent while the connection is silent: lost on it, brought back by the resume.
    await publish('hb', '2');
    await publish('hb', '3');
    await until('a reconnect', () => c.reconnects === 1 && c.state === 'open', 10000);
    assert.ok(errors.some((m) => m.includes('presumed dead')), JSON.stringify(errors));
    await until('events 2 and 3', () => got.length === 3);
    assert.deepEqual(got.map((e) => e.data), ['1', '2', '3']);
  } finally {
    p.close();
  }
});

test('a publish whose acknowledgement is lost is retried with its id: stored once', async () => {
  const p = await proxy();
  try {
    const c = open(p.url, { channels: ['acks'], transports: ['ws'], heartbeat: { interval: 400, slack: 400 }, ackTimeout: 200 });
    const got = collect(c);
    await until('open', () => c.state === 'open');
    // The server gets the publish but its answer never reaches the client.
    p.mute();
    const ack = await c.publish('acks', 'once', { id: 'lost-ack-1' });
    assert.equal(ack.id, 'lost-ack-1');
    assert.equal(ack.offset, 1);
    assert.equal(ack.duplicate, true, 'the ack that arrived must be for a retry');
    await until('the event', () => got.length === 1, 10000);
    await publish('acks', 'next');
    await until('the next event', () => got.length === 2);
    assert.deepEqual(got.map((e) => `${e.offset}:${e.data}`), ['1:once', '2:next']);
  } finally {
    p.close();
  }
});

test('publish over WebSocket is acknowledged, binary payloads travel as base64', async () => {
  const c = open(base, { channels: ['bin'], transports: ['ws'] });
  const got = collect(c, 'bin');
  await until('open', () => c.state === 'open');
  const ack = await c.publish('bin', new Uint8Array([0, 255, 7]), { event: 'blob' });
  assert.equal(ack.duplicate, false);
  await until('the event', () => got.length === 1);
  assert.equal(got[0].encoding, 'base64');
  assert.equal(got[0].data, Buffer.from([0, 255, 7]).toString('base64'));
  assert.equal(got[0].event, 'blob');
});

test('bad input is refused up front', () => {
  assert.throws(() => connect(base, { channels: [] }), /at least one channel/);
  assert.throws(() => connect(base, { channels: ['a'], transports: ['carrier-pigeon'] }), /unknown transport/);
});

test('the same message id published twice at once is one publish with one answer', async () => {
  const c = open(base, { channels: ['twice'], transports: ['sse'] });
  const got = collect(c);
  await until('open', () => c.state === 'open');
  const [a, b] = await Promise.all([c.publish('twice', 'x', { id: 'same-1' }), c.publish('twice', 'x', { id: 'same-1' })]);
  assert.deepEqual(a, b);
  assert.equal(a.offset, 1);
  await until('the event', () => got.length === 1);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(got.length, 1);
  // A generated id is random and well-formed.
  const ack = await c.publish('twice', 'y');
  assert.match(ack.id, /^m-[0-9a-f]{32}$/);
});
