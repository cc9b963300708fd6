// rt's WebSocket protocol driven by the Node `ws` package (run by tests/tests/ws.rs).
//
// usage: node ws-client.mjs ws://127.0.0.1:PORT/ws [deflate]
// The server must run with --cors-origins https://app.example.com; with `deflate`, also with
// --ws-compression, and every check runs over permessage-deflate (which `ws` offers).
// Prints "ws-client: ok" when every check passed; exits non-zero with the reason otherwise.

import { openWs } from './lib/ws-open.mjs';

const url = process.argv[2];
const deflate = process.argv[3] === 'deflate';

// Binary frames: a 4-byte length, the JSON header, the payload.
function binary(data) {
  const n = data.readUInt32BE(0);
  return { binary: JSON.parse(data.subarray(4, 4 + n)), payload: data.subarray(4 + n) };
}

function open(options = {}) {
  return openWs(url, options, binary);
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${typeof what === 'string' ? what : JSON.stringify(what)}`);
}

async function main() {
  // Origin allow-list: a foreign page is closed with 1008.
  const evil = open({ origin: 'https://evil.example.com' });
  await evil.opened;
  const refused = await evil.closed;
  check(refused.code === 1008 && refused.reason === 'origin_not_allowed', refused);

  const reader = open({ origin: 'https://app.example.com' });
  const writer = open();
  await Promise.all([reader.opened, writer.opened]);
  check(reader.protocol === 'rt.v1', `protocol ${reader.protocol}`);
  check(reader.extensions.includes('permessage-deflate') === deflate, `extensions ${reader.extensions}`);
  reader.json({ type: 'subscribe', channels: ['js', 'js:bin'], acks: true });
  const sub = await reader.recv();
  check(sub.type === 'subscribed' && sub.recovered === true, sub);

  writer.json({ type: 'publish', channel: 'js', data: 'hello', id: 'js-1' });
  const ack = await writer.recv();
  check(ack.type === 'published' && ack.offset === 1 && ack.id === 'js-1', ack);
  const ev = await reader.recv();
  check(ev.type === 'event' && ev.channel === 'js' && ev.offset === 1 && ev.data === 'hello', ev);
  reader.json({ type: 'ack', channel: 'js', offset: ev.offset });

  const header = Buffer.from(JSON.stringify({ type: 'publish', channel: 'js:bin' }));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(header.length);
  writer.send(Buffer.concat([len, header, Buffer.from([1, 2, 3])]));
  check((await writer.recv()).type === 'published', 'binary ack');
  const bin = await reader.recv();
  check(bin.binary.channel === 'js:bin' && Buffer.compare(bin.payload, Buffer.from([1, 2, 3])) === 0, bin);

  reader.json({ type: 'ping', id: 'p1' });
  const pong = await reader.recv();
  check(pong.type === 'pong' && pong.id === 'p1', pong);

  reader.close(1000);
  const bye = await reader.closed;
  check(bye.code === 1000, bye);
  writer.close();
  await writer.closed;
  console.log('ws-client: ok');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
