//! Server-Sent Events transport for rt (in progress).
