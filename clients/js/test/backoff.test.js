import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, fullJitter, DEFAULT_CAP } from '../src/backoff.js';

test('full jitter spans [0, base * 2^attempt) and never passes the cap', () => {
  const opts = { base: 100, cap: 30000 };
  assert.equal(fullJitter(0, { ...opts, random: () => 0 }), 0);
  assert.equal(fullJitter(0, { ...opts, random: () => 0.999999 }), 99);
  assert.equal(fullJitter(3, { ...opts, random: () => 0.5 }), 400);
  // 100 * 2^20 is far above the cap: the ceiling is the cap.
  assert.equal(fullJitter(20, { ...opts, random: () => 0.5 }), 15000);
  // Huge attempts overflow 2^n to Infinity, still capped.
  assert.equal(fullJitter(5000, { ...opts, random: () => 0.999999 }), 29999);
});

test('default cap is 30 s', () => {
  assert.equal(DEFAULT_CAP, 30000);
  for (let i = 0; i < 200; i++) {
    const d = fullJitter(i % 40);
    assert.ok(d >= 0 && d < 30000, `${d}`);
  }
});

test('delays are spread, not synchronised (full jitter, not equal jitter)', () => {
  const delays = Array.from({ length: 1000 }, () => fullJitter(10, { base: 1000, cap: 30000 }));
  // Uniform over [0, 30000): a quarter of the draws land below 7500 ms.
  const low = delays.filter((d) => d < 7500).length;
  assert.ok(low > 150 && low < 350, `${low} of 1000 below 7.5 s`);
  assert.ok(new Set(delays).size > 500);
});

test('Backoff grows with failures and resets after success', () => {
  const b = new Backoff({ base: 10, cap: 1000, random: () => 0.999 });
  assert.deepEqual([b.next(), b.next(), b.next(), b.next()], [9, 19, 39, 79]);
  for (let i = 0; i < 10; i++) b.next();
  assert.equal(b.next(), 999);
  b.reset();
  assert.equal(b.attempt, 0);
  assert.equal(b.next(), 9);
});

test('bad arguments are refused', () => {
  assert.throws(() => fullJitter(-1), RangeError);
  assert.throws(() => fullJitter(0, { base: 0 }), RangeError);
});
