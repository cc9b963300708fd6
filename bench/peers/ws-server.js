// Node `ws` broadcast server, written the way the ws README shows broadcasting.
// A client connected to /pub publishes: each of its messages goes to every other client.
// Usage: node ws-server.js PORT
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 9002);
// perMessageDeflate off (the ws default for servers) so no side pays for compression.
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
const subscribers = new Set();

wss.on('connection', (socket, req) => {
  if (req.url === '/pub') {
    socket.on('message', (data, isBinary) => {
      for (const client of subscribers) {
        if (client.readyState === 1) client.send(data, { binary: isBinary });
      }
    });
    return;
  }
  subscribers.add(socket);
  socket.on('close', () => subscribers.delete(socket));
  socket.on('error', () => subscribers.delete(socket));
});
wss.on('listening', () => console.log(`ws broadcast server on 127.0.0.1:${port}`));
