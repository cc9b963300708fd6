// Exact resume of SSE with a real WHATWG EventSource (the `eventsource` package), against the
// transports mounted in-process by tests/tests/embedding.rs (axum, or plain hyper).
//
// The stream goes through a local TCP proxy that cuts it, and holds the reconnection until the
// events of `after` are published: the EventSource must come back on its own with
// Last-Event-ID and get exactly the missed events of every channel.
//
// Usage: node embed-sse.mjs <base URL> <token> <plan JSON>
//   plan: {"channels": [..], "before": [[channel, data], ..], "after": [..], "sentinel": [channel, data]}
// Events are published with POST <base>/poll/publish and the token (as Bearer).
// Prints one JSON line {received, opens, resyncs, lastIdBeforeCut, resumedWith} and exits 0;
// prints FAIL and exits 1 when a step does not happen in time. The test asserts on the JSON.

import { EventSource } from "eventsource";
import { cutProxy } from "./lib/cut-proxy.mjs";

const [base, token, planJson] = process.argv.slice(2);
const plan = JSON.parse(planJson);
const upstream = new URL(base);

const received = [];
const resyncs = [];
let opens = 0;
let errors = 0;

function fail(message) {
  console.error(`FAIL: ${message}; received ${JSON.stringify(received)}`);
  process.exit(1);
}
setTimeout(() => fail("timed out"), 25_000).unref();

// The proxy: it can cut every connection, and hold new ones until the test lets them through.
const proxy = await cutProxy(upstream);

async function publish([channel, data]) {
  const res = await fetch(`${base}/poll/publish`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ channel, data }),
  });
  if (res.status !== 200) fail(`publish answered ${res.status}: ${await res.text()}`);
}

let wake = () => {};
async function until(what, pred) {
  const deadline = Date.now() + 10_000;
  while (!pred()) {
    if (Date.now() > deadline) fail(`waiting for ${what}`);
    await new Promise((resolve) => {
      wake = resolve;
      setTimeout(resolve, 50);
    });
  }
}

const query = plan.channels.map((c) => `channel=${encodeURIComponent(c)}`).join("&");
const es = new EventSource(`${proxy.url}/sse?${query}&token=${encodeURIComponent(token)}`);
es.onmessage = (e) => {
  received.push({ data: e.data, id: e.lastEventId, connection: opens });
  wake();
};
es.addEventListener("rt.open", () => {
  opens++;
  wake();
});
es.addEventListener("rt.resync", (e) => resyncs.push(e.data));
es.onerror = () => {
  errors++;
  wake();
};

await until("the stream to open", () => opens === 1);
for (const event of plan.before) await publish(event);
await until("the events published before the cut", () => received.length >= plan.before.length);
const lastIdBeforeCut = received.at(-1).id;

// Server-side disconnect: every connection through the proxy is dropped, and reconnections
// wait at the proxy until the events of `after` have been published.
const letThrough = proxy.cut();
await until("the EventSource to notice the disconnect", () => errors >= 1);
for (const event of plan.after) await publish(event);
letThrough();
await until("the reconnection", () => opens === 2);
// Everything replayed comes before a live event: once the sentinel is here, nothing is missing.
await publish(plan.sentinel);
await until("the sentinel", () => received.some((r) => r.data === plan.sentinel[1]));
es.close();
proxy.close();

const resumed = proxy.requestHeads[1] ?? "";
const header = resumed.match(/^last-event-id:\s*(.*)\r$/im);
console.log(
  JSON.stringify({ received, opens, resyncs, lastIdBeforeCut, resumedWith: header ? header[1] : null }),
);
process.exit(0);
