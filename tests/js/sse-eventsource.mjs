// A real WHATWG EventSource (the `eventsource` package) against rt-server's /sse:
// named and default events, multi-line and unicode data, then a server-side disconnect
// (a TCP proxy in between drops the connection while the server keeps running), events
// published while the client is away, and the automatic reconnection with Last-Event-ID
// that must deliver every missed event of BOTH channels exactly once.
//
// Usage: node sse-eventsource.mjs <server base URL> <api key>
// Prints "ok: 12 events ..." and exits 0 on success; prints FAIL and exits 1 otherwise.

import { EventSource } from "eventsource";
import { cutProxy } from "./lib/cut-proxy.mjs";

const [base, key] = process.argv.slice(2);
const upstream = new URL(base);

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}
setTimeout(() => fail(`timed out; received ${JSON.stringify(received)}`), 30_000).unref();

// The proxy: it can cut every connection, and hold new ones until the test lets them through.
const proxy = await cutProxy(upstream);

async function publish(channel, event, data) {
  const res = await fetch(`${base}/api/publish`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": key },
    body: JSON.stringify(event ? { channel, event, data } : { channel, data }),
  });
  if (res.status !== 200) fail(`publish answered ${res.status}: ${await res.text()}`);
  return res.json();
}

// Event i: js-a events are named "price", js-b events are plain messages.
function spec(i) {
  const channel = i % 2 === 0 ? "js-a" : "js-b";
  const name = channel === "js-a" ? "price" : "message";
  const data =
    i === 3 ? "multi\nline\n\n with space" : i === 4 ? "ünïcødé – 🚀 \"quoted\"" : `e${i}`;
  return { channel, name, data };
}

const received = [];
let opens = 0;
let errors = 0;
let wake = () => {};
const changed = () => wake();
async function until(what, pred) {
  const deadline = Date.now() + 15_000;
  while (!pred()) {
    if (Date.now() > deadline) fail(`waiting for ${what}; received ${JSON.stringify(received)}`);
    await new Promise((resolve) => {
      wake = resolve;
      setTimeout(resolve, 50);
    });
  }
}

const es = new EventSource(`${proxy.url}/sse?channel=js-a&channel=js-b`);
const record = (name) => (e) => {
  received.push({ name, data: e.data, id: e.lastEventId });
  changed();
};
es.addEventListener("price", record("price"));
es.onmessage = record("message");
es.addEventListener("rt.open", () => {
  opens++;
  changed();
});
es.addEventListener("rt.resync", (e) => fail(`unexpected rt.resync: ${e.data}`));
es.addEventListener("rt.lagged", (e) => fail(`unexpected rt.lagged: ${e.data}`));
es.onerror = () => {
  errors++;
  changed();
};

await until("the stream to open", () => opens === 1);
for (let i = 0; i < 6; i++) {
  const { channel, name, data } = spec(i);
  await publish(channel, name === "message" ? undefined : name, data);
}
await until("the first 6 events", () => received.length === 6);
const lastIdBeforeCut = received[5].id;

// Server-side disconnect: every connection through the proxy is dropped, and reconnections
// wait at the proxy until 6 more events have been published.
const open = proxy.cut();
await until("the EventSource to notice the disconnect", () => errors >= 1);
for (let i = 6; i < 12; i++) {
  const { channel, name, data } = spec(i);
  await publish(channel, name === "message" ? undefined : name, data);
}
open();

await until("the reconnection", () => opens === 2);
await until("all 12 events", () => received.length >= 12);
await publish("js-b", undefined, "sentinel");
await until("the sentinel", () => received.some((r) => r.data === "sentinel"));
es.close();
proxy.close();

const events = received.filter((r) => r.data !== "sentinel");
if (events.length !== 12) fail(`expected 12 events exactly once, got ${JSON.stringify(events)}`);
for (let i = 0; i < 12; i++) {
  const want = spec(i);
  const got = events.find((e) => e.data === want.data);
  if (!got) fail(`event ${i} (${JSON.stringify(want.data)}) was lost`);
  if (got.name !== want.name) fail(`event ${i} came as ${got.name}, expected ${want.name}`);
}
// Per-channel order, and each event's lastEventId names both channels.
for (const channel of ["js-a", "js-b"]) {
  const want = [...Array(12).keys()].map(spec).filter((s) => s.channel === channel).map((s) => s.data);
  const got = events.filter((e) => want.includes(e.data)).map((e) => e.data);
  if (JSON.stringify(got) !== JSON.stringify(want)) fail(`order on ${channel}: ${JSON.stringify(got)}`);
}
for (const e of events) {
  if (!/^[0-9a-f]+,js-a=\d+,js-b=\d+$/.test(e.id)) fail(`lastEventId ${e.id} is not the connection cursor`);
}
const resumed = proxy.requestHeads[1] ?? "";
const header = resumed.match(/^last-event-id:\s*(.*)\r$/im);
if (!header || header[1] !== lastIdBeforeCut) {
  fail(`the reconnection did not send Last-Event-ID ${lastIdBeforeCut}: ${JSON.stringify(resumed)}`);
}
console.log(`ok: 12 events exactly once across a server-side disconnect; resumed with Last-Event-ID ${lastIdBeforeCut}`);
process.exit(0);
