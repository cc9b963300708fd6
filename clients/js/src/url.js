// URL helpers shared by the transports.

/** `url` with `params` ([name, value] pairs, repeats allowed) appended to its query. */
export function withQuery(url, params) {
  const u = new URL(url);
  for (const [k, v] of params) u.searchParams.append(k, v);
  return u.toString();
}

/**
 * The endpoint URLs of a server. `base` is the server's http(s) URL (relative URLs resolve
 * against the page's location in a browser); ws(s) is derived from it.
 */
export function endpoints(base, paths = {}) {
  const root = new URL(base, globalThis.location?.href);
  const at = (path) => new URL(path, root).toString();
  const ws = new URL(paths.ws ?? '/ws', root);
  ws.protocol = ws.protocol === 'https:' ? 'wss:' : 'ws:';
  return {
    ws: ws.toString(),
    sse: at(paths.sse ?? '/sse'),
    poll: at(paths.poll ?? '/poll'),
    publish: at(paths.publish ?? '/poll/publish'),
  };
}

/** Standard padded base64 of bytes (what the server uses for binary payloads). */
export function base64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
