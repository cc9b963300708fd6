//! WebSocket transport for rt (in progress).
