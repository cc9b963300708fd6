// A connection of rt's WebSocket protocol (subprotocol `rt.v1`) with the Node `ws` package,
// for the scripts that drive it.

import WebSocket from "ws";

// Opens `url` with the `ws` options (headers, origin, ..). Heartbeats are dropped; every
// other text message is parsed as JSON, and a binary one is given to `binary(data)`, whose
// result is the message. Besides the WebSocket's own, the connection has:
//   recv(): the next message (rejects after 10 s without one),
//   json(m): sends `m` as a JSON text message,
//   opened: settles when the connection opens (rejects on an error before),
//   closed: resolves with {code, reason} when it closes.
export function openWs(url, options, binary) {
  const ws = new WebSocket(url, ["rt.v1"], options);
  const queue = [];
  const waiters = [];
  ws.on("message", (data, isBinary) => {
    let msg;
    if (isBinary) {
      msg = binary(data);
    } else {
      msg = JSON.parse(data.toString());
      if (msg.type === "heartbeat") return;
    }
    const w = waiters.shift();
    if (w) w(msg);
    else queue.push(msg);
  });
  ws.recv = () =>
    new Promise((resolve, reject) => {
      if (queue.length) return resolve(queue.shift());
      const timer = setTimeout(() => reject(new Error("no message within 10 s")), 10_000);
      waiters.push((m) => {
        clearTimeout(timer);
        resolve(m);
      });
    });
  ws.json = (m) => ws.send(JSON.stringify(m));
  ws.closed = new Promise((resolve) =>
    ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  ws.opened = new Promise((resolve, reject) => {
    ws.on("open", resolve);
    ws.on("error", reject);
  });
  return ws;
}
