// A Server-Sent Events stream parser following the WHATWG HTML "event stream interpretation"
// rules, for reading `text/event-stream` from a fetch body: lines end with CRLF, LF or CR
// (also when a CRLF is split across chunks), `:` starts a comment, `data:` lines join with
// "\n", a blank line dispatches, and an `id` containing NUL is ignored.

export class SseParser {
  /**
   * @param {(e: {event: string, data: string, id: string}) => void} onEvent called per event
   * @param {(comment: string) => void} [onComment] called per comment line (heartbeats)
   */
  constructor(onEvent, onComment = () => {}) {
    this.onEvent = onEvent;
    this.onComment = onComment;
    this.buffer = '';
    this.skipLf = false;
    this.first = true;
    this.event = '';
    this.data = [];
    this.lastEventId = '';
    /** The last `retry:` value in milliseconds, if any. */
    this.retry = undefined;
  }

  /** Feeds decoded text; complete lines are processed, a partial line is kept. */
  push(text) {
    if (this.first && text.length > 0) {
      this.first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    let buf = this.buffer + text;
    let start = 0;
    for (let i = 0; i < buf.length; i++) {
      const ch = buf.charCodeAt(i);
      if (ch === 10 && this.skipLf && i === start) {
        // The LF of a CRLF whose CR ended the previous line.
        this.skipLf = false;
        start = i + 1;
        continue;
      }
      this.skipLf = false;
      if (ch === 10 || ch === 13) {
        this.line(buf.slice(start, i));
        if (ch === 13) {
          if (i + 1 < buf.length) {
            if (buf.charCodeAt(i + 1) === 10) i++;
          } else {
            this.skipLf = true;
          }
        }
        start = i + 1;
      }
    }
    this.buffer = buf.slice(start);
  }

  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.charCodeAt(0) === 58 /* : */) {
      this.onComment(line.slice(1).replace(/^ /, ''));
      return;
    }
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
    }
    switch (field) {
      case 'event':
        this.event = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break;
    }
  }

  dispatch() {
    const data = this.data;
    const event = this.event;
    this.data = [];
    this.event = '';
    if (data.length === 0) return;
    this.onEvent({ event: event || 'message', data: data.join('\n'), id: this.lastEventId });
  }
}
