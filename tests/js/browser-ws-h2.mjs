// Chromium's native WebSocket over HTTP/2 (RFC 8441). The page comes from rt-server over TLS
// (ALPN h2); its `new WebSocket('wss://…/ws')` then rides that same h2 connection as an
// extended CONNECT stream, because the server announced SETTINGS_ENABLE_CONNECT_PROTOCOL.
// Chromium needs no switch for this; it only does it for wss:// to an origin it already has
// an h2 connection to. The test certificate is trusted by its key: Chromium's
// --ignore-certificate-errors-spki-list takes the base64 SHA-256 of its SubjectPublicKeyInfo
// (honoured with a --user-data-dir, which playwright's persistent context gives), so no other
// certificate error is ignored. Whether the WebSocket ran over h2 is checked by the Rust test,
// in the server's metrics.
//
// Arguments: the server's https:// base URL and the certificate's PEM file.

import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { assert, browser, run } from './browser-lib.mjs';

const [tls, certPem] = process.argv.slice(2);
const spki = createHash('sha256')
  .update(new X509Certificate(readFileSync(certPem)).publicKey.export({ type: 'spki', format: 'der' }))
  .digest('base64');

run(async () => {
  const b = await browser([`--ignore-certificate-errors-spki-list=${spki}`]);
  const { page } = b;
  const res = await page.goto(`${tls}/health`);
  assert(res.ok(), `GET /health answered ${res.status()}`);
  const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  assert(protocol === 'h2', `the page was loaded over ${protocol}, not h2`);
  const result = await page.evaluate(
    (url) =>
      new Promise((resolve, reject) => {
        const seen = [];
        const ws = new WebSocket(url, 'rt.v1');
        const timer = setTimeout(() => reject(new Error(`timeout; saw ${JSON.stringify(seen)}`)), 10000);
        const send = (m) => ws.send(JSON.stringify(m));
        ws.onopen = () => send({ type: 'subscribe', channels: ['h2-room'] });
        ws.onerror = () => reject(new Error('WebSocket error'));
        ws.onclose = (e) => reject(new Error(`closed ${e.code} ${e.reason}; saw ${JSON.stringify(seen)}`));
        ws.onmessage = (m) => {
          const msg = JSON.parse(m.data);
          seen.push(msg);
          if (msg.type === 'subscribed') send({ type: 'publish', channel: 'h2-room', data: 'over h2', id: 'h2-1' });
          if (msg.type === 'event') {
            clearTimeout(timer);
            ws.onclose = null;
            ws.close(1000);
            resolve({ seen, protocol: ws.protocol });
          }
        };
      }),
    `${tls.replace('https', 'wss')}/ws`,
  );
  assert(result.protocol === 'rt.v1', JSON.stringify(result));
  const event = result.seen.find((m) => m.type === 'event');
  assert(event.channel === 'h2-room' && event.data === 'over h2', JSON.stringify(result.seen));
  await b.close();
});
