// @rt/client's presence() in Node against the real rt-server (RT_URL), started with
// `--jwt-hs256-secret presence-js-secret --presence room:*`: members seen with their token
// info, pages chained, and refusals for a token without the grant and without a token; and
// onJoin/onLeave over WebSocket, SSE and long polling (started with `--poll-session-grace 1s`).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import WebSocket from 'ws';
import { connect } from '../../clients/js/src/index.js';
import { base, until } from './browser-lib.mjs';

const SECRET = 'presence-js-secret';

/** An HS256 JWT for `claims`, valid for ten minutes. */
function jwt(claims) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ exp: Math.floor(Date.now() / 1000) + 600, ...claims })}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

const clients = [];
function open(token, channels) {
  const c = connect(base, { channels, token, WebSocket, transports: ['ws'], connectTimeout: 5000 });
  clients.push(c);
  return c;
}
after(() => clients.forEach((c) => c.close()));

test('presence() lists the members of a channel the token grants, a page at a time', async () => {
  const alice = open(jwt({ sub: 'alice', subscribe: ['room:*'], presence: ['room:*'], info: { name: 'Alice' } }), ['room:1']);
  open(jwt({ sub: 'bob', subscribe: ['room:*'] }), ['room:1']);
  open(jwt({ sub: 'bob', subscribe: ['room:*'] }), ['room:1', 'room:2']);
  const full = await until('three members', async () => {
    const page = await alice.presence('room:1');
    return page.connections === 3 ? page : null;
  });
  assert.equal(full.subjects, 2);
  const first = await alice.presence('room:1', { limit: 2 });
  assert.equal(first.members.length, 2);
  assert.ok(first.cursor);
  const rest = await alice.presence('room:1', { limit: 2, cursor: first.cursor });
  assert.equal(rest.members.length, 1);
  assert.equal(rest.cursor, null);
  const members = [...first.members, ...rest.members];
  assert.equal(new Set(members.map((m) => m.client)).size, 3);
  const mine = members.filter((m) => m.subject === 'alice');
  assert.deepEqual(mine.map((m) => m.info), [{ name: 'Alice' }]);
});

test('presence() rejects with the status and code the server refused with', async () => {
  const bob = open(jwt({ sub: 'bob', subscribe: ['room:*'], presence: ['lobby'] }), ['room:3']);
  await assert.rejects(bob.presence('room:1'), (e) => e.status === 403 && e.code === 'forbidden');
  const carol = open(jwt({ sub: 'carol', subscribe: ['room:*'], presence: ['*'] }), ['room:3']);
  await assert.rejects(carol.presence('lobby'), (e) => e.status === 404 && e.code === 'presence_disabled');
  await assert.rejects(carol.presence('room:1', { limit: 0 }), (e) => e.status === 400);
  const res = await fetch(`${base}/presence?channel=room:1`);
  assert.equal(res.status, 401);
});

test('onJoin and onLeave surface who joins and leaves, over WebSocket and SSE', async () => {
  const grant = { subscribe: ['room:*'], presence: ['room:*'] };
  const viaWs = open(jwt({ sub: 'w', ...grant }), ['room:9']);
  const viaSse = connect(base, { channels: ['room:9'], token: jwt({ sub: 's', ...grant }), transports: ['sse'], connectTimeout: 5000 });
  clients.push(viaSse);
  const seen = { join: { ws: [], sse: [] }, leave: { ws: [], sse: [] } };
  viaWs.onJoin((j) => seen.join.ws.push(j));
  viaSse.onJoin((j) => seen.join.sse.push(j));
  viaWs.onLeave((l) => seen.leave.ws.push(l));
  viaSse.onLeave((l) => seen.leave.sse.push(l));
  await until('both watchers in presence', async () => (await viaWs.presence('room:9')).connections === 2);
  const dave = open(jwt({ sub: 'dave', ...grant, info: { name: 'Dave' } }), ['room:9']);
  const daves = (list) => list.find((j) => j.members.some((m) => m.subject === 'dave'));
  for (const t of ['ws', 'sse']) {
    const join = await until(`dave's join over ${t}`, async () => daves(seen.join[t]), 15000, () => seen.join[t]);
    assert.equal(join.channel, 'room:9');
    assert.equal(join.transport, t);
    assert.deepEqual(join.members.find((m) => m.subject === 'dave').info, { name: 'Dave' });
  }
  dave.close();
  for (const t of ['ws', 'sse']) {
    await until(`dave's leave over ${t}`, async () => daves(seen.leave[t]), 15000, () => seen.leave[t]);
  }
});

test('a long-polling client is one member across its polls and gets onJoin and onLeave', async () => {
  const grant = { subscribe: ['room:*'], presence: ['room:*'] };
  const watcher = open(jwt({ sub: 'watcher', ...grant }), ['room:p']);
  const joins = [];
  const leaves = [];
  watcher.onJoin((j) => joins.push(j));
  watcher.onLeave((l) => leaves.push(l));
  await until('the watcher in presence', async () => (await watcher.presence('room:p')).connections === 1);
  const poller = connect(base, { channels: ['room:p'], token: jwt({ sub: 'poller', ...grant }), transports: ['poll'], pollTimeout: 1, connectTimeout: 5000 });
  clients.push(poller);
  const seen = { join: [], leave: [] };
  poller.onJoin((j) => seen.join.push(j));
  poller.onLeave((l) => seen.leave.push(l));
  const pollers = (list) => list.filter((j) => j.members.some((m) => m.subject === 'poller'));
  await until('the poller hears its own join', async () => pollers(seen.join).length > 0, 15000, () => seen.join);
  assert.equal(seen.join[0].transport, 'poll');
  // Several polls later (each held 1 s at most) it is still the one member it was.
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(pollers(joins).length, 1, JSON.stringify(joins));
  assert.equal(pollers(leaves).length, 0, JSON.stringify(leaves));
  assert.equal((await watcher.presence('room:p')).connections, 2);
  const erin = open(jwt({ sub: 'erin', ...grant }), ['room:p']);
  const erins = (list) => list.find((j) => j.members.some((m) => m.subject === 'erin'));
  await until("erin's join over polling", async () => erins(seen.join), 15000, () => seen.join);
  erin.close();
  await until("erin's leave over polling", async () => erins(seen.leave), 15000, () => seen.leave);
  // Closed, the poller leaves once the server's grace (1 s) has passed.
  poller.close();
  await until("the poller's leave", async () => pollers(leaves).length === 1, 15000, () => leaves);
});
