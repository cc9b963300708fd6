// rt's WebSocket protocol driven by the Node `ws` package, against the transports mounted
// in-process by tests/tests/embedding.rs (axum, or plain hyper). The token, when not empty,
// is sent as `Authorization: Bearer`.
//
// Usage:
//   node embed-ws.mjs resume <ws URL> <token> <plan JSON>
//     plan: {"channels": [..], "before": [[channel, data], ..], "after": [..], "sentinel": [channel, data]}
//     A reader subscribes (live) to the channels; a writer publishes `before`; the reader
//     processes them, builds its cursor from them and goes away; `after` is published; a new
//     connection subscribes with the cursor; the sentinel is published live, and everything up
//     to it is recorded.
//     Prints {subscribed, first, cursor, resubscribed, second, unexpected}.
//   node embed-ws.mjs subscribe <ws URL> <token> <channel>
//     Opens a connection, subscribes to the channel and prints {opened, message} with the first
//     answer, or {opened, closed: {code, reason}} when the server closes instead.
//
// Prints one JSON line and exits 0; prints FAIL and exits 1 when a step fails. The test
// asserts on the JSON.

import { openWs } from "./lib/ws-open.mjs";

const [mode, url, token, arg] = process.argv.slice(2);

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}
setTimeout(() => fail("timed out"), 25_000).unref();

function open() {
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  return openWs(url, { headers }, () => fail("unexpected binary frame"));
}

async function resume(plan) {
  const unexpected = [];
  // Reads events until `done` says so; anything else than an event is recorded as unexpected.
  async function events(ws, done) {
    const got = [];
    while (!done(got)) {
      const m = await ws.recv();
      if (m.type === "event") got.push({ channel: m.channel, offset: m.offset, epoch: m.epoch, data: m.data });
      else unexpected.push(m);
    }
    return got;
  }

  const writer = open();
  const reader = open();
  await Promise.all([writer.opened, reader.opened]);
  let n = 0;
  async function publish([channel, data]) {
    const id = `m-${++n}`;
    writer.json({ type: "publish", channel, data, id });
    const ack = await writer.recv();
    if (ack.type !== "published" || ack.id !== id) fail(`publish of ${data}: ${JSON.stringify(ack)}`);
  }

  reader.json({ type: "subscribe", channels: plan.channels });
  const subscribed = await reader.recv();
  if (subscribed.type !== "subscribed") fail(`subscribe: ${JSON.stringify(subscribed)}`);
  for (const event of plan.before) await publish(event);
  const first = await events(reader, (got) => got.length >= plan.before.length);

  // The client's cursor: the subscription's, advanced by every event it processed.
  const [epoch, ...positions] = subscribed.cursor.split(",");
  const offsets = new Map(positions.map((p) => p.split("=")).map(([c, o]) => [c, Number(o)]));
  for (const e of first) {
    if (e.epoch !== epoch) fail(`event of epoch ${e.epoch}, subscribed in ${epoch}`);
    offsets.set(e.channel, e.offset);
  }
  const cursor = [epoch, ...[...offsets].map(([c, o]) => `${c}=${o}`)].join(",");
  reader.close(1000);
  const bye = await reader.closed;
  if (bye.code !== 1000) fail(`reader closed with ${JSON.stringify(bye)}`);

  for (const event of plan.after) await publish(event);
  const again = open();
  await again.opened;
  again.json({ type: "subscribe", channels: plan.channels, cursor });
  const resubscribed = await again.recv();
  // Replayed events follow `subscribed`; the sentinel is published after it, live.
  await publish(plan.sentinel);
  const second = await events(again, (got) => got.some((e) => e.data === plan.sentinel[1]));
  again.close(1000);
  writer.close(1000);
  await Promise.all([again.closed, writer.closed]);
  return { subscribed, first, cursor, resubscribed, second, unexpected };
}

async function subscribe(channel) {
  const ws = open();
  let opened = false;
  try {
    await ws.opened;
    opened = true;
  } catch (e) {
    return { opened, error: String(e) };
  }
  ws.json({ type: "subscribe", channels: [channel] });
  const outcome = await Promise.race([
    ws.closed.then((closed) => ({ closed })),
    ws.recv().then((message) => ({ message })),
  ]);
  if (outcome.message) {
    ws.close(1000);
    await ws.closed;
  }
  return { opened, ...outcome };
}

try {
  const result = mode === "resume" ? await resume(JSON.parse(arg)) : await subscribe(arg);
  console.log(JSON.stringify(result));
  process.exit(0);
} catch (e) {
  fail(e.stack ?? String(e));
}
