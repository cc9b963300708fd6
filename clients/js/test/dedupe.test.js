import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cursor } from '../src/cursor.js';
import { Dedupe } from '../src/dedupe.js';

test('each (channel, offset) is accepted once, in any replay order', () => {
  const d = new Dedupe(new Cursor());
  const seen = [];
  // A first connection delivers 1..3 on x and 1 on y, then a replay after a reconnect
  // repeats part of that before going on.
  const stream = [['x', 1], ['x', 2], ['y', 1], ['x', 3], ['x', 2], ['x', 3], ['y', 1], ['x', 4], ['y', 2]];
  for (const [c, o] of stream) if (d.accept(c, 'e1', o)) seen.push(`${c}${o}`);
  assert.deepEqual(seen, ['x1', 'x2', 'y1', 'x3', 'x4', 'y2']);
  assert.equal(d.cursor.toString(), 'e1,x=4,y=2');
});

test('a new epoch restarts offsets for every channel', () => {
  const d = new Dedupe(Cursor.parse('e1,x=40,y=7'));
  assert.equal(d.accept('x', 'e1', 40), false);
  assert.equal(d.accept('x', 'e2', 1), true);
  assert.equal(d.cursor.toString(), 'e2,x=1,y=0');
  assert.equal(d.accept('y', 'e2', 1), true);
  assert.equal(d.accept('x', 'e2', 1), false);
});

test('resumes from a stored cursor without repeating what it covers', () => {
  const d = new Dedupe(Cursor.parse('e1,x=5'));
  assert.equal(d.accept('x', 'e1', 5), false);
  assert.equal(d.accept('x', 'e1', 6), true);
  // A channel the cursor did not track is new from its first event.
  assert.equal(d.accept('z', 'e1', 12), true);
});
