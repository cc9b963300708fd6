import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cursor, diff } from '../src/cursor.js';
import { identify } from '../src/transports/sse.js';

test('parses and prints in the server format, channels in byte order', () => {
  const c = Cursor.parse('9f2c,trades=7,prices=42,chat:room-1=0');
  assert.equal(c.epoch, '9f2c');
  assert.equal(c.get('prices'), 42);
  assert.equal(c.toString(), '9f2c,chat:room-1=0,prices=42,trades=7');
  assert.equal(c.toString(['trades', 'nope']), '9f2c,trades=7');
  assert.equal(new Cursor().toString(), '');
  assert.equal(Cursor.parse('ff').toString(), 'ff');
});

test('rejects what the server would reject', () => {
  for (const bad of ['', ',a=1', 'zz', 'FF', '1,a', '1,a=', '1,a=01', '1,a=-1', '1,a=1,a=2', '1,=3', '12345678901234567']) {
    assert.throws(() => Cursor.parse(bad), SyntaxError, bad);
    assert.equal(Cursor.tryParse(bad), null);
  }
  assert.equal(Cursor.tryParse('earliest'), null);
});

test('adopt keeps the furthest offset, replaces on resync or a new epoch', () => {
  const c = Cursor.parse('a,x=5,y=2');
  c.adopt(Cursor.parse('a,x=3,y=4,z=0'));
  assert.equal(c.toString(), 'a,x=5,y=4,z=0');
  c.adopt(Cursor.parse('a,x=1'), { replace: true });
  assert.equal(c.get('x'), 1);
  c.adopt(Cursor.parse('b,x=9'));
  assert.equal(c.toString(), 'b,x=9');
});

test('diff finds the one channel that moved', () => {
  assert.deepEqual(diff(Cursor.parse('a,x=1,y=1'), Cursor.parse('a,x=1,y=2')), { channel: 'y', offset: 2 });
  assert.equal(diff(Cursor.parse('a,x=1'), Cursor.parse('a,x=1')), null);
  assert.throws(() => diff(Cursor.parse('a,x=1,y=1'), Cursor.parse('a,x=2,y=2')), /both/);
  assert.throws(() => diff(Cursor.parse('a,x=1'), Cursor.parse('b,x=2')), /epoch/);
});

test('identify places SSE events from consecutive ids, or from what the client knows', () => {
  const next = Cursor.parse('a,x=4,y=9');
  assert.deepEqual(identify(Cursor.parse('a,x=3,y=9'), next, null), { channel: 'x', offset: 4 });
  // First event of a stream: the client's own cursor is the reference.
  assert.deepEqual(identify(null, next, Cursor.parse('a,x=4,y=8')), { channel: 'y', offset: 9 });
  // A channel the reference lacks counts as 0.
  assert.deepEqual(identify(Cursor.parse('a,x=4'), next, null), { channel: 'y', offset: 9 });
  // New epoch with one channel past zero.
  assert.deepEqual(identify(Cursor.parse('a,x=4'), Cursor.parse('b,x=0,y=1'), null), { channel: 'y', offset: 1 });
});
