// The demo page's script (served at /demo.js by rt-server).
import { connect } from '/client/index.js';

const channel = new URLSearchParams(location.search).get('channel') || 'demo';
document.getElementById('channel-name').textContent = channel;

const columns = [
  { title: 'WebSocket', transports: ['ws'] },
  { title: 'Server-Sent Events', transports: ['sse'] },
  { title: 'Long polling', transports: ['poll'] },
  { title: 'Automatic', transports: ['ws', 'sse', 'poll'] },
];

// Read by the end-to-end tests: what each column received.
window.rtDemo = { columns: [] };

const grid = document.getElementById('grid');
for (const spec of columns) {
  const col = document.createElement('section');
  col.className = 'col';
  col.innerHTML = `<h2><span></span><span class="state">connecting</span></h2>
    <dl><dt>transport</dt><dd class="transport">-</dd><dt>reconnects</dt><dd class="reconnects">0</dd>
    <dt>events</dt><dd class="count">0</dd><dt>cursor</dt><dd class="cursor">-</dd></dl><ol></ol>`;
  col.querySelector('h2 span').textContent = spec.title;
  grid.append(col);
  const $ = (sel) => col.querySelector(sel);
  const list = $('ol');
  const seen = { title: spec.title, events: [], state: 'connecting', transport: null, reconnects: 0, resyncs: 0 };
  window.rtDemo.columns.push(seen);
  const add = (className, offset, text) => {
    const li = document.createElement('li');
    li.className = className;
    const off = document.createElement('span');
    off.className = 'off';
    off.textContent = offset;
    const body = document.createElement('span');
    body.textContent = text;
    li.append(off, body);
    list.prepend(li);
    while (list.children.length > 40) list.lastChild.remove();
  };
  const client = connect(location.origin, { channels: [channel], transports: spec.transports });
  spec.client = client;
  client.on(channel, (e) => {
    seen.events.push({ offset: e.offset, data: e.data, transport: e.transport });
    $('.count').textContent = seen.events.length;
    $('.cursor').textContent = client.status().cursor;
    add('new', `#${e.offset}`, `${e.event === 'message' ? '' : `${e.event}: `}${e.data}`);
  });
  client.onStatus((s) => {
    Object.assign(seen, { state: s.state, transport: s.transport, reconnects: s.reconnects });
    const badge = $('.state');
    badge.textContent = s.state;
    badge.className = `state ${s.state}`;
    $('.transport').textContent = s.transport ?? '-';
    $('.reconnects').textContent = s.reconnects;
    $('.cursor').textContent = s.cursor || '-';
    if (s.state === 'open' && s.reconnects > 0) add('note', '', `reconnected over ${s.transport}`);
  });
  client.onResync((r) => {
    seen.resyncs++;
    add('note', '', `resync: events missed on ${r.channels.join(', ')}`);
  });
}

// Publishing goes through the automatic column's client: over its WebSocket when it has one,
// else over HTTP, acknowledged and retried with the same message id.
const publisher = columns[3].client;
const status = document.getElementById('published');
let n = 0;
async function publish(text) {
  const ack = await publisher.publish(channel, text);
  status.textContent = `published #${ack.offset}${ack.duplicate ? ' (duplicate)' : ''}`;
  return ack;
}
document.getElementById('publish').addEventListener('submit', (e) => {
  e.preventDefault();
  publish(document.getElementById('message').value || `message ${++n}`).catch((err) => (status.textContent = err.message));
});
document.getElementById('burst').addEventListener('click', async () => {
  try {
    for (let i = 0; i < 10; i++) await publish(`burst ${++n}`);
  } catch (err) {
    status.textContent = err.message;
  }
});
window.rtDemo.publish = publish;
