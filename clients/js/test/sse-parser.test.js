import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseParser } from '../src/sse-parser.js';

function parse(chunks) {
  const events = [];
  const comments = [];
  const p = new SseParser((e) => events.push(e), (c) => comments.push(c));
  for (const c of chunks) p.push(c);
  return { events, comments, parser: p };
}

test('named events, ids, multi-line data and comments', () => {
  const { events, comments, parser } = parse([
    '\ufeffretry: 1500\n: ping\n\nid: a,x=1\nevent: price\ndata: 1\n\n',
    'id: a,x=2\ndata: line 1\ndata: line 2\ndata:\n\n',
  ]);
  assert.deepEqual(events, [
    { event: 'price', data: '1', id: 'a,x=1' },
    { event: 'message', data: 'line 1\nline 2\n', id: 'a,x=2' },
  ]);
  assert.deepEqual(comments, ['ping']);
  assert.equal(parser.retry, 1500);
});

test('CRLF, CR and LF line ends, split anywhere between chunks', () => {
  const text = 'id: 1\r\ndata: a\r\rid: 2\ndata: b\r\n\r\nid: 3\rdata:c\r\r';
  const whole = parse([text]).events;
  assert.deepEqual(whole.map((e) => [e.id, e.data]), [['1', 'a'], ['2', 'b'], ['3', 'c']]);
  for (let i = 1; i < text.length; i++) {
    assert.deepEqual(parse([text.slice(0, i), text.slice(i)]).events, whole, `split at ${i}`);
  }
  assert.deepEqual(parse([...text]).events, whole, 'one character at a time');
});

test('no dispatch without data; an id with NUL is ignored; unknown fields are skipped', () => {
  const { events, parser } = parse(['id: a,x=5\n\nfoo: bar\nid: bad\0id\ndata: z\n\n']);
  assert.deepEqual(events, [{ event: 'message', data: 'z', id: 'a,x=5' }]);
  assert.equal(parser.lastEventId, 'a,x=5');
});

test('unicode payloads survive', () => {
  const { events } = parse(['data: héllo ✓ 😀\n\n']);
  assert.equal(events[0].data, 'héllo ✓ 😀');
});
