// Chromium's native EventSource against rt-server: named events and multi-line data arrive,
// and after the server is killed and restarted (history kept in Redis) the browser's own
// reconnection resumes with Last-Event-ID: the events published while it was away arrive,
// nothing is lost and nothing is repeated.

import { assert, base, browser, publish, restartServer, run, until } from './browser-lib.mjs';

run(async () => {
  const b = await browser();
  const { page } = b;
  // A page of the server's origin, so the stream is same-origin.
  await page.goto(`${base}/health`);
  await page.evaluate((url) => {
    window.got = [];
    window.errors = 0;
    window.opens = 0;
    const es = new EventSource(url);
    const record = (e) => window.got.push({ type: e.type, data: e.data, id: e.lastEventId });
    es.addEventListener('message', record);
    es.addEventListener('price', record);
    es.addEventListener('rt.open', () => window.opens++);
    es.onerror = () => window.errors++;
    window.es = es;
  }, `${base}/sse?channel=quotes&channel=news`);
  await until('the stream to open', () => page.evaluate(() => window.opens === 1));

  await publish('quotes', '101.5', 'price');
  await publish('news', 'line one\nline two');
  await publish('quotes', '102', 'price');
  await until('3 events', () => page.evaluate(() => window.got.length === 3));
  let got = await page.evaluate(() => window.got);
  // Order is promised per channel, not across channels (docs/delivery.md).
  const first = (type) => got.filter((e) => e.type === type).map((e) => e.data);
  assert(JSON.stringify(first('price')) === '["101.5","102"]', JSON.stringify(got));
  assert(JSON.stringify(first('message')) === '["line one\\nline two"]', JSON.stringify(got));
  // The id is the cursor of every channel of the connection.
  assert(/^[0-9a-f]+,news=1,quotes=2$/.test(got[2].id), `id ${got[2].id}`);

  // The server dies; the browser notices and keeps retrying every `retry:` (--sse-retry 2s).
  await restartServer();
  // Published before the browser is back: only Last-Event-ID can bring these.
  await publish('news', 'while away 1');
  await publish('quotes', '103', 'price');
  await publish('news', 'while away 2');
  await until('the reconnection', () => page.evaluate(() => window.opens === 2), 20000);
  await publish('quotes', '104', 'price');
  await until('7 events', () => page.evaluate(() => window.got.length >= 7), 20000);
  // Anything extra (a duplicate) would have arrived with the live event.
  await new Promise((r) => setTimeout(r, 300));
  got = await page.evaluate(() => window.got);
  // Order is kept per channel (the replay brings each channel's missed events in turn).
  const per = (type) => got.filter((e) => e.type === type).map((e) => e.data);
  const prices = per('price');
  const news = per('message');
  assert(JSON.stringify(prices) === JSON.stringify(['101.5', '102', '103', '104']), `prices ${JSON.stringify(prices)}`);
  assert(JSON.stringify(news) === JSON.stringify(['line one\nline two', 'while away 1', 'while away 2']), `news ${JSON.stringify(news)}`);
  assert(got.length === 7, `${got.length} events: ${JSON.stringify(got)}`);
  assert(/,news=3,quotes=4$/.test(got.at(-1).id), `last id ${got.at(-1).id}`);
  assert(await page.evaluate(() => window.errors) >= 1, 'the browser never saw the stream break');
  console.log(`last id ${got.at(-1).id}`);
  await b.close();
});
