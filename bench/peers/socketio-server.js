// Socket.IO v4 broadcast server: a client's `pub` event is broadcast to every other client
// as `m` (Socket.IO encodes a broadcast packet once and writes it to each socket).
// WebSocket transport only, no HTTP long-polling upgrade, so the comparison is WS to WS.
// Usage: node socketio-server.js PORT
'use strict';
const { createServer } = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[2] || 9003);
const httpServer = createServer();
const io = new Server(httpServer, {
  transports: ['websocket'],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
});

io.on('connection', (socket) => {
  socket.on('pub', (data) => socket.broadcast.emit('m', data));
});
httpServer.listen(port, '127.0.0.1', () => console.log(`socket.io server on 127.0.0.1:${port}`));
