import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withQuery } from '../src/url.js';

test('channel names and cursors go into a query without growing', () => {
  const cursor = '9f2c41d0a1b2c3d4,chat:room/1=42,user@x=7';
  const url = withQuery('http://h:1/poll', [['channel', 'chat:room/1'], ['channel', 'user@x'], ['cursor', cursor]]);
  assert.equal(url, `http://h:1/poll?channel=chat:room/1&channel=user@x&cursor=${cursor}`);
  assert.equal(new URL(url).searchParams.get('cursor'), cursor);
});

test('anything else is still percent-encoded', () => {
  const url = withQuery('http://h/sse?x=1', [['token', 'a b&c+d#e%']]);
  assert.equal(url, 'http://h/sse?x=1&token=a%20b%26c%2Bd%23e%25');
  assert.equal(new URL(url).searchParams.get('token'), 'a b&c+d#e%');
  assert.equal(withQuery('http://h/ws', []), 'http://h/ws');
});
