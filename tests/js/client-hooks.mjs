// @rt/client against the real rt-server (RT_URL) started with `--proxy-connect`, whose
// backend (served by tests/tests/js_client.rs) admits the token `carol`, joins her to
// `user:carol` and shows her `{"name": "Carol"}`: on every transport the client exposes the
// data (`client.data`, `onConnected`) and delivers the joined channel's events.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { connect } from '../../clients/js/src/index.js';
import { base, publish, until } from './browser-lib.mjs';

const clients = [];
after(() => clients.forEach((c) => c.close()));

for (const transport of ['ws', 'sse', 'poll']) {
  test(`${transport}: the connect hook's data is shown and its channel delivered`, async () => {
    const client = connect(base, { channels: ['chat:room'], token: 'carol', WebSocket, transports: [transport], connectTimeout: 5000, pollTimeout: 2 });
    clients.push(client);
    const shown = new Promise((resolve) => client.onConnected(resolve));
    const events = [];
    client.on('user:carol', (e) => events.push(e));
    const connected = await shown;
    assert.deepEqual(connected.data, { name: 'Carol' });
    assert.equal(connected.transport, transport);
    assert.deepEqual(client.data, { name: 'Carol' });
    await until('open', () => client.state === 'open');
    await until('the joined channel', () => client.joined.includes('user:carol'), 15000, () => client.joined);
    assert.deepEqual(client.channels, ['chat:room']);
    const body = `for carol over ${transport}`;
    await until(
      'the event of the joined channel',
      async () => {
        // Over WebSocket the channel is joined live once the connection opens: publish until
        // one arrives (each once: later ones are new events).
        if (events.length === 0) await publish('user:carol', body);
        await new Promise((r) => setTimeout(r, 200));
        return events.length > 0;
      },
      15000,
    );
    assert.equal(events[0].data, body);
    assert.equal(events[0].channel, 'user:carol');
    // The joined channel is part of the cursor the client would resume from.
    assert.match(client.status().cursor, /,user:carol=\d+/);
    client.close();
  });
}
