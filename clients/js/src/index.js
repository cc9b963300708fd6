// rt browser and Node client: one API over WebSocket, SSE and long or short polling.
export { connect, Client, DEFAULT_TRANSPORTS } from './client.js';
export { Backoff, fullJitter } from './backoff.js';
export { Cursor } from './cursor.js';
