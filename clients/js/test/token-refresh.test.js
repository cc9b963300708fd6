import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../src/client.js';
import { closeError } from '../src/transports/ws.js';

/** A fake WebSocket server: `script(url, n)` says how the n-th connection goes. */
function fakeWebSocket(script) {
  const opened = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      const n = opened.push(url) - 1;
      setTimeout(() => {
        this.readyState = 1;
        this.onopen?.();
        script(this, n);
      }, 1);
    }
    send(text) {
      this.sent = [...(this.sent ?? []), JSON.parse(text)];
    }
    close() {
      this.readyState = 3;
    }
    refuse(reason) {
      this.readyState = 3;
      this.onclose?.({ code: 1008, reason });
    }
    reply(message) {
      this.onmessage?.({ data: JSON.stringify(message) });
    }
  }
  return { FakeWebSocket, opened };
}

test('a 1008 close reason becomes the error code', () => {
  assert.equal(closeError({ code: 1008, reason: 'token_expired' }).code, 'token_expired');
  assert.equal(closeError({ code: 1006, reason: '' }).code, undefined);
  assert.equal(closeError({ code: 1008, reason: 'some prose' }).code, undefined);
});

for (const reason of ['token_expired', 'invalid_token', 'token_required']) {
  test(`a WebSocket closed with 1008 ${reason} gets a fresh token and reconnects at once`, async () => {
    const { FakeWebSocket, opened } = fakeWebSocket((socket, n) => {
      if (n === 0) socket.refuse(reason);
      else socket.reply({ type: 'subscribed', channels: ['c'], recovered: true, resynced: [], cursor: 'ab,c=0' });
    });
    const hints = [];
    let issued = 0;
    const client = connect('http://rt.test', {
      channels: ['c'],
      transports: ['ws', 'sse'],
      WebSocket: FakeWebSocket,
      fetch: () => Promise.reject(new Error('no HTTP in this test')),
      // A blind backoff would wait up to a minute.
      backoff: { base: 60000, cap: 60000, random: () => 0.5 },
      token: (hint) => {
        hints.push(hint);
        return `t${++issued}`;
      },
    });
    const errors = [];
    client.onError((e) => errors.push(e));
    const started = Date.now();
    try {
      await new Promise((resolve, reject) => {
        client.onStatus((s) => s.state === 'open' && resolve());
        setTimeout(() => reject(new Error(`not open; opened ${opened.join(' ')}`)), 2000);
      });
    } finally {
      client.close();
    }
    assert.ok(Date.now() - started < 1000, 'no backoff');
    assert.deepEqual(opened, ['ws://rt.test/ws?token=t1', 'ws://rt.test/ws?token=t2']);
    assert.deepEqual(hints, [{ refresh: false }, { refresh: true, reason }]);
    assert.equal(errors[0].code, reason);
  });
}

test('a token refused again backs off instead of looping', async () => {
  const { FakeWebSocket, opened } = fakeWebSocket((socket) => socket.refuse('invalid_token'));
  const client = connect('http://rt.test', {
    channels: ['c'],
    transports: ['ws'],
    WebSocket: FakeWebSocket,
    backoff: { base: 60000, cap: 60000, random: () => 0.5 },
    token: () => 'still-bad',
  });
  await new Promise((r) => setTimeout(r, 300));
  client.close();
  assert.ok(opened.length <= 3, `${opened.length} connections`);
  assert.ok(opened.length >= 2, 'refreshed once');
});
