// URL helpers shared by the transports.

// Valid in a query as they are (RFC 3986), and all over channel names and cursors: left
// unencoded, so that a long cursor and channel list do not triple in size (docs/protocol.md,
// "Cursor size").
const RAW = /%(3A|40|2F|2C|3D)/gi;

/** `s` percent-encoded for a query, leaving `: @ / , =` as they are. */
export function encodeQueryPart(s) {
  return encodeURIComponent(s).replace(RAW, (m) => decodeURIComponent(m));
}

/** `url` with `params` ([name, value] pairs, repeats allowed) appended to its query. */
export function withQuery(url, params) {
  const u = new URL(url);
  const extra = params.map(([k, v]) => `${encodeQueryPart(k)}=${encodeQueryPart(String(v))}`).join('&');
  if (extra) u.search = u.search.length > 1 ? `${u.search.slice(1)}&${extra}` : extra;
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
    presence: at(paths.presence ?? '/presence'),
  };
}

/** Standard padded base64 of bytes (what the server uses for binary payloads). */
export function base64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
