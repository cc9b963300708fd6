// Chromium's native WebSocket against rt-server: subscribe, publish with a client message id,
// get the acknowledgement and the event itself back; a repeated publish is acknowledged as a
// duplicate and not delivered twice.

import { assert, base, browser, run } from './browser-lib.mjs';

run(async () => {
  const b = await browser();
  const { page } = b;
  await page.goto(`${base}/health`);
  const result = await page.evaluate(
    (url) =>
      new Promise((resolve, reject) => {
        const seen = [];
        const ws = new WebSocket(url);
        const timer = setTimeout(() => reject(new Error(`timeout; saw ${JSON.stringify(seen)}`)), 10000);
        const send = (m) => ws.send(JSON.stringify(m));
        ws.onopen = () => send({ type: 'subscribe', channels: ['room'] });
        ws.onerror = () => reject(new Error('WebSocket error'));
        ws.onmessage = (m) => {
          const msg = JSON.parse(m.data);
          seen.push(msg);
          if (msg.type === 'subscribed') send({ type: 'publish', channel: 'room', data: 'hi from chromium', id: 'b-1' });
          const acks = seen.filter((x) => x.type === 'published');
          const events = seen.filter((x) => x.type === 'event');
          if (msg.type === 'published' && acks.length === 1) send({ type: 'publish', channel: 'room', data: 'hi from chromium', id: 'b-1' });
          if (acks.length === 2 && events.length === 1) {
            // Give a wrongly repeated event time to show up.
            setTimeout(() => {
              clearTimeout(timer);
              ws.close(1000);
              resolve(seen);
            }, 300);
          }
        };
      }),
    `${base.replace('http', 'ws')}/ws`,
  );
  const subscribed = result.find((m) => m.type === 'subscribed');
  assert(subscribed && subscribed.channels.includes('room'), JSON.stringify(result));
  const acks = result.filter((m) => m.type === 'published');
  assert(acks[0].id === 'b-1' && acks[0].duplicate === false && acks[0].offset === 1, JSON.stringify(acks[0]));
  assert(acks[1].duplicate === true && acks[1].offset === 1, JSON.stringify(acks[1]));
  const events = result.filter((m) => m.type === 'event');
  assert(events.length === 1, JSON.stringify(events));
  assert(events[0].channel === 'room' && events[0].data === 'hi from chromium' && events[0].offset === 1, JSON.stringify(events[0]));
  await b.close();
});
