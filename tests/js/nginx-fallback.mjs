// The @rt/client in Node (with the `ws` package) against rt-server behind an nginx that strips
// the Upgrade header: the WebSocket attempt fails, the client falls back to SSE and receives
// events through the proxy. Argument: the proxy's base URL. Prints "fell back to sse" and
// exits 0 on success.

import WebSocket from 'ws';
import { connect } from '../../clients/js/src/index.js';

const base = process.argv[2];
const fail = (message) => {
  console.error(message);
  process.exit(1);
};
setTimeout(() => fail('timed out after 45 s'), 45000).unref();

const until = async (what, check, ms = 20000) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  fail(`timed out waiting for ${what}`);
};

const errors = [];
const events = [];
const client = connect(base, {
  channels: ['nginx-fallback'],
  WebSocket,
  backoff: { base: 100, cap: 1000 },
  connectTimeout: 5000,
});
client.onError((e) => errors.push(`${e.transport}: ${e.message}`));
client.on('nginx-fallback', (e) => events.push(e));

await until('an open connection over SSE', () => client.status().state === 'open' && client.transport === 'sse');
if (!errors.some((e) => e.startsWith('ws:'))) fail(`no WebSocket failure was seen: ${JSON.stringify(errors)}`);

const res = await fetch(`${base}/api/publish`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', 'x-api-key': 'test-key' },
  body: JSON.stringify({ channel: 'nginx-fallback', data: 'via sse' }),
});
if (res.status !== 200) fail(`publish answered ${res.status}: ${await res.text()}`);
await until('the event', () => events.length === 1, 10000);
if (events[0].data !== 'via sse') fail(`unexpected event ${JSON.stringify(events[0])}`);
client.close();
console.log(`fell back to sse after: ${errors.join('; ')}`);
process.exit(0);
