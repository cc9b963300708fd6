// Two real clients behind nginx, for the failover test of tests/tests/nginx.rs: a browser-like
// EventSource (the `eventsource` package: honours `retry:` and resends Last-Event-ID) and the
// @rt/client over WebSocket (with the `ws` package). Prints one JSON line per event and
// state change; the Rust test publishes, stops a node, and reads the lines. Argument: the
// proxy's base URL. Runs until killed.

import WebSocket from 'ws';
import { EventSource } from 'eventsource';
import { connect } from '../../clients/js/src/index.js';

const base = process.argv[2];
const out = (line) => console.log(JSON.stringify(line));

const es = new EventSource(`${base}/sse?channel=failover`);
es.addEventListener('rt.open', () => out({ client: 'eventsource', state: 'open' }));
es.addEventListener('rt.shutdown', () => out({ client: 'eventsource', state: 'shutdown' }));
es.onmessage = (e) => out({ client: 'eventsource', data: e.data, id: e.lastEventId });

const client = connect(base, {
  channels: ['failover'],
  WebSocket,
  transports: ['ws'],
  backoff: { base: 100, cap: 1000 },
});
client.onStatus((s) => out({ client: 'ws', state: s.state }));
client.onResync((r) => out({ client: 'ws', resync: r }));
client.on('failover', (e) => out({ client: 'ws', data: e.data, offset: e.offset }));
setTimeout(() => process.exit(3), 90000).unref();
