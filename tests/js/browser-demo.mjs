// The demo page at `/`: four columns (WebSocket, SSE, long polling, automatic) each open over
// their transport; ten published events show up once in every column; after a server restart
// (in-memory history: lost) every column shows its reconnect and the resync, and goes on;
// a screenshot is saved as target/artifacts/demo.png.

import { join } from 'node:path';
import { artifacts, assert, base, browser, restartServer, run, until } from './browser-lib.mjs';

run(async () => {
  const b = await browser();
  const { page } = b;
  await page.goto(`${base}/`);
  const columns = () =>
    page.evaluate(() => window.rtDemo.columns.map(({ title, state, transport, reconnects, resyncs, events }) => ({ title, state, transport, reconnects, resyncs, n: events.length })));
  await until('every column open', async () => (await columns()).every((c) => c.state === 'open'));
  const cols = await columns();
  assert(JSON.stringify(cols.map((c) => c.transport)) === JSON.stringify(['ws', 'sse', 'poll', 'ws']), JSON.stringify(cols));

  await page.click('#burst');
  await until('10 events in every column', async () => (await columns()).every((c) => c.n === 10));
  await page.fill('#message', 'hello from the test');
  await page.click('button[type=submit]');
  await until('11 events in every column', async () => (await columns()).every((c) => c.n === 11));
  const offsets = await page.evaluate(() => window.rtDemo.columns.map((c) => c.events.map((e) => e.offset).join(',')));
  for (const o of offsets) assert(o === '1,2,3,4,5,6,7,8,9,10,11', `offsets ${o}`);
  assert((await page.textContent('#published')).includes('#11'), 'publish status not shown');

  // A restart loses the in-memory history: every column reconnects and shows the resync.
  // Except that the long-polling column may see no reconnect at all: a held poll cut on a
  // reused keep-alive connection, before any answer, is resent by Chromium itself (as HTTP
  // clients may), and when the new server is already up the client only sees the resync.
  await restartServer();
  const reconnected = () =>
    page.evaluate(() => window.rtDemo.columns.every((c) => c.state === 'open' && c.resyncs >= 1 && (c.reconnects >= 1 || c.transport === 'poll')));
  await until('every column reconnected and resynced', reconnected, 30000, columns);
  await page.fill('#message', 'after the restart');
  await page.click('button[type=submit]');
  await until('12 events in every column', async () => (await columns()).every((c) => c.n === 12), 20000);
  const notes = await page.$$eval('ol', (lists) => lists.map((l) => l.textContent));
  const after = await columns();
  for (const [i, n] of notes.entries()) {
    const silent = after[i].transport === 'poll' && after[i].reconnects === 0;
    assert((silent || n.includes('reconnected over')) && n.includes('resync'), `column without reconnect/resync notes: ${n}`);
    // One loss, reported once.
    assert(n.split('resync').length === 2, `resync reported more than once: ${n}`);
  }

  const file = join(artifacts, 'demo.png');
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot ${file}`);
  await b.close();
});
