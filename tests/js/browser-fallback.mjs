// The @rt/client module, as rt-server serves it to pages, in Chromium: with WebSocket
// disabled on the server it falls back to SSE; after a restart with SSE disabled too it falls
// back to long polling, resuming from its cursor; every event reaches the application exactly
// once, in order, across both switches. A later connect() on the page starts with what
// worked. Arguments: the server's backplane arguments (kept across the restart).

import { assert, base, browser, publish, restartServer, run, until } from './browser-lib.mjs';

const backplane = process.argv.slice(2);

run(async () => {
  const b = await browser();
  const { page } = b;
  await page.goto(`${base}/health`);
  await page.evaluate(async () => {
    const { connect } = await import('/client/index.js');
    window.log = { events: [], statuses: [], errors: [], resyncs: [] };
    const c = connect(location.origin, { channels: ['feed'], backoff: { base: 200, cap: 2000 }, connectTimeout: 5000 });
    c.on('feed', (e) => window.log.events.push({ offset: e.offset, data: e.data, transport: e.transport }));
    c.onStatus((s) => window.log.statuses.push(`${s.state}:${s.transport}`));
    c.onError((e) => window.log.errors.push(`${e.transport}: ${e.message}`));
    c.onResync((r) => window.log.resyncs.push(r));
    window.client = c;
    window.connect = connect;
  });
  const log = () => page.evaluate(() => window.log);
  const transport = () => page.evaluate(() => window.client.status().state === 'open' && window.client.transport);

  // 1. WebSocket is off: the client ends up on SSE.
  await until('an open SSE connection', async () => (await transport()) === 'sse');
  let l = await log();
  assert(l.errors.some((e) => e.startsWith('ws:')), `no WebSocket failure seen: ${JSON.stringify(l.errors)}`);
  for (let i = 1; i <= 3; i++) await publish('feed', `sse ${i}`);
  // Publishing from the page: acknowledged over HTTP (no WebSocket), with a client id.
  const ack = await page.evaluate(() => window.client.publish('feed', 'from page 1', { id: 'page-1' }));
  assert(ack.offset === 4 && ack.duplicate === false, JSON.stringify(ack));
  // The same id again: an acknowledged duplicate, not a second event.
  const again = await page.evaluate(() => window.client.publish('feed', 'from page 1', { id: 'page-1' }));
  assert(again.offset === 4 && again.duplicate === true, JSON.stringify(again));
  await publish('feed', 'sse 5');
  await until('5 events over SSE', async () => (await log()).events.length === 5);

  // 2. Restart with SSE off as well: the client must land on long polling and resume.
  await restartServer(...backplane, '--disable', 'ws,sse');
  // Published while the client is reconnecting: only resuming from its cursor brings these.
  for (let i = 6; i <= 8; i++) await publish('feed', `gap ${i}`);
  await until('an open long-polling connection', async () => (await transport()) === 'poll', 20000);
  for (let i = 9; i <= 11; i++) await publish('feed', `poll ${i}`);
  await until('11 events', async () => (await log()).events.length >= 11, 20000);
  await new Promise((r) => setTimeout(r, 500));

  l = await log();
  const offsets = l.events.map((e) => e.offset);
  assert(JSON.stringify(offsets) === JSON.stringify([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]), `offsets ${JSON.stringify(offsets)}`);
  const data = l.events.map((e) => e.data);
  assert(data[3] === 'from page 1' && data[5] === 'gap 6' && data[10] === 'poll 11', JSON.stringify(data));
  assert(l.events.slice(0, 5).every((e) => e.transport === 'sse'), JSON.stringify(l.events));
  assert(l.events.slice(8).every((e) => e.transport === 'poll'), JSON.stringify(l.events));
  assert(l.resyncs.length === 0, `unexpected resync: ${JSON.stringify(l.resyncs)}`);
  assert(l.errors.some((e) => e.startsWith('sse:')), `no SSE failure seen: ${JSON.stringify(l.errors)}`);
  const reconnects = await page.evaluate(() => window.client.reconnects);
  assert(reconnects >= 1, `reconnects ${reconnects}`);

  // 3. A new client on the page starts with what worked (polling): no failed attempts first.
  const second = await page.evaluate(async () => {
    const errors = [];
    const c = window.connect(location.origin, { channels: ['feed'], cursor: 'earliest' });
    c.onError((e) => errors.push(e.message));
    const got = [];
    c.on('feed', (e) => got.push(e.offset));
    const end = Date.now() + 10000;
    while (got.length < 11 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    const transport = c.transport;
    c.close();
    return { errors, got, transport };
  });
  assert(second.transport === 'poll' && second.errors.length === 0, JSON.stringify(second));
  assert(JSON.stringify(second.got) === JSON.stringify(offsets), `earliest replay ${JSON.stringify(second.got)}`);

  console.log(`statuses ${l.statuses.join(' ')}`);
  console.log(`errors ${l.errors.join(' | ')}`);
  await page.evaluate(() => window.client.close());
  await b.close();
});
