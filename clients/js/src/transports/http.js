// Shared by the HTTP transports.

/** An Error for a non-2xx answer, with the server's JSON error code and message when given. */
export async function errorFromResponse(res, what) {
  let code;
  let message = '';
  try {
    const body = await res.json();
    code = body?.error?.code;
    message = body?.error?.message ?? '';
  } catch {
    // Not a JSON error body (e.g. a proxy's HTML page).
  }
  const err = new Error(`${what} answered ${res.status}${code ? ` ${code}` : ''}${message ? `: ${message}` : ''}`);
  err.status = res.status;
  err.code = code;
  return err;
}
