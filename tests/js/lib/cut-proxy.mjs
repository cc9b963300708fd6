// A local TCP proxy in front of an HTTP server, for tests of a server-side disconnect: it can
// cut every connection, and hold new ones until the test lets them through. It records the
// head of every request that goes through it (to see what a reconnection sent).

import net from "node:net";

// Listens on 127.0.0.1 (a free port) in front of `upstream` (a URL). Returns
//   url: the proxy's `http://127.0.0.1:port`,
//   requestHeads: the head of each request through it, in order,
//   cut(): drops every connection; new ones wait until the function it returns is called,
//   close(): stops listening.
export async function cutProxy(upstream) {
  const sockets = new Set();
  const requestHeads = [];
  let gate = Promise.resolve();
  const proxy = net.createServer(async (client) => {
    client.pause();
    sockets.add(client);
    await gate;
    const server = net.connect(Number(upstream.port), upstream.hostname);
    sockets.add(server);
    let head = "";
    client.on("data", (chunk) => {
      if (!head.includes("\r\n\r\n")) {
        head += chunk.toString("latin1");
        if (head.includes("\r\n\r\n")) requestHeads.push(head);
      }
    });
    const close = () => {
      client.destroy();
      server.destroy();
      sockets.delete(client);
      sockets.delete(server);
    };
    for (const s of [client, server]) {
      s.on("error", close);
      s.on("close", close);
    }
    client.pipe(server);
    server.pipe(client);
    client.resume();
  });
  await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${proxy.address().port}`,
    requestHeads,
    cut() {
      let letThrough;
      gate = new Promise((resolve) => (letThrough = resolve));
      for (const s of sockets) s.destroy();
      return letThrough;
    },
    close() {
      proxy.close();
    },
  };
}
